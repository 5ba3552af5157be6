"""Importance Pruning during training (seed 001, Algorithm 2; SPEC §3) as a topology algorithm.

At the end of scheduled epochs it removes, in every hidden layer, the neurons whose importance
(``Σ |incoming weights|``) is at or below the ``p``-th percentile of their layer
(:func:`swatlib.importance.prune_and_map`); the layers really shrink (``mode="remove"``, the paper's
intent) or only lose the incoming connections of those neurons (``mode="zero_incoming"``, the authors'
code).

Schedules (:data:`SCHEDULES`): ``"paper"`` — 20th percentile every 10 epochs (sequential runs);
``"authors"`` — 10th percentile every 20 epochs (the parallel code). Timing (:data:`TIMINGS`), with
``t`` the 1-based epoch that just ended:

``"paper"`` (default)
    at epochs ``start, start + every, …`` — and after the last epoch if it falls on the grid (500
    epochs from 200 every 10: 31 events);
``"authors"``
    the authors' code tests its 0-based epoch counter, ``t − 1 > start`` and ``(t − 1 − start) % every
    == 0``, and never prunes after the last epoch: epochs ``start + every + 1, …`` (211, 221, …, 491:
    29 events in 500 epochs).

The ``paper`` profile uses the paper's timing (the notebooks say so).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from swatlib.checks import check_choice, check_int
from swatlib.importance import MODES, check_percentile, linear_layers, prune_and_map
from swatlib.topology.base import ConnectionMap, TopologyAlgorithm

__all__ = ["SCHEDULES", "TIMINGS", "ImportancePruning", "pruning_epochs"]

#: Named schedules: percentile ``p`` applied every ``every`` epochs.
SCHEDULES = {"paper": {"every": 10, "percentile": 20.0}, "authors": {"every": 20, "percentile": 10.0}}

#: Named timings of the pruning events (module docstring).
TIMINGS = ("paper", "authors")


def _is_due(t: int, start_epoch: int, every: int, timing: str, epochs: int | None) -> bool:
    if timing == "paper":
        return t >= start_epoch and (t - start_epoch) % every == 0
    last = epochs is not None and t >= epochs
    return t - 1 > start_epoch and (t - 1 - start_epoch) % every == 0 and not last


def pruning_epochs(start_epoch: int, every: int, epochs: int, timing: str = "paper") -> list[int]:
    """The epochs (1-based) after which pruning happens in a run of ``epochs`` epochs (module docstring)."""
    check_choice(timing, TIMINGS, "timing")
    return [t for t in range(1, epochs + 1) if _is_due(t, start_epoch, every, timing, epochs)]


class ImportancePruning(TopologyAlgorithm):
    """Prune the least important hidden neurons of ``model`` on an epoch schedule (module docstring).

    Parameters
    ----------
    model : nn.Module
        The network (its ``linears``, or its linear modules in registration order, see
        :mod:`swatlib.importance`); the pruned layers are its hidden layers.
    start_epoch
        First pruning epoch ``t_start`` (paper: 200).
    every
        Interval ``Δt`` in epochs.
    percentile
        Threshold ``p`` ∈ [0, 100).
    mode
        ``"remove"`` (default, paper) or ``"zero_incoming"`` (authors' code).
    timing
        ``"paper"`` (default) or ``"authors"`` (module docstring).
    epochs
        Length of the run; with ``timing="authors"`` nothing is pruned after epoch ``epochs``.
    optimizer
        Optimizer whose state follows the remaining parameters.

    Attributes
    ----------
    removed : list of int
        Neurons selected per hidden layer at the last pruning event.
    dropped : list of torch.Tensor
        Their indices (before the event), per hidden layer: with ``mode="remove"`` the survivors are
        renumbered in order, so these give each hidden layer's old → new neuron map.

    Raises
    ------
    ValueError
        If ``start_epoch`` < 0, ``every`` < 1, ``percentile`` ∉ [0, 100), or ``mode`` / ``timing`` is unknown.
    """

    when = "epoch"

    def __init__(self, model: nn.Module, *, start_epoch: int, every: int, percentile: float,
                 mode: str = "remove", timing: str = "paper", epochs: int | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        check_int(start_epoch, "start_epoch", 0)
        check_int(every, "every")
        check_choice(timing, TIMINGS, "timing")
        super().__init__(linear_layers(model), optimizer=optimizer)
        self.model = model
        self.removed: list[int] = []
        self.dropped: list[torch.Tensor] = []
        self.start_epoch, self.every, self.percentile = int(start_epoch), int(every), check_percentile(percentile)
        self.mode, self.timing, self.epochs = check_choice(mode, MODES, "mode"), timing, epochs

    @classmethod
    def from_schedule(cls, model: nn.Module, schedule: str, *, start_epoch: int = 200,
                      **options: Any) -> ImportancePruning:
        """The ``"paper"`` (p = 20 every 10 epochs) or ``"authors"`` (p = 10 every 20) schedule.

        Raises
        ------
        ValueError
            If ``schedule`` is unknown.
        """
        return cls(model, start_epoch=start_epoch, **SCHEDULES[check_choice(schedule, SCHEDULES, "schedule")],
                   **options)

    def due(self, t: int) -> bool:
        """Whether pruning happens at the end of epoch ``t`` (1-based)."""
        return _is_due(t, self.start_epoch, self.every, self.timing, self.epochs)

    def _update(self) -> dict[int, ConnectionMap]:
        before = [getattr(layer, "nnz", None) for layer in linear_layers(self.model)]
        self.dropped, maps = prune_and_map(self.model, self.percentile, self.optimizer, self.mode)
        self.removed = [drop.numel() for drop in self.dropped]
        return {index: ConnectionMap(source, before[index]) for index, source in maps.items()}
