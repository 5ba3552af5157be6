"""Baselines for accuracy vs training FLOPs (SPEC §6): masked SET and RigL for conv + linear layers, meProp.

SET and RigL here are the topology algorithms of :mod:`swatlib.topology` (each written once) run on
**masked** layers: every ``nn.Linear`` / ``nn.Conv2d`` keeps its dense weight and is wrapped in a
:class:`~swatlib.sparse.MaskedWeight` (a ``topology_mask`` buffer, the weight zero outside it, a
gradient hook that zeroes the gradient there) — so the *training trajectory* is that of the sparse
method, while memory and compute stay dense. The nominal FLOP ledger (:mod:`swatlib.costmodel`) gives
their truly sparse cost; a measured ledger (:meth:`MeasuredLedger.watch`) of these layers shows the
zero-skipping work of the masked forward and input gradient and a dense weight gradient. (On
``SparseLinear`` layers the same SET and RigL are truly sparse.)

* :func:`masked_set` — Erdős–Rényi densities scaled to the global budget (the cost model's ``set``
  method); at the end of every epoch but the last, each sparse layer except the output layer drops
  ``floor(ζ·count)`` of its positive and of its negative weights closest to zero (exact zeros too)
  and regrows as many at uniformly random positions not held by a kept weight, with values from the
  layer's default init ``U(±1/√fan_in)`` or zero (SPEC §1).
* :func:`masked_rigl` — uniform density, first layer dense (the cost model's ``rigl``); every
  ``delta_t`` steps until ``t_end``, drop ``floor(f·active)`` lowest-|w| connections with
  ``f = α·(1 + cos(π·t/t_end))/2`` and grow as many inactive ones with the largest *dense*
  gradient magnitude, at zero (Evci et al. 2020).
* :func:`meprop` — meProp-style output-gradient Top-K: SWAT layers in mode
  ``"bwd-output-grad"`` on every layer (whole-tensor Top-K of dY per SPEC §5, where meProp
  itself selects per example).
"""

from __future__ import annotations

import torch
from torch import nn

from swatlib.densities import distribute
from swatlib.sparse import MaskedWeight
from swatlib.topology import SET, RigL

from .layers import SWATLayer
from .swatify import swatify

__all__ = ["masked_layers", "masked_rigl", "masked_set", "meprop", "wrap_masked"]


def masked_layers(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """The ``nn.Linear`` / ``nn.Conv2d`` modules (not SWAT layers) in registration order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and not isinstance(m, SWATLayer)]


def wrap_masked(model: nn.Module, density: float, distribution: str, *, first_layer_dense: bool = False,
                generator: torch.Generator | None = None) -> list[MaskedWeight]:
    """Mask every conv / linear layer of ``model`` at the per-layer densities of ``distribution``.

    Parameters
    ----------
    model : nn.Module
        The network; its layers are wrapped in registration order (random initial topologies drawn
        from ``generator`` in that order).
    density : float
        Global density in (0, 1].
    distribution : {"uniform", "er", "erk"}
        :func:`swatlib.densities.distribute`.
    first_layer_dense : bool
        Hold the first layer at density 1.
    generator : torch.Generator, optional
        Randomness of the initial topologies.

    Raises
    ------
    ValueError
        If the model has no conv / linear layer, or for a bad density or distribution.
    """
    modules = [m for _, m in masked_layers(model)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer")
    densities = distribute([tuple(m.weight.shape) for m in modules], density, distribution,
                           first_layer_dense=first_layer_dense)
    return [MaskedWeight(m, d, generator=generator) for m, d in zip(modules, densities)]


def masked_set(model: nn.Module, *, density: float, epochs: int, zeta: float = 0.3,
               regrow_init: str = "init", optimizer: torch.optim.Optimizer | None = None,
               generator: torch.Generator | None = None) -> SET:
    """Masked SET on a conv / linear network (module docstring): the :class:`~swatlib.topology.SET`
    to step at the end of every epoch (``fit`` does), evolving after every epoch but the last."""
    layers = wrap_masked(model, density, "er", generator=generator)
    return SET(layers[:-1], zeta=zeta, regrow_init=regrow_init, until=epochs - 1, optimizer=optimizer,
               generator=generator)


def masked_rigl(model: nn.Module, *, density: float, t_end: int, delta_t: int = 100, alpha: float = 0.3,
                optimizer: torch.optim.Optimizer | None = None,
                generator: torch.Generator | None = None) -> RigL:
    """Masked RigL on a conv / linear network (module docstring), first layer dense: the
    :class:`~swatlib.topology.RigL` to step after every optimizer step (``fit`` does)."""
    layers = wrap_masked(model, density, "uniform", first_layer_dense=True, generator=generator)
    return RigL(layers, t_end=t_end, delta_t=delta_t, alpha=alpha, optimizer=optimizer)


def meprop(model: nn.Module, *, density: float, period: int = 1) -> nn.Module:
    """meProp-style baseline: Top-K of the output gradient in every conv / linear layer.

    ``swatify(model, method="u", density=density, first_layer_dense=False, period=period,
    mode="bwd-output-grad")``: forward and stored tensors dense, the backward pass of every layer
    uses ``TopK(dY)`` at ``density`` for dX, dW and db.
    """
    return swatify(model, method="u", density=density, first_layer_dense=False, period=period,
                   mode="bwd-output-grad")
