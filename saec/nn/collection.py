"""The embedding container: one table per field, named after TorchRec's EmbeddingBagCollection because, like
it, it gives one pooled vector per field and example (TorchRec's EmbeddingCollection returns unpooled sequences).

A table is any module called like ``nn.Embedding`` (``table(ids) -> (*ids.shape, dim)`` for ids in
``[0, num_embeddings)``), so a compression method replaces one field's table (:meth:`replace`) without
the model noticing. The container owns what is not a table's business:

* out-of-vocabulary ids (:data:`~saec.data.vocab.OOV_ID`) get the field's own learned ``oov`` vector;
* multi-valued fields (ids of shape (B, L), padded with :data:`~saec.data.vocab.PAD_ID`) are pooled by
  mean or sum.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from saec.data.schema import Schema
from saec.data.vocab import OOV_ID, PAD_ID


def new_table(num_embeddings: int, dim: int, init_std: float, sparse: bool,
              generator: torch.Generator | None = None) -> nn.Embedding:
    """A full float32 table, normal-initialised with ``init_std`` (drawn from ``generator``, default torch's
    global one)."""
    table = nn.Embedding(num_embeddings, dim, sparse=sparse)  # (its own init draw is kept: it is part of the
    nn.init.normal_(table.weight, std=init_std, generator=generator)  # stream every committed model came from)
    return table


class EmbeddingBagCollection(nn.Module):
    """One embedding table per schema field.

    Args:
        schema: the fields (their order is the order of :meth:`forward`'s output).
        num_embeddings: rows per field, normally ``len(vocab)``.
        sparse: tables produce sparse gradients (needed for large tables; Adagrad accepts them).
        init_std: standard deviation of the normal initialisation.
        tables: ready-made tables for some fields (e.g. compressed ones being loaded), used instead of
            allocating a full table first; each must address ``num_embeddings[field]`` ids with vectors of
            the field's dimension.
    """

    def __init__(
        self, schema: Schema, num_embeddings: dict[str, int], sparse: bool = True, init_std: float = 0.01,
        tables: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(num_embeddings) - set(schema.names))
        missing = [n for n in schema.names if n not in num_embeddings]
        if unknown or missing:
            raise ValueError(f"num_embeddings has unknown fields {unknown} and lacks fields {missing}")
        given = dict(tables or {})
        if set(given) - set(schema.names):
            raise ValueError(f"tables for unknown fields {sorted(set(given) - set(schema.names))}")
        self.schema = schema
        self.sparse = sparse
        self.init_std = init_std
        self.tables = nn.ModuleDict()
        self.oov = nn.ParameterDict()
        for f in schema.fields:
            n = int(num_embeddings[f.name])
            if n < 1:
                raise ValueError(f"field {f.name!r}: needs at least one row, got {n}")
            if f.name in given:
                t = given[f.name]
                shape = (getattr(t, "num_embeddings", None), getattr(t, "embedding_dim", None))
                if shape != (n, f.dim):
                    raise ValueError(f"field {f.name!r}: the given table is {shape[0]} x {shape[1]}, the field needs "
                                     f"{n} x {f.dim}")
                self.tables[f.name] = t
            else:
                self.tables[f.name] = new_table(n, f.dim, init_std, sparse)
            self.oov[f.name] = nn.Parameter(torch.zeros(f.dim))

    @property
    def output_dim(self) -> int:
        """Width of the concatenated field vectors."""
        return sum(f.dim for f in self.schema.fields)

    def num_embeddings(self, name: str) -> int:
        """Number of features (rows) field ``name`` addresses."""
        return int(self.tables[self._check(name)].num_embeddings)

    def lookup(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Pooled (B, dim) vectors of one field for ids of shape (B,) or (B, L)."""
        table = self.tables[self._check(name)]
        known = ids >= 0
        if bool(known.all()):
            vecs = table(ids)
        else:  # the table sees only real ids, so per-feature rules (Saec §2.3's averaging) count right
            vecs = self.oov[name].expand(*ids.shape, -1).clone()
            vecs[known] = table(ids[known])
        if ids.dim() == 1:
            return vecs
        present = (ids != PAD_ID).unsqueeze(-1).to(vecs.dtype)
        pooled = (vecs * present).sum(dim=1)
        if self.schema[name].pooling == "mean":
            pooled = pooled / present.sum(dim=1).clamp(min=1.0)
        return pooled

    def forward(self, ids: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per-field (B, dim) vectors in schema order."""
        try:
            return [self.lookup(f.name, ids[f.name]) for f in self.schema.fields]
        except KeyError as e:
            raise KeyError(f"batch lacks field {e.args[0]!r}; expected {self.schema.names}") from None

    def replace(self, name: str, table: nn.Module) -> nn.Module:
        """Put ``table`` in field ``name``'s place; return the old table.

        The new table must give vectors of the field's dimension for the same ids.
        """
        old = self.tables[self._check(name)]
        dim = self.schema[name].dim
        probe = torch.zeros(1, dtype=torch.long)
        out = table(probe)
        if out.shape != (1, dim):
            raise ValueError(f"field {name!r}: replacement gives vectors of shape {tuple(out.shape[1:])}, expected ({dim},)")
        self.tables[name] = table
        return old

    def grow(self, name: str, num_embeddings: int, generator: torch.Generator | None = None, **kwargs) -> None:
        """Give field ``name`` rows for new features (ids keep their rows; new rows initialised afresh).

        A full ``nn.Embedding`` is grown here, its new rows drawn from ``generator`` (pass one: without it
        they come from torch's global generator, which makes a run depend on whatever else drew from it); a
        compressed table with a ``grow`` method decides itself how new features map into it (``kwargs``
        are passed on, e.g. the new features' vectors).
        """
        table = self.tables[self._check(name)]
        if hasattr(table, "grow"):
            table.grow(num_embeddings, **kwargs)
            return
        if not isinstance(table, nn.Embedding):
            raise TypeError(f"field {name!r}: a {type(table).__name__} table cannot grow")
        old = table.num_embeddings
        if num_embeddings < old:
            raise ValueError(f"field {name!r}: cannot shrink from {old} to {num_embeddings} rows")
        if num_embeddings == old:
            return
        # (_weight: no initialisation of the whole table from the global generator, only the new rows below)
        new = nn.Embedding(num_embeddings, table.embedding_dim, sparse=self.sparse,
                           _weight=torch.empty(num_embeddings, table.embedding_dim))
        with torch.no_grad():
            new.weight[:old] = table.weight
            # only the new rows are drawn: the stream a run consumes depends on its growth, not its size
            new.weight[old:].normal_(0.0, self.init_std, generator=generator)
        self.tables[name] = new

    def _check(self, name: str) -> str:
        if name not in self.tables:
            raise KeyError(f"unknown field {name!r}; fields are {self.schema.names}")
        return name

    def table_bytes(self) -> dict[str, int]:
        """Bytes of every field's parameters and buffers (the OOV vector included)."""
        out = {}
        for name, table in self.tables.items():
            tensors = list(table.parameters()) + list(table.buffers())
            out[name] = sum(t.numel() * t.element_size() for t in tensors) + self.oov[name].numel() * 4
        return out


__all__ = ["EmbeddingBagCollection", "OOV_ID", "PAD_ID", "new_table"]
