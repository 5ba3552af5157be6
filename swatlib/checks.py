"""Argument checks shared by the whole package, so that every bad argument gets the same wording.

A density has its own check next to the rules that use it (:func:`swatlib.densities.check_density`);
these are the two generic ones: a positive integer size and a name from a fixed set. Pure Python: no
torch needed.
"""

from __future__ import annotations

from collections.abc import Collection
from numbers import Integral
from typing import TypeVar

__all__ = ["check_choice", "check_size"]

T = TypeVar("T")


def check_size(value: int, name: str) -> int:
    """Return ``value`` if it is a positive integer, else raise a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_choice(value: T, choices: Collection, name: str) -> T:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming it and listing them.

    ``choices`` is any collection of names: a tuple, or a dict keyed by them (a registry).
    An unhashable ``value`` (a list given for a name) is refused the same way, not with a TypeError.
    """
    try:
        known = value in choices
    except TypeError:
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value
