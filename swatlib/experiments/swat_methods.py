"""The training methods of the SWAT notebooks, one :class:`Method` per name in :data:`REGISTRY`.

A method says how it turns the dense network of a run into itself (``prepare``, which returns the
topology algorithms the training loop steps, :mod:`swatlib.topology`), its readable label, which FLOP count stands for it,
whether its first layer is dense, and which spec fields apply to it. :mod:`~swatlib.experiments.swat`
builds specs and trains from this table, never from ``if method == ...`` branches; adding a method
means adding one ``prepare`` function and one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from swatlib.checks import check_choice
from swatlib.experiments.swat_settings import FIRST_LAYER_DENSE, RIGL_ALPHA, RIGL_END, SET_ZETA
from swatlib.swat import masked_rigl, masked_set, meprop, redistributable_layers, swatify
from swatlib.topology import SWATM, TopologyAlgorithm

__all__ = ["Method", "Prepare", "REGISTRY", "get_method"]

#: ``prepare(spec, model, optimizer, steps_per_epoch)``: make the dense ``model`` the spec's method
#: in place and return its topology algorithms (``fit`` steps each where it declares).
Prepare = Callable[[dict[str, Any], nn.Module, torch.optim.Optimizer, int], list[TopologyAlgorithm]]


def _no_topology(rigl_delta_t: int) -> None:
    return None


@dataclass(frozen=True)
class Method:
    """One training method of the accuracy-vs-FLOPs comparison (SPEC §6).

    Attributes
    ----------
    name
        The spec's ``method`` and the cost model's method name.
    label
        Readable name for tables and legends.
    prepare
        See :data:`Prepare`.
    flops_basis
        ``"measured"`` (the ledger's count of what the layers multiplied) or ``"nominal"`` (the cost
        model's formula: a masked implementation multiplies zeros, so its measured count would
        describe the implementation, not the method).
    sparse
        Whether the method has a density (dense training has none: its spec records 1).
    swat
        A SWAT variant: its spec records the Top-K ``mode``.
    sensitivity_modes
        Takes the one-tensor-at-a-time modes of paper Fig. 2 (SWAT-U only).
    topk_period
        Selects with Top-K thresholds recomputed every ``period`` steps.
    topology
        The spec's ``topology`` entry, from RigL's ΔT (None for methods without a topology).
    """

    name: str
    label: str
    prepare: Prepare
    flops_basis: str = "measured"
    sparse: bool = True
    swat: bool = False
    sensitivity_modes: bool = False
    topk_period: bool = False
    topology: Callable[[int], dict[str, Any] | None] = _no_topology

    @property
    def first_layer_dense(self) -> bool | None:
        """Whether the first conv / linear layer stays dense (:data:`~swatlib.experiments.swat_settings.FIRST_LAYER_DENSE`)."""
        return FIRST_LAYER_DENSE[self.name]


def _topology_generator(spec: dict[str, Any]) -> torch.Generator:
    """The generator of a masked topology's random draws: seeded apart from the network's init."""
    return torch.Generator().manual_seed(spec["seed"] + 1)


def _prepare_dense(spec, model, optimizer, steps_per_epoch):
    return []


def _swatify(spec: dict[str, Any], model: nn.Module, rule: str) -> None:
    swatify(model, method=rule, density=spec["density"], period=spec["period"],
            mode=spec["mode"], first_layer_dense=spec["first_layer_dense"])


def _prepare_swat_u(spec, model, optimizer, steps_per_epoch):
    _swatify(spec, model, "u")
    return []


def _prepare_swat_erk(spec, model, optimizer, steps_per_epoch):
    _swatify(spec, model, "erk")
    return []


def _prepare_swat_m(spec, model, optimizer, steps_per_epoch):
    _swatify(spec, model, "m")
    return [SWATM(redistributable_layers(model), optimizer)] if spec["density"] < 1 else []


def _prepare_meprop(spec, model, optimizer, steps_per_epoch):
    meprop(model, density=spec["density"], period=spec["period"])
    return []


def _prepare_set(spec, model, optimizer, steps_per_epoch):
    t = spec["topology"]
    return [masked_set(model, density=spec["density"], epochs=spec["epochs"], zeta=t["zeta"],
                       regrow_init=t["regrow"], optimizer=optimizer, generator=_topology_generator(spec))]


def _prepare_rigl(spec, model, optimizer, steps_per_epoch):
    total, t = steps_per_epoch * spec["epochs"], spec["topology"]
    return [masked_rigl(model, density=spec["density"], delta_t=t["delta_t"], alpha=t["alpha"],
                        t_end=max(1, math.floor(t["t_end_fraction"] * total)),
                        optimizer=optimizer, generator=_topology_generator(spec))]


def _set_topology(rigl_delta_t: int) -> dict[str, Any]:
    """SET evolves once per epoch, not after the last, and regrows from the init distribution (SPEC §1).

    Since swatlib's one SET (:mod:`swatlib.topology`) runs here, evolution follows the epoch's
    evaluation, as in every other notebook (it used to precede it, so the recorded accuracies were
    those of the freshly rewired network).
    """
    return {"zeta": SET_ZETA, "evolve": "every epoch but the last, after its evaluation", "regrow": "init"}


def _rigl_topology(rigl_delta_t: int) -> dict[str, Any]:
    return {"delta_t": int(rigl_delta_t), "alpha": RIGL_ALPHA, "t_end_fraction": RIGL_END}


#: Every method by name, in the order of the notebooks' tables.
REGISTRY = {m.name: m for m in (
    Method("dense", "dense", _prepare_dense, sparse=False),
    Method("swat-u", "SWAT-U", _prepare_swat_u, swat=True, sensitivity_modes=True, topk_period=True),
    Method("swat-erk", "SWAT-ERK", _prepare_swat_erk, swat=True, topk_period=True),
    Method("swat-m", "SWAT-M", _prepare_swat_m, swat=True, topk_period=True),
    Method("set", "SET (masked)", _prepare_set, flops_basis="nominal", topology=_set_topology),
    Method("rigl", "RigL (masked)", _prepare_rigl, flops_basis="nominal", topology=_rigl_topology),
    Method("meprop", "meProp", _prepare_meprop, topk_period=True),
)}


def get_method(name: str) -> Method:
    """The registered method ``name``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    """
    return REGISTRY[check_choice(name, REGISTRY, "method")]
