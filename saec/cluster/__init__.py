"""k-means (faiss) and Saec's field-aware fast clustering."""

from saec.cluster.kmeans import INITS, KMeansResult, assign, assign_objective, kmeans, top_indices
from saec.cluster.saec import FieldCompression, FieldSize, SaecConfig, SizeReport, compress_field, compress_tables, mask_dtype, size_report

__all__ = ["INITS", "FieldCompression", "FieldSize", "KMeansResult", "SaecConfig", "SizeReport", "assign",
           "assign_objective", "compress_field", "compress_tables", "kmeans", "mask_dtype", "size_report", "top_indices"]
