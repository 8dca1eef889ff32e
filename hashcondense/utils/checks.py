"""Predicates for user-given numbers, shared by every config check (the messages stay with the callers,
which know the flag or option to name in the fix)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from hashcondense.errors import HashCondenseError

__all__ = ["check_count", "check_hash_bits", "check_number", "is_count", "is_number"]


def is_count(value: Any, minimum: int = 0) -> bool:
    """A whole number (not a bool, which Python counts as one) of at least `minimum`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= minimum


def is_number(
    value: Any, *, minimum: float | None = None, strict: bool = False, maximum: float | None = None
) -> bool:
    """A finite real number (not a bool); above `minimum` (`strict`) or at least it; below `maximum`."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))):
        return False
    x = float(value)
    if minimum is not None and (x <= minimum if strict else x < minimum):
        return False
    return maximum is None or x < maximum


def check_count(name: str, value: Any, minimum: int, fix: str) -> int:
    """`value` as an int, or a one-line error naming `name` and the `fix` (usually the flag to use)."""
    if not is_count(value, minimum):
        raise HashCondenseError(f"{name}={value!r} cannot work; use a whole number >= {minimum} ({fix})")
    return int(value)


def check_number(
    name: str, value: Any, fix: str, *, allow_zero: bool = False, maximum: float | None = None
) -> float:
    """`value` as a float if finite, > 0 (>= 0 with `allow_zero`) and < `maximum`; else a one-line error."""
    if not is_number(value, minimum=0.0, strict=not allow_zero, maximum=maximum):
        bound = ">= 0" if allow_zero else "> 0"
        if maximum is not None:
            bound += f" and < {maximum:g}"
        raise HashCondenseError(f"{name}={value!r} cannot work; use a number {bound} ({fix})")
    return float(value)


def check_hash_bits(bits: Any) -> int:
    """A hash code length: a whole number of bits from 2 to 4096."""
    if not is_count(bits, 2) or int(bits) > 4096:
        raise HashCondenseError(
            f"hash_bits={bits!r} cannot work; use a whole bit length such as 16, 32, 64 or 128"
        )
    return int(bits)
