"""What each training method does to the cost of every conv / linear layer.

A method turns one global ``density`` (the kept fraction; sparsity = 1 − density) into a
:class:`LayerPlan` per conv / linear layer: the per-layer density from the method's
*distribution*, and for each phase of a training step the densities of the three tensors the
phase multiplies or writes. Every layer has three tensor *roles*: the weight-shaped tensor
(W, or dW in the weight-gradient phase), the input-shaped tensor (X, or dX in the
input-gradient phase) and the output-shaped tensor (Y, or dY in the backward phases). With
zero-skipping, the MACs a phase performs are its dense MACs M times the product of the three
densities (SPEC §6–§7):

========  =================  ====================  =====================
method    forward            input gradient        weight gradient
========  =================  ====================  =====================
dense     M                  M                     M
SWAT      M·d_w (W sparse)   M·d_w (W_s sparse)    M·d_a (X_s sparse), dW dense
SET       M·d_w              M·d_w                 M·d_w (SDDMM: dW only at the kept weights)
RigL      M·d_w              M·d_w                 M·(d_w·ΔT + 1)/(ΔT + 1) (dense dW every ΔT)
meProp    M                  M·d_g (dY sparse)     M·d_g
========  =================  ====================  =====================

The first layer never computes an input gradient (nothing upstream needs it), for every
method including dense. SWAT's stored-activation density d_a equals its weight density d_w.
RigL's step-averaged weight-gradient term reproduces ``(3·f_S·ΔT + 2·f_S + f_D)/(ΔT + 1)``.

Per-layer densities (:func:`layer_densities`, through :func:`swatlib.densities.distribute`):

* ``uniform`` — every layer at the density, the first one dense where the method says so;
* ``erk`` — Erdős–Rényi-kernel, ``d_l ∝ (O + I + kh + kw)/(O·I·kh·kw)`` (linear: ``(O + I)/(O·I)``),
  scaled so that the kept weights equal ``density ×`` all conv/linear weights, layers that
  would exceed 1 made dense and the rest re-scaled;
* ``er`` — Erdős–Rényi (SET, SPEC §1), ``d_l ∝ (O + I)/(O·I·kh·kw)``, same scaling.

A plan also lists the method's bookkeeping FLOPs (Top-K selection, topology updates,
SWAT-M's budget redistribution) with the phase they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swatlib.checks import check_choice
from swatlib.densities import DISTRIBUTIONS, check_density, distribute

from .layers import LayerInfo, compute_layers

__all__ = [
    "PHASES", "DISTRIBUTIONS", "MethodSpec", "METHODS", "method_names", "get_method",
    "TopKCost", "MethodOptions", "PhaseDensities", "LayerPlan", "layer_densities", "plan",
]

#: Phases of a conv / linear layer in one training step.
PHASES = ("forward", "input_grad", "weight_grad")


@dataclass(frozen=True)
class MethodSpec:
    """A training method, as far as cost is concerned.

    Attributes
    ----------
    name : str
        CLI / registry name.
    description : str
        One line for ``--list``.
    distribution : str or None
        How the global density becomes per-layer densities (None: everything dense).
    first_layer_dense : bool
        Keep the first conv/linear layer dense under the ``uniform`` distribution.
    sparse_weights : bool
        Forward and input gradient use (and backward stores) sparse weights.
    sparse_saved_activations : bool
        The input saved for the weight gradient is Top-K sparsified (SWAT).
    sparse_output_grad : bool
        The output gradient is Top-K sparsified (meProp); then ``density`` is its density.
    weight_grad : str
        ``"dense"`` (every weight receives a gradient), ``"kept"`` (only the kept weights:
        SET) or ``"rigl"`` (kept weights, plus a dense gradient every ΔT steps).
    sparse_update : bool
        The optimizer touches only the kept weights (SET, RigL).
    topk : str or None
        What is selected by magnitude: ``"weights+activations"`` every step (SWAT),
        ``"output_grad"`` every step (meProp), ``"topology"`` every topology update
        (SET, RigL), or None.
    redistribution : bool
        SWAT-M: the global budget is re-split every step by mean |momentum| of kept weights.
    """

    name: str
    description: str
    distribution: str | None
    first_layer_dense: bool
    sparse_weights: bool
    sparse_saved_activations: bool
    sparse_output_grad: bool
    weight_grad: str
    sparse_update: bool
    topk: str | None
    redistribution: bool = False


METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("dense", "dense training (density ignored)", None, False,
               False, False, False, "dense", False, None),
    MethodSpec("swat-u", "SWAT, uniform density, first layer dense",
               "uniform", True, True, True, False, "dense", False, "weights+activations"),
    MethodSpec("swat-erk", "SWAT, Erdős–Rényi-kernel densities",
               "erk", False, True, True, False, "dense", False, "weights+activations"),
    MethodSpec("swat-m", "SWAT, momentum redistribution (nominal = uniform start)",
               "uniform", True, True, True, False, "dense", False, "weights+activations",
               redistribution=True),
    MethodSpec("set", "SET, Erdős–Rényi densities, sparse gradient and update",
               "er", False, True, False, False, "kept", True, "topology"),
    MethodSpec("rigl", "RigL, uniform density, first layer dense, dense gradient every ΔT",
               "uniform", True, True, False, False, "rigl", True, "topology"),
    MethodSpec("meprop", "meProp, Top-K output gradient (density = gradient density)",
               "uniform", False, False, False, True, "dense", False, "output_grad"),
)}


def method_names() -> list[str]:
    """Registered method names."""
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    """Look up a method.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names.
    """
    return METHODS[check_choice(name, METHODS, "method")]


@dataclass(frozen=True)
class TopKCost:
    """FLOPs of magnitude-based selection, per element of the selected tensor.

    Attributes
    ----------
    mask_flops : float
        2: one |x| and one comparison with the threshold, every step.
    select_flops : float
        4: finding the k-th largest |x| (quickselect averages 2–3.4 comparisons per element,
        plus bookkeeping), paid only when the threshold is recomputed.
    period : int
        1: steps between threshold recomputations (SPEC default: every step; the SWAT
        authors used 10–20 on CIFAR).
    """

    mask_flops: float = 2.0
    select_flops: float = 4.0
    period: int = 1

    def per_element(self) -> float:
        """Selection FLOPs per element per step."""
        return self.mask_flops + self.select_flops / self.period


@dataclass(frozen=True)
class MethodOptions:
    """Method hyper-parameters that change the cost.

    Attributes
    ----------
    topk : TopKCost
        Cost of Top-K selection (SWAT, meProp).
    rigl_delta_t : int
        100: steps between RigL topology updates (RigL paper's ΔT).
    set_period : int
        390: steps between SET evolutions — one CIFAR-10 epoch at batch 128 (SET evolves
        once per epoch).
    """

    topk: TopKCost = field(default_factory=TopKCost)
    rigl_delta_t: int = 100
    set_period: int = 390


@dataclass(frozen=True)
class PhaseDensities:
    """Densities of the weight-, input- and output-shaped tensors of one phase.

    Attributes
    ----------
    weight, act, out : float
        Kept fractions of W (or dW), X (or dX) and Y (or dY).
    """

    weight: float = 1.0
    act: float = 1.0
    out: float = 1.0

    @property
    def mac_fraction(self) -> float:
        """Fraction of the dense MACs a zero-skipping machine performs."""
        return self.weight * self.act * self.out


@dataclass(frozen=True)
class LayerPlan:
    """What a method does to one conv / linear layer in one training step.

    Attributes
    ----------
    layer : LayerInfo
        The table row.
    density : float
        The layer's density from the method's distribution.
    weight_density : float
        Density of the weights used in the forward pass and stored for backward.
    saved_act_density : float
        Density of the input stored for the weight gradient.
    phases : dict of str to PhaseDensities
        ``forward``, ``input_grad`` (absent for the first layer) and ``weight_grad``.
    updated_fraction : float
        Fraction of the weights the optimizer updates.
    extras : tuple of (kind, phase, flops)
        Bookkeeping FLOPs per step for the whole batch (``topk``, ``redistribution``).
    """

    layer: LayerInfo
    density: float
    weight_density: float
    saved_act_density: float
    phases: dict[str, PhaseDensities]
    updated_fraction: float
    extras: tuple[tuple[str, str, float], ...] = ()


def layer_densities(table: list[LayerInfo], distribution: str, density: float, *,
                    first_layer_dense: bool = False) -> dict[str, float]:
    """Per-layer densities of the conv / linear layers.

    Parameters
    ----------
    table : list of LayerInfo
        The network's layer table.
    distribution : {"uniform", "erk", "er"}
        See the module docstring.
    density : float
        Global density in (0, 1].
    first_layer_dense : bool
        Keep the first layer at 1 (:func:`swatlib.densities.distribute`).

    Returns
    -------
    dict of str to float
        Layer name → density.
    """
    layers = compute_layers(table)
    values = distribute([layer.weight_shape for layer in layers], density, distribution,
                        first_layer_dense=first_layer_dense)
    return {layer.name: value for layer, value in zip(layers, values)}


def _extras(spec: MethodSpec, layer: LayerInfo, d: float, batch_size: int,
            options: MethodOptions) -> tuple[tuple[str, str, float], ...]:
    if d >= 1.0 or spec.topk is None:
        return ()
    per_element = options.topk.per_element()
    topology = options.topk.mask_flops + options.topk.select_flops
    extras = []
    if spec.topk == "weights+activations":
        extras.append(("topk", "forward",
                       per_element * (layer.weight_numel + batch_size * layer.input_numel)))
    elif spec.topk == "output_grad":
        extras.append(("topk", "backward", per_element * batch_size * layer.output_numel))
    elif spec.topk == "topology":
        # RigL selects over weights (drop) and gradients (grow); SET over kept weights.
        period = options.rigl_delta_t + 1 if spec.weight_grad == "rigl" else options.set_period
        selected = layer.weight_numel * (2.0 if spec.weight_grad == "rigl" else d)
        extras.append(("topk", "update", topology * selected / period))
    if spec.redistribution:
        extras.append(("redistribution", "update", 2.0 * d * layer.weight_numel))
    return tuple(extras)


def plan(table: list[LayerInfo], method: str, density: float, *, batch_size: int = 128,
         options: MethodOptions = MethodOptions()) -> list[LayerPlan]:
    """Plan every conv / linear layer of a network under a method.

    Parameters
    ----------
    table : list of LayerInfo
        The network's layer table.
    method : str
        One of :data:`METHODS`.
    density : float
        Global density in (0, 1] (ignored by ``dense``; for ``meprop`` the output-gradient
        density).
    batch_size : int
        Examples per step (Top-K over activations scales with it).
    options : MethodOptions
        Hyper-parameters that change the cost.

    Returns
    -------
    list of LayerPlan
        In call order; the first entry is the first layer.
    """
    spec = get_method(method)
    density = check_density(density)
    layers = compute_layers(table)
    if spec.distribution is None:
        densities = {layer.name: 1.0 for layer in layers}
    else:
        densities = layer_densities(table, spec.distribution, density,
                                    first_layer_dense=spec.first_layer_dense)
    plans = []
    for index, layer in enumerate(layers):
        d = densities[layer.name]
        d_w = d if spec.sparse_weights else 1.0
        d_a = d if spec.sparse_saved_activations else 1.0
        d_g = d if spec.sparse_output_grad else 1.0
        d_dw = {"dense": 1.0, "kept": d_w,
                "rigl": (d_w * options.rigl_delta_t + 1.0) / (options.rigl_delta_t + 1.0)}
        phases = {"forward": PhaseDensities(weight=d_w)}
        if index > 0:
            phases["input_grad"] = PhaseDensities(weight=d_w, out=d_g)
        phases["weight_grad"] = PhaseDensities(weight=d_dw[spec.weight_grad], act=d_a, out=d_g)
        plans.append(LayerPlan(
            layer=layer, density=d, weight_density=d_w, saved_act_density=d_a, phases=phases,
            updated_fraction=d_w if spec.sparse_update else 1.0,
            extras=_extras(spec, layer, d, batch_size, options)))
    return plans
