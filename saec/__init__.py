"""saec: compress the embedding tables of recommendation models."""

__version__ = "0.1.0"
