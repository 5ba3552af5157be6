"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): the cubic schedule.

Every ``delta_t`` optimizer steps from ``t_start`` to ``t_end``, each managed layer is pruned to the
density of the schedule by removing its connections of smallest ``|w|`` (ties towards the lower
row-major position); nothing grows back. Zhu & Gupta's sparsity
``s_t = s_f + (s_i − s_f)·(1 − (t − t_start)/(t_end − t_start))³`` in terms of density is

    d_t = d_f + (d_i − d_f)·(1 − (t − t_start)/(t_end − t_start))³,   t_start ≤ t ≤ t_end,

so pruning is fast early, while the weights are redundant, and slow near the end. ``d_i`` is the
layers' density when pruning starts (1 for a dense start). Removed connections lose their weights and
optimizer state (the layers' ``set_connections``); on a :class:`~swatlib.sparse.SparseLinear` the work
is O(nnz), so training gets cheaper as the model is pruned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from swatlib.checks import check_int
from swatlib.densities import check_density
from swatlib.topology.base import ConnectionMap, TopologyAlgorithm, check_connection_layers

__all__ = ["GradualMagnitudePruning"]


class GradualMagnitudePruning(TopologyAlgorithm):
    """Prune every managed layer to the cubic schedule's density (module docstring).

    Parameters
    ----------
    layers
        Layers with the connection interface (:mod:`swatlib.topology.base`).
    final_density
        ``d_f`` in (0, 1].
    t_start, t_end
        First and last optimizer step that prune (``t_start < t_end``).
    delta_t
        Steps between pruning steps.
    initial_density
        ``d_i`` in [final_density, 1]: the density the schedule starts from.
    optimizer
        Optimizer whose state follows the connections.

    Raises
    ------
    ValueError
        On a density outside (0, 1], ``initial_density < final_density``, or a bad schedule.
    """

    when = "optimizer_step"

    def __init__(self, layers: Sequence[Any], *, final_density: float, t_start: int, t_end: int,
                 delta_t: int = 100, initial_density: float = 1.0,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        self.final_density = check_density(final_density, "final_density")
        self.initial_density = check_density(initial_density, "initial_density")
        if self.initial_density < self.final_density:
            raise ValueError(f"initial_density must be >= final_density={final_density}, got {initial_density!r}")
        for name, value, low in (("t_start", t_start, 0), ("t_end", t_end, 1), ("delta_t", delta_t, 1)):
            check_int(value, name, low)
        if t_end <= t_start:
            raise ValueError(f"t_end must be > t_start={t_start}, got {t_end!r}")
        super().__init__(check_connection_layers(layers), optimizer=optimizer)
        self.t_start, self.t_end, self.delta_t = int(t_start), int(t_end), int(delta_t)

    def density(self, t: int) -> float:
        """The schedule's density after step ``t`` (``d_i`` before ``t_start``, ``d_f`` after ``t_end``)."""
        progress = min(1.0, max(0.0, (t - self.t_start) / (self.t_end - self.t_start)))
        return self.final_density + (self.initial_density - self.final_density) * (1.0 - progress) ** 3

    def due(self, t: int) -> bool:
        """Every ``delta_t`` steps from ``t_start`` up to ``t_end``, and at ``t_end`` itself."""
        return self.t_start <= t <= self.t_end and ((t - self.t_start) % self.delta_t == 0 or t == self.t_end)

    def _update(self) -> dict[int, ConnectionMap]:
        density = self.density(self.t)
        changes = {}
        for index, layer in enumerate(self.layers):
            rows, cols, values = layer.connections()
            target = max(1, math.ceil(density * layer.in_features * layer.out_features - 1e-9))
            count = values.numel() - target
            if count <= 0:
                continue
            kept = torch.argsort(values.abs(), stable=True)[count:].sort().values
            source = layer.set_connections(rows[kept], cols[kept], values[kept], source=kept,
                                           optimizer=self.optimizer)
            changes[index] = ConnectionMap(source, values.numel())
        return changes
