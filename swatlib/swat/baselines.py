"""Baselines for accuracy vs training FLOPs (SPEC §6): masked SET and RigL for conv + linear, meProp.

SET and RigL here are **masked**, not truly sparse: every ``nn.Linear`` / ``nn.Conv2d`` keeps its
dense weight, a boolean buffer ``topology_mask`` marks the existing connections, the weight is
zero outside it, and a gradient hook zeroes the gradient there — so the *training trajectory* is
that of the sparse method, while memory and compute stay dense. The nominal FLOP ledger
(:mod:`swatlib.costmodel`) gives their truly sparse cost; a measured ledger
(:meth:`MeasuredLedger.watch`) of these layers shows the zero-skipping work of the masked
forward and input gradient and a dense weight gradient. (The truly sparse SET lives in
:mod:`swatlib.topology` for MLPs.)

Both are objects you :meth:`~MaskedTopology.step` after every ``optimizer.step()``: it re-applies
the mask (weight decay or momentum cannot revive a removed weight) and, when due, changes the
topology; the optimizer state of removed and of new connections is zeroed.

* :class:`MaskedSET` — Erdős–Rényi densities scaled to the global budget (the cost model's
  ``set`` method); every ``period`` steps (e.g. one epoch) each sparse layer except the output
  layer drops ``floor(ζ·count)`` of its positive and of its negative weights closest to zero
  (exact zeros too) and regrows as many at uniformly random positions not held by a kept weight,
  with values from the layer's default init ``U(±1/√fan_in)`` or zero (SPEC §1).
* :class:`MaskedRigL` — uniform density, first layer dense (the cost model's ``rigl``); every
  ``delta_t`` steps until ``t_end``, drop ``floor(f·active)`` lowest-|w| connections with
  ``f = α·(1 + cos(π·t/t_end))/2`` and grow as many inactive ones with the largest *dense*
  gradient magnitude, at zero (Evci et al. 2020).
* :func:`meprop` — meProp-style output-gradient Top-K: SWAT layers in mode
  ``"bwd-output-grad"`` on every layer (whole-tensor Top-K of dY per SPEC §5, where meProp
  itself selects per example).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

from swatlib.costmodel.methods import scaled_densities, shape_score
from swatlib.topk import check_density

from .layers import SWATLayer
from .swatify import swatify

__all__ = ["MaskedTopology", "MaskedSET", "MaskedRigL", "meprop", "masked_layers"]


def masked_layers(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """The ``nn.Linear`` / ``nn.Conv2d`` modules (not SWAT layers) in registration order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and not isinstance(m, SWATLayer)]


def _random_mask(shape: torch.Size, density: float, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    numel = math.prod(shape)
    count = min(numel, max(1, math.ceil(density * numel - 1e-9)))
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:count]] = True
    return mask.view(shape).to(device)


