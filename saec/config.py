"""The one validation layer for configuration: the checks that the dataclasses (``SaecConfig``,
``TrainConfig``, ``TraceConfig``, ``Field``), the TOML data description, the command line and the table
constructors of :mod:`saec.nn` run before any work starts.

Every check names the parameter, shows the value it got and says what was expected, and raises a
:class:`~saec.errors.SaecError` (or :class:`~saec.errors.SaecTypeError`); none of them coerces a value of
the wrong type (``16.7`` is not an integer, ``"no"`` is not a boolean).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from saec.errors import SaecError


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _finite(value: Any) -> float | None:
    """``value`` as a finite float if it is a number (not a bool), else None (an int too large for a float too)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return None
    try:
        v = float(value)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]`` (no upper bound if ``hi`` is None), else a SaecError naming ``name``."""
    if not _is_int(value) or value < lo or (hi is not None and value > hi):
        allowed = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise SaecError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, lo: float, hi: float = math.inf, *, lo_open: bool = False,
                hi_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(`` / ``)`` with ``lo_open`` / ``hi_open``), else a
    SaecError naming ``name``. Integers are accepted; booleans, NaN and infinities are not."""
    v = _finite(value)
    ok = v is not None and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        allowed = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open or math.isinf(hi) else ']'}"
        raise SaecError(f"{name} must be a finite number in {allowed}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """``value`` if it is one of ``choices``, else a SaecError naming ``name``."""
    try:
        ok = value in choices
    except TypeError:  # an unhashable or incomparable value is not one of them
        ok = False
    if not ok or isinstance(value, (bool, np.bool_)) and not any(isinstance(c, bool) for c in choices):
        raise SaecError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool if it is ``True`` or ``False``, else a SaecError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise SaecError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_str(name: str, value: Any, empty: bool = False) -> str:
    """``value`` if it is a string (non-empty unless ``empty``), else a SaecError naming ``name``."""
    if not isinstance(value, str) or (not empty and not value):
        raise SaecError(f"{name} must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


def reject_unknown(where: str, given: Iterable[str], known: Iterable[str]) -> None:
    """A SaecError naming the keys of ``given`` that are not in ``known`` (``where``: the section or class)."""
    known = list(known)
    unknown = [k for k in given if k not in known]
    if unknown:
        raise SaecError(f"{where}: unknown {'key' if len(unknown) == 1 else 'keys'} "
                        f"{', '.join(repr(k) for k in unknown)}; expected one of {sorted(known)}")


def check_counts_array(what: str, counts: Any, length: int | None = None) -> np.ndarray:
    """Per-id observation counts as a 1-D numeric numpy array (its dtype kept), else a SaecError naming
    ``what`` (e.g. ``"field 'user'"``; may be empty), the first offending id and its value: counts must be
    finite and non-negative (a NaN or a negative count has no frequency rank), one per id when ``length``
    is given."""
    where = f"{what}: " if what else ""
    arr = np.asarray(counts)
    how_many = f"{length} " if length is not None else ""
    if arr.dtype.kind not in "biuf" or arr.ndim != 1 or (length is not None and len(arr) != length):
        raise SaecError(f"{where}counts must be {how_many}finite non-negative numbers (one per id), got shape "
                        f"{arr.shape} of {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr < 0)
    elif arr.dtype.kind == "i":
        bad = arr < 0
    else:
        return arr
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SaecError(f"{where}counts must be finite and non-negative; id {i} has {arr[i].item()!r} "
                        f"({int(bad.sum())} of {len(arr)} ids bad)")
    return arr


__all__ = ["check_bool", "check_choice", "check_counts_array", "check_float", "check_int", "check_str", "reject_unknown"]
