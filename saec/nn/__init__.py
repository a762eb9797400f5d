"""Embedding modules: the per-field container and one file per compression method, all behind one contract.

Every table is a :class:`~saec.nn.base.CompressedEmbedding` listed once in :data:`saec.nn.registry.METHODS`:
the methods trained compressed from scratch (MEmCom and its comparators, built by
:func:`saec.nn.registry.make_embedding`; ``"full"`` is their uncompressed reference) and the post-training
ones built from a trained table by :func:`saec.nn.registry.from_float` (Saec's :class:`ClusteredEmbedding`,
its int8-codebook variant, and the packed float16 / integer :class:`~saec.nn.quantized.QuantizedEmbedding`).
:mod:`saec.nn.bag` gives any of them the form of an ``nn.EmbeddingBag``; :mod:`saec.nn.quantize` simulates
lower precision for accuracy studies.
"""

from saec.nn.bag import CompressedEmbeddingBag
from saec.nn.base import CompressedEmbedding, param_count
from saec.nn.clustered import ClusteredEmbedding
from saec.nn.collection import EmbeddingBagCollection, new_table
from saec.nn.quantized import QuantizedEmbedding

__all__ = ["ClusteredEmbedding", "CompressedEmbedding", "CompressedEmbeddingBag", "EmbeddingBagCollection",
           "QuantizedEmbedding", "new_table", "param_count"]
