"""Schemas, vocabularies and data sets (MovieLens, bring-your-own tables, the synthetic trace)."""

from saec.data.dataset import CTRData, encode_frame, fit_vocabs
from saec.data.schema import Field, Schema
from saec.data.vocab import OOV_ID, PAD_ID, Vocabulary

__all__ = ["CTRData", "Field", "OOV_ID", "PAD_ID", "Schema", "Vocabulary", "encode_frame", "fit_vocabs"]
