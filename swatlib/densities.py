"""Per-layer densities: the one place that validates a density and shares a budget across layers.

``density`` is the kept fraction of a layer's weights (sparsity = 1 − density). Sparse-training
methods differ in how one global density becomes per-layer densities (:func:`distribute`):

* ``uniform`` — every layer at the global density (the first one dense if asked);
* ``er`` — Erdős–Rényi (SET, SPEC §1): ``d_l ∝ (O + I)/(O·I·kh·kw)``;
* ``erk`` — Erdős–Rényi-kernel (SWAT-ERK, RigL): ``d_l ∝ (O + I + kh + kw)/(O·I·kh·kw)``; a linear
  weight ``(O, I)`` has no kernel, so ``er`` and ``erk`` agree on it.

The non-uniform rules are scaled so that the kept weights equal ``density ×`` all weights, layers
that would exceed 1 are made dense and the rest re-scaled (:func:`scaled_densities`, also used by
SWAT-M to share its budget by momentum). SET's per-layer ε form, ``min(1, ε·(n_in + n_out)/(n_in·n_out))``
(:func:`epsilon_to_density`), is the ``er`` score with the proportionality constant ε given instead of
the global density. The cost model, the SWAT layers, the sparse layers and the topology algorithms all
take their densities from here. Pure Python: no torch needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from swatlib.checks import check_choice, check_int, check_number

__all__ = [
    "DISTRIBUTIONS",
    "check_density",
    "density_of_sparsity_percent",
    "distribute",
    "epsilon_to_density",
    "scaled_densities",
    "shape_score",
]

#: Names accepted by :func:`distribute`.
DISTRIBUTIONS = ("uniform", "erk", "er")


def check_density(density: float, name: str = "density") -> float:
    """Return ``density`` as a float if it is a number in (0, 1], else raise a ValueError naming it."""
    return check_number(density, name, 0, 1, open_low=True, meaning="the kept fraction; sparsity = 1 - density")


def density_of_sparsity_percent(sparsity: float, name: str = "sparsity") -> float:
    """``1 − sparsity / 100`` (rounded to 6 decimals, so that 90 % gives exactly 0.1) for a sparsity
    given in percent, as the SWAT paper's figures and tables give it; a ValueError naming it unless
    it lies in [0, 100)."""
    sparsity = check_number(sparsity, name, 0, 100, open_high=True, meaning="percent of the weights removed")
    return round(1 - sparsity / 100, 6)


def epsilon_to_density(epsilon: float, n_in: int, n_out: int) -> float:
    """Density of an Erdős–Rényi layer: ``min(1, ε·(n_in + n_out) / (n_in·n_out))``.

    Parameters
    ----------
    epsilon
        The SET sparsity hyper-parameter ε > 0 (paper: 10 or 20).
    n_in, n_out
        Input and output features of the layer.

    Raises
    ------
    ValueError
        If ``epsilon`` is not a positive number or a size is not a positive integer.
    """
    check_number(epsilon, "epsilon", 0, open_low=True)
    check_int(n_in, "n_in")
    check_int(n_out, "n_out")
    return min(1.0, epsilon * (n_in + n_out) / (n_in * n_out))


def shape_score(weight_shape: Sequence[int], distribution: str) -> float:
    """Unnormalised density of a layer with this weight shape under ``erk`` or ``er``.

    ``erk``: ``(O + I + kh + kw)/(O·I·kh·kw)``; ``er``: ``(O + I)/(O·I·kh·kw)``; a linear weight
    ``(O, I)`` has no kernel dimensions, so both give ``(O + I)/(O·I)``.
    """
    out_ch, in_ch, *kernel = weight_shape
    kernel_size = math.prod(kernel)
    if distribution == "erk":
        return (out_ch + in_ch + sum(kernel)) / (out_ch * in_ch * kernel_size)
    return (out_ch + in_ch) / (out_ch * in_ch * kernel_size)


def scaled_densities(numels: Sequence[int], scores: Sequence[float], budget: float, *,
                     fixed: Mapping[int, float] | None = None) -> list[float]:
    """Densities ∝ score with ``Σ density·numel = budget``, capped at 1 (re-scaling the rest).

    Parameters
    ----------
    numels : sequence of int
        Weights per layer.
    scores : sequence of float
        Non-negative unnormalised densities (e.g. :func:`shape_score`).
    budget : float
        Kept weights in total.
    fixed : mapping of int to float, optional
        Layers (by index) held at a given density; they spend their share of the budget first.

    Returns
    -------
    list of float
        One density per layer.

    Raises
    ------
    ValueError
        If the fixed layers leave no budget, or every free layer scores zero.
    """
    held = dict(fixed or {})
    while True:
        free = [i for i in range(len(numels)) if i not in held]
        if not free:
            return [held[i] for i in range(len(numels))]
        rest = budget - sum(held[i] * numels[i] for i in held)
        weight = sum(scores[i] * numels[i] for i in free)
        if rest <= 0 or weight <= 0:
            raise ValueError(f"cannot share a budget of {budget} weights: {rest} left after the "
                             f"fixed layers, free layers' total score {weight}")
        eps = rest / weight
        capped = {i for i in free if eps * scores[i] >= 1.0}
        if not capped:
            return [held.get(i, eps * scores[i]) for i in range(len(numels))]
        held.update(dict.fromkeys(capped, 1.0))


def distribute(weight_shapes: Sequence[Sequence[int]], density: float, distribution: str, *,
               first_layer_dense: bool = False) -> list[float]:
    """Per-layer densities for a global ``density`` under ``distribution``.

    Parameters
    ----------
    weight_shapes : sequence of shapes
        ``(O, I)`` for linear, ``(O, I/groups, kh, kw)`` for conv layers, in forward order.
    density : float
        Global density in (0, 1].
    distribution : {"uniform", "erk", "er"}
        See the module docstring.
    first_layer_dense : bool
        Hold the first layer at density 1. For ``uniform`` the other layers keep ``density`` (the
        total then exceeds the budget, as in RigL and SWAT-U); for ``er``/``erk`` the first layer
        spends its share of the budget first and the others are scaled to what is left.

    Raises
    ------
    ValueError
        For a bad density or distribution, or a budget too small to hold the first layer dense.
    """
    density = check_density(density)
    if distribution == "uniform":
        return [1.0 if first_layer_dense and i == 0 else density for i in range(len(weight_shapes))]
    check_choice(distribution, DISTRIBUTIONS, "distribution")
    numels = [math.prod(shape) for shape in weight_shapes]
    fixed = {0: 1.0} if first_layer_dense and weight_shapes else None
    try:
        return scaled_densities(numels, [shape_score(s, distribution) for s in weight_shapes],
                                density * sum(numels), fixed=fixed)
    except ValueError as err:
        raise ValueError(f"density {density} is too small for {distribution} with a dense first layer; "
                         f"pass first_layer_dense=False ({err})") from err
