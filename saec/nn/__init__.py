"""Embedding modules: the per-field container and (later) one file per compression method."""

from saec.nn.collection import EmbeddingCollection, new_table

__all__ = ["EmbeddingCollection", "new_table"]
