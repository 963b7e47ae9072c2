"""Input checks shared by every public function: each error names the parameter, the value and the range.

Used by every module of the package; learners see these messages when a slider or a call goes out of range.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def check_int(
    name: str, value: Any, *, low: int | None = None, high: int | None = None, why: str = ""
) -> int:
    """Return ``value`` as an int, or raise a ``TypeError``/``ValueError`` naming ``name`` and the range.

    ``why`` explains the bound in the message, e.g. ``"the number of blocks of X"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be {_range_text(low, high)}{reason}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """Return ``value`` as a finite float within the range, or raise an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value <= low if low_open else value < low))
    bad = bad or (high is not None and value > high)
    if bad:
        rng = _range_text(low, high, low_open=low_open)
        raise ValueError(f"{name} must be a finite number {rng}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_seed(name: str, value: Any) -> int:
    """A seed is a non-negative integer (it feeds ``numpy.random.SeedSequence``)."""
    return check_int(name, value, low=0)


def check_vector(name: str, value: Any, length: int) -> np.ndarray:
    """Return a finite float64 vector of the given length (a copy), or raise naming ``name``."""
    arr = np.asarray(value, dtype=float)
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return arr.copy()


def _range_text(low: float | None, high: float | None, *, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in ({low}, {high}]" if low_open else f"between {low} and {high}"
    if low is not None:
        return f"> {low}" if low_open else f">= {low}"
    if high is not None:
        return f"<= {high}"
    return "valid"
