"""SWAT-M: redistribute the global nonzero budget across layers by momentum after every step.

SPEC §5: after each optimizer step, the global nnz budget of the sparse SWAT layers is shared
out again in proportion to each layer's mean ``|momentum|`` over its kept weights — layers whose
kept weights are still moving get more of the budget, as in Sparse Momentum (Dettmers &
Zettlemoyer 2019). Here the *densities* are proportional to the scores (a layer's share of the
budget is ``score × numel``), scaled so that ``Σ density·numel`` equals the budget, with layers
that would exceed 1 made dense and the rest re-scaled — the same rule as ERK
(:func:`swatlib.costmodel.methods.scaled_densities`). A layer whose kept weights have exactly
zero momentum is held at one weight (density ``1/numel``); the budget then exceeds its start by
less than one weight per such layer.

The budget is fixed when the object is built: ``Σ density·numel`` over the layers that were
sparse then (a dense first layer stays dense and out of the budget). The new densities take
effect when each layer next computes its Top-K threshold (every step with ``period = 1``).
The work — one ``|m|`` and one add per kept weight — goes to the measured ledger as
``redistribution`` / ``update``.
"""

from __future__ import annotations

import torch
from torch import nn

from swatlib.costmodel.ledger import record_extra
from swatlib.costmodel.methods import scaled_densities

from .layers import SWATLayer

__all__ = ["SWATM"]


class SWATM:
    """Momentum-driven density redistribution; call :meth:`step` after ``optimizer.step()``.

    Parameters
    ----------
    model : nn.Module
        A swatified model (``swatify(model, method="m", ...)``).
    optimizer : torch.optim.Optimizer
        Its optimizer; must keep a per-parameter momentum (SGD with momentum > 0, or Adam's
        first moment with ``state_key="exp_avg"``).
    state_key : str
        Optimizer-state entry holding the momentum.

    Attributes
    ----------
    layers : dict of str to SWATLayer
        The redistributed layers, by ledger name.
    budget : float
        ``Σ density·numel`` over them.

    Raises
    ------
    ValueError
        If the model has no sparse SWAT layer with weight Top-K.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 state_key: str = "momentum_buffer") -> None:
        self.layers = {m.ledger_name: m for m in model.modules()
                       if isinstance(m, SWATLayer) and m.weight_topk is not None
                       and m.density < 1.0}
        if not self.layers:
            raise ValueError("model has no sparse SWAT layer with weight Top-K to redistribute; "
                             "swatify it first (density < 1)")
        self.optimizer = optimizer
        self.state_key = state_key
        self.numels = [m.weight.numel() for m in self.layers.values()]
        self.budget = sum(m.density * n for m, n in zip(self.layers.values(), self.numels))

    def scores(self) -> list[float]:
        """Mean ``|momentum|`` over each layer's kept weights.

        Raises
        ------
        ValueError
            If a layer's weight has no momentum in the optimizer state (no step yet, or an
            optimizer without momentum).
        """
        scores = []
        for name, layer in self.layers.items():
            momentum = self.optimizer.state.get(layer.weight, {}).get(self.state_key)
            if momentum is None:
                raise ValueError(f"no optimizer state {self.state_key!r} for {name}: call step() "
                                 f"after optimizer.step() with a momentum optimizer")
            kept = layer.weight_topk.current_mask(layer.weight)
            scores.append(float(momentum.abs()[kept].mean()) if kept.any() else 0.0)
        return scores

    @torch.no_grad()
    def step(self) -> dict[str, float]:
        """Set every layer's density from the current momentum; return the new densities by name.

        With no momentum anywhere (all scores zero) the densities stay as they are.
        """
        scores = self.scores()
        if not any(scores):
            return {name: layer.density for name, layer in self.layers.items()}
        floor = {i: 1.0 / n for i, (s, n) in enumerate(zip(scores, self.numels)) if s == 0.0}
        densities = scaled_densities(self.numels, scores, self.budget, fixed=floor)
        for layer, density in zip(self.layers.values(), densities):
            layer.density = density
        record_extra("redistribution", "update", 2.0 * self.budget)
        return dict(zip(self.layers, densities))
