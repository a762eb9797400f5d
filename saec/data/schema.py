"""Field schema: which categorical columns a model embeds and how.

Every field has its own embedding dimension (the Saec trace mixes vector lengths 9 and 17, §1), and a
field may be multi-valued (several ids per sample, e.g. a movie's genres) in which case its vectors are
pooled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from saec.config import check_bool, check_choice, check_int, check_str
from saec.errors import SaecError, SaecKeyError

POOLINGS = ("mean", "sum")


@dataclass(frozen=True)
class Field:
    """One categorical input field.

    Attributes:
        name: column name in the raw data.
        dim: embedding dimension of this field.
        multi_valued: the raw value is a list (or a string split by ``sep``) of ids.
        pooling: how a multi-valued field's vectors are combined: ``"mean"`` or ``"sum"``.
        sep: separator of a multi-valued field's raw string.
        max_len: most ids kept per sample for a multi-valued field (the first ones).
        min_count: values seen fewer times than this map to the out-of-vocabulary id.
    """

    name: str
    dim: int
    multi_valued: bool = False
    pooling: str = "mean"
    sep: str = " "
    max_len: int = 16
    min_count: int = 1

    def __post_init__(self) -> None:
        # types as well as ranges: a TOML `multi_valued = "no"` or `dim = 16.7` is refused, not coerced
        name = check_str("field name", self.name)
        what = f"field {name!r}:"
        checked = {
            "dim": check_int(f"{what} dim", self.dim, 1),
            "multi_valued": check_bool(f"{what} multi_valued", self.multi_valued),
            "pooling": check_choice(f"{what} pooling", self.pooling, POOLINGS),
            "sep": check_str(f"{what} sep", self.sep, empty=True),
            "max_len": check_int(f"{what} max_len", self.max_len, 1),
            "min_count": check_int(f"{what} min_count", self.min_count, 1),
        }
        for key, value in checked.items():  # plain Python values; frozen dataclass
            object.__setattr__(self, key, value)
        if self.multi_valued and not self.sep:
            raise SaecError(f"{what} a multi-valued field needs a non-empty sep")


@dataclass(frozen=True)
class Schema:
    """The ordered fields of a CTR data set plus its label column."""

    fields: tuple[Field, ...]
    label: str = "label"
    time: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        check_str("label column", self.label)
        if self.time is not None:
            check_str("time column", self.time)
        if not all(isinstance(f, Field) for f in self.fields):
            raise SaecError(f"a schema's fields must be Field objects, got {[type(f).__name__ for f in self.fields]}")
        if not self.fields:
            raise SaecError("a schema needs at least one field")
        names = [f.name for f in self.fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SaecError(f"duplicate field names in schema: {dup}")
        if self.label in names:
            raise SaecError(f"label column {self.label!r} is also listed as a field")

    @property
    def names(self) -> list[str]:
        """Field names in schema order."""
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise SaecKeyError(f"unknown field {name!r}; schema has {self.names}")

    def __iter__(self) -> Iterable[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (inverse of :meth:`from_dict`)."""
        return {"fields": [asdict(f) for f in self.fields], "label": self.label, "time": self.time}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schema":
        """Build a schema from :meth:`to_dict` output or a user's config file section."""
        try:
            fields = tuple(Field(**f) for f in d["fields"])
        except TypeError as e:
            raise SaecError(f"bad field description in schema: {e}") from None
        except KeyError:
            raise SaecError("schema description needs a 'fields' list") from None
        return cls(fields=fields, label=d.get("label", "label"), time=d.get("time"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
