"""Embedding modules: the per-field container and one file per compression method.

Saec's :class:`ClusteredEmbedding` compresses a trained table; the MEmCom family (built by
:func:`saec.nn.registry.make_embedding`, listed in :data:`saec.nn.registry.METHODS`) are tables trained
compressed from the start (``"full"``, :class:`saec.nn.full.FullEmbedding`, is their uncompressed
reference); :mod:`saec.nn.quantize` lowers the precision of any trained model.
"""

from saec.nn.clustered import ClusteredEmbedding
from saec.nn.collection import EmbeddingCollection, new_table

__all__ = ["ClusteredEmbedding", "EmbeddingCollection", "new_table"]
