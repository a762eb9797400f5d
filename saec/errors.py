"""saec's own error types: what a user's mistake raises (bad input, missing or damaged files).

Every one is a :class:`SaecError`, itself a ``ValueError``, and most also derive from the builtin error a
caller would expect for that kind of mistake (an id out of range is an ``IndexError``, a missing file a
``FileNotFoundError``), so ``except IndexError`` keeps working. The command line turns exactly these into
one-line messages; anything else is a bug in saec and shows its traceback.
"""

from __future__ import annotations


class SaecError(ValueError):
    """A user's mistake: the message names the file, field, table or parameter, the value and what was expected."""


class SaecIndexError(SaecError, IndexError):
    """An id outside a table's ``[0, num_embeddings)``."""


class SaecTypeError(SaecError, TypeError):
    """An argument of the wrong type (float ids, a module that is not an embedding table)."""


class SaecKeyError(SaecError, KeyError):
    """An unknown name: a field, a table path, a method."""

    def __str__(self) -> str:  # KeyError quotes its message; ours is a sentence
        return str(self.args[0]) if self.args else ""


class SaecFileNotFoundError(SaecError, FileNotFoundError):
    """An input file or folder that does not exist."""


class SaecFileExistsError(SaecError, FileExistsError):
    """An output that exists and that saec will not replace."""


__all__ = ["SaecError", "SaecFileExistsError", "SaecFileNotFoundError", "SaecIndexError", "SaecKeyError",
           "SaecTypeError"]
