"""SWAT-M: redistribute the global nonzero budget across layers by momentum after every step.

SPEC §5: after each optimizer step, the global nnz budget of the sparse SWAT layers is shared
out again in proportion to each layer's mean ``|momentum|`` over its kept weights — layers whose
kept weights are still moving get more of the budget, as in Sparse Momentum (Dettmers &
Zettlemoyer 2019). Here the *densities* are proportional to the scores (a layer's share of the
budget is ``score × numel``), scaled so that ``Σ density·numel`` equals the budget, with layers
that would exceed 1 made dense and the rest re-scaled — the same rule as ERK
(:func:`swatlib.densities.scaled_densities`). A layer whose kept weights have exactly
zero momentum is held at one weight (density ``1/numel``); the budget then exceeds its start by
less than one weight per such layer.

The budget is fixed when the object is built: ``Σ density·numel`` over the layers it manages — the
SWAT layers given (:func:`swatlib.swat.redistributable_layers` picks a model's sparse ones, so a dense
first layer stays dense and out of the budget). The new densities take
effect when each layer next computes its Top-K threshold (every step with ``period = 1``).
The work — one ``|m|`` and one add per kept weight — goes to the measured ledger as
``redistribution`` / ``update``. SWAT-M follows the topology protocol (:mod:`swatlib.topology.base`):
``when = "optimizer_step"``, every call acts; it moves no connections (each SWAT layer re-selects its
Top-K from the dense weight), so its steps return no connection maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from swatlib.costmodel.ledger import record_extra
from swatlib.densities import scaled_densities
from swatlib.topology.base import ConnectionMap, TopologyAlgorithm

__all__ = ["SWATM"]


class SWATM(TopologyAlgorithm):
    """Momentum-driven density redistribution; :meth:`step` after every ``optimizer.step()``.

    Parameters
    ----------
    layers : sequence of SWAT layers
        The layers sharing the budget (``swatify(model, method="m", ...)``, then
        :func:`swatlib.swat.redistributable_layers`): each has a ``weight``, a settable ``density`` < 1
        and a ``weight_topk`` whose ``current_mask(weight)`` is the kept set.
    optimizer : torch.optim.Optimizer
        Its optimizer; must keep a per-parameter momentum (SGD with momentum > 0, or Adam's
        first moment with ``state_key="exp_avg"``).
    state_key : str
        Optimizer-state entry holding the momentum.

    Attributes
    ----------
    names : list of str
        The managed layers' ledger names.
    budget : float
        ``Σ density·numel`` over them.

    Raises
    ------
    ValueError
        If no layer is given, or one has no weight Top-K or is dense.
    """

    when = "optimizer_step"

    def __init__(self, layers: Sequence[Any], optimizer: torch.optim.Optimizer, *,
                 state_key: str = "momentum_buffer") -> None:
        layers = list(layers)
        if not layers or any(getattr(m, "weight_topk", None) is None or m.density >= 1.0 for m in layers):
            raise ValueError("layers must be sparse SWAT layers with weight Top-K (density < 1): swatify "
                             "the model with method='m' and pass swatlib.swat.redistributable_layers(model)")
        super().__init__(layers, optimizer=optimizer)
        self.names = [m.ledger_name for m in layers]
        self.state_key = state_key
        self.numels = [m.weight.numel() for m in layers]
        self.budget = sum(m.density * n for m, n in zip(layers, self.numels))

    def scores(self) -> list[float]:
        """Mean ``|momentum|`` over each layer's kept weights.

        Raises
        ------
        ValueError
            If a layer's weight has no momentum in the optimizer state (no step yet, or an
            optimizer without momentum).
        """
        scores = []
        for name, layer in zip(self.names, self.layers):
            momentum = self.optimizer.state.get(layer.weight, {}).get(self.state_key)
            if momentum is None:
                raise ValueError(f"no optimizer state {self.state_key!r} for {name}: call step() "
                                 f"after optimizer.step() with a momentum optimizer")
            kept = layer.weight_topk.current_mask(layer.weight)
            scores.append(float(momentum.abs()[kept].mean()) if kept.any() else 0.0)
        return scores

    def due(self, t: int) -> bool:
        """Every step."""
        return True

    def _update(self) -> dict[int, ConnectionMap]:
        """Set every layer's density from the current momentum (unchanged where no layer has momentum)."""
        scores = self.scores()
        if any(scores):
            floor = {i: 1.0 / n for i, (s, n) in enumerate(zip(scores, self.numels)) if s == 0.0}
            densities = scaled_densities(self.numels, scores, self.budget, fixed=floor)
            for layer, density in zip(self.layers, densities):
                layer.density = density
            record_extra("redistribution", "update", 2.0 * self.budget)
        return {}

    def densities(self) -> dict[str, float]:
        """Current density of every managed layer, by ledger name."""
        return {name: layer.density for name, layer in zip(self.names, self.layers)}
