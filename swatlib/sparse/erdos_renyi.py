"""Erdős–Rényi sparse topologies: the ε → density rule and random connections drawn in O(nnz) memory.

SET (SPEC §1) starts every sparse layer from an Erdős–Rényi random graph: with ``n_in`` inputs and
``n_out`` outputs, ``density = min(1, ε·(n_in + n_out) / (n_in·n_out))`` and the connections are
drawn uniformly at random *without replacement*. The same sampler regrows connections during SET
evolution, where it must avoid the positions held by kept weights.

A truly sparse layer can be far too large to hold a dense ``n_out × n_in`` tensor (a 200,000 × 200,000
layer would need 160 GB as float32), so nothing here allocates anything of that size: positions are
handled as row-major *flat keys* ``row·n_in + col`` (int64), candidates are drawn with replacement,
de-duplicated and topped up until enough distinct free keys exist. Conditional on its size, the set of
distinct keys drawn this way is uniform over the free positions (the procedure is symmetric under any
permutation of them), so the result is an exact uniform draw without replacement. The candidates are
sorted and de-duplicated in O(nnz) time by a counting sort over key ranges in swatlib's native kernels
(:func:`swatlib.sparse.native.sort_unique`; ``torch.unique``, O(nnz log nnz), without them — the same
result), so 10⁸ connections are drawn in seconds. When the free positions are not much more numerous
than the connections themselves, they are enumerated instead, which then also costs O(nnz) memory.
"""

from __future__ import annotations

import torch

from swatlib.checks import check_int
from swatlib.densities import check_density, epsilon_to_density
from swatlib.sparse import native

__all__ = [
    "connection_count",
    "flat_keys",
    "random_connections",
    "resolve_density",
    "sample_free_positions",
]

#: Enumerate the free positions instead of rejection sampling when they number at most this many
#: times ``max(count, occupied)``: enumeration then costs O(count + occupied), and rejection sampling
#: would waste many draws.
_ENUMERATE_RATIO = 4


def connection_count(density: float, n_in: int, n_out: int) -> int:
    """Number of connections of a layer at ``density``: ``round(density·n_in·n_out)``, at least 1.

    Rounding (not ``ceil``) makes ε = 20 on a 784 × 1000 layer give exactly ε·(784 + 1000) = 35,680
    connections, as in the paper's parameter counts.

    Raises
    ------
    ValueError
        If ``density`` is not in (0, 1] or a size is not a positive integer.
    """
    check_density(density)
    total = check_int(n_in, "n_in") * check_int(n_out, "n_out")
    return min(total, max(1, round(density * total)))


def flat_keys(rows: torch.Tensor, cols: torch.Tensor, n_in: int) -> torch.Tensor:
    """Row-major flat keys ``row·n_in + col`` (int64): sorting them sorts the connections row-major."""
    return rows.to(torch.int64) * n_in + cols.to(torch.int64)


def sample_free_positions(
    n_out: int,
    n_in: int,
    count: int,
    occupied: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``count`` distinct positions uniformly at random among those not in ``occupied``.

    Parameters
    ----------
    n_out, n_in
        Shape of the (never materialised) weight matrix.
    count
        How many positions to draw (0 is allowed).
    occupied
        Sorted, unique int64 flat keys (see :func:`flat_keys`) that must not be drawn; ``None`` = none.
    generator
        Source of randomness (``None``: torch's default generator).

    Returns
    -------
    torch.Tensor
        ``count`` sorted, unique int64 flat keys. Memory and work are O(count + len(occupied)).

    Raises
    ------
    ValueError
        If fewer than ``count`` free positions exist.
    """
    total = check_int(n_out, "n_out") * check_int(n_in, "n_in")
    if occupied is None:
        occupied = torch.empty(0, dtype=torch.int64)
    free = total - occupied.numel()
    if count < 0 or count > free:
        raise ValueError(f"count must be in [0, {free}] (the free positions of a {n_out}x{n_in} layer), "
                         f"got {count}")
    if count == 0:
        return torch.empty(0, dtype=torch.int64)
    if free <= _ENUMERATE_RATIO * max(count, occupied.numel()):
        # Dense regime: the whole position set is O(count + occupied), so enumerate what is free.
        is_free = torch.ones(total, dtype=torch.bool)
        is_free[occupied] = False
        candidates = is_free.nonzero().squeeze(1)
        chosen = torch.randperm(candidates.numel(), generator=generator)[:count]
        return candidates[chosen].sort().values
    drawn = torch.empty(0, dtype=torch.int64)
    while drawn.numel() < count:
        candidates = torch.randint(0, total, (count - drawn.numel(),), generator=generator, dtype=torch.int64)
        drawn = native.sort_unique(torch.cat([drawn, candidates]) if drawn.numel() else candidates, total)
        if occupied.numel():  # sorted queries: the binary searches stay in cache (≈ 10× faster than random)
            slot = torch.searchsorted(occupied, drawn).clamp_(max=occupied.numel() - 1)
            drawn = drawn[occupied[slot] != drawn]
    return drawn


def random_connections(
    n_out: int, n_in: int, count: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """An Erdős–Rényi topology: ``count`` distinct connections, uniformly at random, sorted row-major.

    Parameters
    ----------
    n_out, n_in
        Layer shape (weight matrix ``n_out × n_in``, never materialised).
    count
        Number of connections, in [1, n_out·n_in] (see :func:`connection_count`).
    generator
        Source of randomness (``None``: torch's default generator).

    Returns
    -------
    rows, cols : torch.Tensor
        int64 output and input indices of the connections.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    keys = sample_free_positions(n_out, n_in, count, generator=generator)
    return keys // n_in, keys % n_in


def resolve_density(density: float | None, epsilon: float | None, n_in: int, n_out: int) -> float:
    """The density of a layer given exactly one of ``density`` and ``epsilon`` (Erdős–Rényi rule).

    Raises
    ------
    ValueError
        If both or neither are given, ``density`` is not in (0, 1], or ``epsilon`` is not > 0.
    """
    if (density is None) == (epsilon is None):
        raise ValueError(f"give exactly one of density and epsilon, "
                         f"got density={density!r}, epsilon={epsilon!r}")
    if epsilon is not None:
        return epsilon_to_density(epsilon, n_in, n_out)
    return check_density(density)
