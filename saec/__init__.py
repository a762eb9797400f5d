"""saec: compress the embedding tables of recommendation models.

``saec.compress(model, method, ...)`` compresses the embedding tables of any PyTorch model and
``saec.count_ids(model, batches)`` counts how often each row is looked up (both in
:mod:`saec.compression`, imported on first use so that ``import saec`` stays light).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "compress", "count_ids"]


def __getattr__(name: str) -> Any:
    if name in ("compress", "count_ids"):
        from saec import compression

        return getattr(compression, name)
    raise AttributeError(f"module 'saec' has no attribute {name!r}")