class MaskedTopology(ABC):
    """Masks on the conv / linear weights of a model, kept through training.

    Subclasses say when the topology changes (:meth:`due`) and how (``_update``).

    Parameters
    ----------
    model : nn.Module
        Its ``nn.Linear`` / ``nn.Conv2d`` layers get a ``topology_mask`` buffer.
    densities : list of float
        One per layer of :func:`masked_layers`; random initial topology with
        ``ceil(density·numel)`` connections.
    optimizer : torch.optim.Optimizer, optional
        Its per-weight state is zeroed where connections are removed.
    generator : torch.Generator, optional
        Randomness of the topology.
    """

    def __init__(self, model: nn.Module, densities: list[float],
                 optimizer: torch.optim.Optimizer | None = None,
                 generator: torch.Generator | None = None) -> None:
        self.layers = masked_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer")
        self.optimizer = optimizer
        self.generator = generator
        self.t = 0
        self._handles = []
        for (_, module), density in zip(self.layers, densities):
            weight = module.weight
            module.register_buffer("topology_mask",
                                   _random_mask(weight.shape, density, generator, weight.device))
            self._handles.append(weight.register_hook(self._gradient_hook(module)))
        self._apply_masks()

    def _gradient_hook(self, module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(grad: torch.Tensor) -> torch.Tensor:
            self._observe_dense_gradient(module, grad)
            return grad * module.topology_mask
        return hook

    def _observe_dense_gradient(self, module: nn.Module, grad: torch.Tensor) -> None:
        """Called with each layer's dense gradient before masking (RigL keeps it)."""

    @abstractmethod
    def due(self) -> bool:
        """Whether the step now being taken (number ``t + 1``) changes the topology."""

    @abstractmethod
    def _update(self, module: nn.Linear | nn.Conv2d) -> None:
        """Change one layer's ``topology_mask`` and weights."""

    def _zero_state(self, module: nn.Module, positions: torch.Tensor) -> None:
        """Zero the optimizer state of new connections (flat ``positions``)."""
        if self.optimizer is None:
            return
        for state in self.optimizer.state.get(module.weight, {}).values():
            if isinstance(state, torch.Tensor) and state.shape == module.weight.shape:
                state.view(-1)[positions] = 0

    @torch.no_grad()
    def _apply_masks(self) -> None:
        for _, module in self.layers:
            mask = module.topology_mask
            module.weight.mul_(mask)
            if self.optimizer is not None:
                for state in self.optimizer.state.get(module.weight, {}).values():
                    if isinstance(state, torch.Tensor) and state.shape == mask.shape:
                        state.mul_(mask)

    @torch.no_grad()
    def step(self) -> bool:
        """After ``optimizer.step()``: change the topology if due, re-apply the masks.

        Returns
        -------
        bool
            Whether the topology changed.
        """
        changed = self.due()
        if changed:
            for _, module in self.layers:
                self._update(module)
        self.t += 1
        self._apply_masks()
        return changed

    def densities(self) -> dict[str, float]:
        """Current kept fraction of every layer, by name."""
        return {name: float(m.topology_mask.float().mean()) for name, m in self.layers}

    def remove(self) -> None:
        """Detach the gradient hooks (the masks stay as buffers)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class MaskedSET(MaskedTopology):
    """Masked SET for conv + linear layers (module docstring).

    Parameters
    ----------
    model : nn.Module
        The network.
    density : float
        Global density in (0, 1]; per-layer Erdős–Rényi densities meet it.
    period : int
        Steps between evolutions (one epoch of steps, as the authors evolve per epoch).
    t_end : int, optional
        No evolution at steps after ``t_end`` (e.g. skip the last epoch).
    zeta : float
        Fraction ζ of the positive and of the negative weights removed (paper: 0.3).
    regrow_init : {"init", "zero"}
        New weights from the layer's default init distribution or zero.
    optimizer, generator
        As for :class:`MaskedTopology`.
    """

    def __init__(self, model: nn.Module, *, density: float, period: int,
                 t_end: int | None = None, zeta: float = 0.3, regrow_init: str = "init",
                 optimizer: torch.optim.Optimizer | None = None,
                 generator: torch.Generator | None = None) -> None:
        check_density(density)
        if not 0.0 <= zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {zeta!r}")
        if regrow_init not in ("init", "zero"):
            raise ValueError(f"regrow_init must be 'init' or 'zero', got {regrow_init!r}")
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period!r}")
        self.period, self.t_end, self.zeta, self.regrow_init = period, t_end, zeta, regrow_init
        shapes = [tuple(m.weight.shape) for _, m in masked_layers(model)]
        numels = [math.prod(s) for s in shapes]
        densities = scaled_densities(numels, [shape_score(s, "er") for s in shapes],
                                     density * sum(numels))
        super().__init__(model, densities, optimizer, generator)
        self.output_layer = self.layers[-1][1]

    def due(self) -> bool:
        """Every ``period`` steps, up to ``t_end``."""
        step = self.t + 1
        return step % self.period == 0 and (self.t_end is None or step <= self.t_end)

    def _update(self, module: nn.Linear | nn.Conv2d) -> None:
        mask = module.topology_mask
        if module is self.output_layer or bool(mask.all()):
            return
        weight = module.weight.view(-1)
        flat = mask.reshape(-1)
        removed = flat & weight.eq(0)
        for sign in (1.0, -1.0):
            same_sign = (flat & (weight * sign > 0)).nonzero().squeeze(1)
            count = math.floor(self.zeta * same_sign.numel() + 1e-9)
            closest = torch.argsort(weight[same_sign] * sign, stable=True)[:count]
            removed[same_sign[closest]] = True
        kept = flat & ~removed
        free = (~kept).nonzero().squeeze(1)
        count = int(removed.sum())
        order = torch.randperm(free.numel(), generator=self.generator)[:count]
        grown = free[order.to(free.device)]
        weight[removed] = 0.0
        if self.regrow_init == "init":
            bound = 1.0 / math.sqrt(module.weight[0].numel())
            values = torch.rand(count, generator=self.generator, dtype=weight.dtype)
            weight[grown] = ((2.0 * values - 1.0) * bound).to(weight.device)
        else:
            weight[grown] = 0.0
        new_mask = kept.clone()
        new_mask[grown] = True
        self._zero_state(module, grown)
        mask.copy_(new_mask.view_as(mask))


class MaskedRigL(MaskedTopology):
    """Masked RigL for conv + linear layers (module docstring).

    Parameters
    ----------
    model : nn.Module
        The network.
    density : float
        Density of every layer but the first (dense).
    t_end : int
        Last step that may change the topology (RigL: about 0.75 of training).
    delta_t : int
        Steps between topology updates (100).
    alpha : float
        Initial drop fraction (0.3).
    optimizer, generator
        As for :class:`MaskedTopology`.
    """

    def __init__(self, model: nn.Module, *, density: float, t_end: int, delta_t: int = 100,
                 alpha: float = 0.3, optimizer: torch.optim.Optimizer | None = None,
                 generator: torch.Generator | None = None) -> None:
        check_density(density)
        if delta_t < 1 or t_end < 1:
            raise ValueError(f"delta_t and t_end must be >= 1, got {delta_t!r}, {t_end!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.t_end, self.delta_t, self.alpha = t_end, delta_t, alpha
        self._dense_grads: dict[nn.Module, torch.Tensor] = {}
        count = len(masked_layers(model))
        super().__init__(model, [1.0] + [density] * (count - 1), optimizer, generator)

    def due(self) -> bool:
        """Every ``delta_t`` steps, up to ``t_end``."""
        step = self.t + 1
        return step % self.delta_t == 0 and step <= self.t_end

    def drop_fraction(self) -> float:
        """``α·(1 + cos(π·t/t_end))/2`` for the step now being taken (``t`` = its number)."""
        return self.alpha * (1.0 + math.cos(math.pi * (self.t + 1) / self.t_end)) / 2.0

    def _observe_dense_gradient(self, module: nn.Module, grad: torch.Tensor) -> None:
        if self.due():
            self._dense_grads[module] = grad.detach().abs()

    def _update(self, module: nn.Linear | nn.Conv2d) -> None:
        mask = module.topology_mask
        grad = self._dense_grads.pop(module, None)
        if bool(mask.all()) or grad is None:
            return
        flat, weight = mask.reshape(-1), module.weight.view(-1)
        active = flat.nonzero().squeeze(1)
        count = math.floor(self.drop_fraction() * active.numel())
        if count == 0:
            return
        dropped = active[torch.argsort(weight[active].abs(), stable=True)[:count]]
        kept = flat.clone()
        kept[dropped] = False
        candidates = (~kept).nonzero().squeeze(1)
        grown = candidates[torch.argsort(grad.reshape(-1)[candidates], descending=True,
                                         stable=True)[:count]]
        new_mask = kept.clone()
        new_mask[grown] = True
        weight[dropped] = 0.0
        weight[grown] = 0.0
        self._zero_state(module, grown)
        mask.copy_(new_mask.view_as(mask))


def meprop(model: nn.Module, *, density: float, period: int = 1) -> nn.Module:
    """meProp-style baseline: Top-K of the output gradient in every conv / linear layer.

    ``swatify(model, method="u", density=density, first_layer_dense=False, period=period,
    mode="bwd-output-grad")``: forward and stored tensors dense, the backward pass of every layer
    uses ``TopK(dY)`` at ``density`` for dX, dW and db.
    """
    return swatify(model, method="u", density=density, first_layer_dense=False, period=period,
                   mode="bwd-output-grad")
