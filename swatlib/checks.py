"""Argument checks shared by the whole package, so that every bad argument gets the same wording.

The generic ones: an integer in a range (a size, a count, a period), a finite number in a range (a
fraction, a slope, a percentile; :func:`swatlib.densities.check_density` is one), a list of seeds, and
one name or several names from a fixed set. Pure Python: no torch needed.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from numbers import Integral, Real
from typing import TypeVar

__all__ = ["check_choice", "check_choices", "check_int", "check_number", "check_seeds"]

T = TypeVar("T")


def check_int(value: int, name: str, minimum: int = 1, below: int | None = None) -> int:
    """Return ``value`` as a plain int if it is an integer in ``[minimum, below)`` (no upper bound for
    ``below=None``), else raise a ValueError naming it and the range.

    Any integral type passes (a numpy integer too); a bool, a float such as ``2.0`` or a numeric
    string does not. With the defaults the message asks for "a positive integer".
    """
    if (isinstance(value, bool) or not isinstance(value, Integral) or value < minimum
            or (below is not None and value >= below)):
        if below is not None:
            bound = f"an integer in [{minimum}, {below})"
        else:
            bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def check_number(value: float, name: str, low: float | None = None, high: float | None = None, *,
                 open_low: bool = False, open_high: bool = False, meaning: str | None = None) -> float:
    """Return ``value`` as a float if it is a finite real number within the bounds, else raise a
    ValueError naming it and the range.

    ``low`` / ``high`` bound it (``None``: no bound), inclusive unless ``open_low`` / ``open_high``.
    ``meaning`` is added to the message in parentheses. Bools, NaN, infinities, numeric strings and
    tensors are refused.
    """
    inside = (not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
              and (low is None or (value > low if open_low else value >= low))
              and (high is None or (value < high if open_high else value <= high)))
    if not inside:
        if low is not None and high is not None:
            bound = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        elif low is not None:
            bound = f"a finite number {'>' if open_low else '>='} {low:g}"
        elif high is not None:
            bound = f"a finite number {'<' if open_high else '<='} {high:g}"
        else:
            bound = "a finite number"
        raise ValueError(f"{name} must be {bound}" + (f" ({meaning})" if meaning else "") + f", got {value!r}")
    return float(value)


def check_seeds(seeds: Iterable[int]) -> list[int]:
    """Return ``seeds`` as a list of plain ints if it names at least one seed, each an integer >= 0
    and none twice, else raise a ValueError.

    A repeated seed would train the same run twice and count it twice in a mean ± std over seeds.
    """
    seeds = [check_int(seed, "each seed", 0) for seed in seeds]
    if not seeds:
        raise ValueError("seeds must list at least one seed, got none")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds


def check_choice(value: T, choices: Collection, name: str) -> T:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming it and listing them.

    ``choices`` is any collection of names: a tuple, or a dict keyed by them (a registry).
    An unhashable ``value`` (a list given for a name) is refused the same way, not with a TypeError.
    """
    if not _is_one_of(value, choices):
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_choices(values: Iterable[T], choices: Collection, name: str) -> list[T]:
    """Return ``values`` as a list if each is one of ``choices``, else raise one ValueError naming
    every unknown value (in the order given) and listing the choices.

    For a set of names chosen at once — the layers of a density map, the settings of an override,
    benchmark variants — so that a user sees all the misspellings in one message, not one per run.
    """
    values = list(values)
    unknown = [value for value in values if not _is_one_of(value, choices)]
    if unknown:
        raise ValueError(f"{name} must be among {', '.join(map(str, choices))}; "
                         f"unknown: {', '.join(map(repr, unknown))}")
    return values


def _is_one_of(value: object, choices: Collection) -> bool:
    """``value in choices``, False for an unhashable value instead of a TypeError."""
    try:
        return value in choices
    except TypeError:
        return False
