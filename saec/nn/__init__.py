"""Embedding modules: the per-field container and one file per compression method."""

from saec.nn.clustered import ClusteredEmbedding
from saec.nn.collection import EmbeddingCollection, new_table

__all__ = ["ClusteredEmbedding", "EmbeddingCollection", "new_table"]
