"""Densify: grow layers' density during training (the toy-BERT study's new idea, with RigL; SPEC §8).

Every ``delta_t`` optimizer steps up to ``t_end`` each managed layer gains connections at uniformly
random free positions, with weight 0 and fresh optimizer state, so that its density grows linearly
from where it started to ``final_density``. Stepped after :class:`~swatlib.topology.RigL` in the same
step, it makes "densifying RigL": RigL moves the connections, this adds to them. Work and memory are
O(nnz) per layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from swatlib.checks import check_int
from swatlib.densities import check_density
from swatlib.sparse.erdos_renyi import flat_keys, sample_free_positions
from swatlib.topology.base import ConnectionMap, TopologyAlgorithm

__all__ = ["Densify"]


class Densify(TopologyAlgorithm):
    """Grow each managed layer's density linearly to ``final_density``, reached at the last growth step
    up to ``t_end``: every ``delta_t`` steps add connections at uniformly random free positions, with
    weight 0 and fresh optimizer state.

    Used after :class:`~swatlib.topology.RigL` in the same step, it makes "densifying RigL": RigL moves
    the connections, this adds to them.

    Parameters
    ----------
    layers
        Layers with the connection interface.
    final_density
        Density reached at ``t_end``.
    t_end, delta_t
        Schedule (as RigL's).
    optimizer
        Optimizer whose state follows the connections.
    generator
        Randomness of the positions.

    Raises
    ------
    ValueError
        For a density outside (0, 1] or a bad schedule.
    """

    when = "optimizer_step"

    def __init__(self, layers: Sequence[Any], *, final_density: float, t_end: int, delta_t: int = 100,
                 optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None) -> None:
        self.final_density = check_density(final_density, "final_density")
        for name, value in (("t_end", t_end), ("delta_t", delta_t)):
            check_int(value, name)
        if t_end < delta_t:
            raise ValueError(f"t_end must be >= delta_t={delta_t}, got {t_end!r}")
        super().__init__(layers, optimizer=optimizer, generator=generator)
        self.t_end, self.delta_t = t_end, delta_t
        self.last = t_end - t_end % delta_t     # the last growth step, where final_density is reached
        self.start = [layer.connections()[2].numel() for layer in self.layers]

    def due(self, t: int) -> bool:
        """Every ``delta_t`` steps up to ``t_end``."""
        return t % self.delta_t == 0 and t <= self.t_end

    def _update(self) -> dict[int, ConnectionMap]:
        changes = {}
        for index, layer in enumerate(self.layers):
            n_out, n_in = layer.out_features, layer.in_features
            rows, cols, values = layer.connections()
            final = math.ceil(self.final_density * n_out * n_in - 1e-9)
            target = round(self.start[index] + (final - self.start[index]) * min(1.0, self.t / self.last))
            count = target - values.numel()
            if count <= 0:
                continue
            occupied = flat_keys(rows, cols, n_in).sort().values.cpu()
            keys = sample_free_positions(n_out, n_in, count, occupied, self.generator).to(rows.device)
            source = torch.cat([torch.arange(values.numel()), torch.full((count,), -1, dtype=torch.int64)])
            source = layer.set_connections(torch.cat([rows, keys // n_in]), torch.cat([cols, keys % n_in]),
                                           torch.cat([values, values.new_zeros(count)]), source=source,
                                           optimizer=self.optimizer)
            changes[index] = ConnectionMap(source, values.numel())
        return changes
