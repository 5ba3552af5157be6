"""``swatify``: turn a dense model into a SWAT model in place (SWAT-U, SWAT-ERK, SWAT-M).

Every ``nn.Linear`` and ``nn.Conv2d`` module (exact types: subclasses such as attention's
internal projection are left alone) becomes a :class:`~swatlib.swat.layers.SWATLinear` /
:class:`~swatlib.swat.layers.SWATConv2d` that shares the **same** ``weight`` and ``bias``
Parameter objects — an optimizer built before ``swatify`` stays valid — every ``nn.ReLU``
becomes a :class:`~swatlib.swat.relu.MaskReLU`, so that no dense copy of a sparsified activation
stays alive through the ReLU's own backward, and every ``nn.MaxPool2d`` a
:class:`~swatlib.swat.pool.MaskMaxPool2d`, which keeps a 1-byte argmax per output instead of its
dense input and an int64 argmax (exact types again; a max-pool with ``return_indices=True`` or a
window of more than 256 elements stays as it is). Both swaps compute bit for bit what the stock
layers compute; :mod:`swatlib.swat.memory` lists the layers that still keep dense copies.

Per-layer densities (SPEC §5), computed once here:

* ``"u"`` — SWAT-U: every layer at ``density``, the first one dense if ``first_layer_dense``
  (the last layer is sparse);
* ``"erk"`` — SWAT-ERK: ``density_l ∝ (O + I + kh + kw)/(O·I·kh·kw)`` (linear ``(O + I)/(O·I)``),
  scaled so that the kept weights are ``density ×`` all conv / linear weights, layers that would
  exceed 1 made dense and the rest re-scaled (the rule of
  :func:`swatlib.densities.distribute`); with ``first_layer_dense`` the first layer
  is held dense inside the same budget;
* ``"m"`` — SWAT-M: starts as SWAT-U; a :class:`~swatlib.topology.SWATM` built on
  :func:`redistributable_layers` and the optimizer then redistributes the budget after every
  optimizer step.

"First" is the first conv / linear module in registration order (``model.named_modules()``),
which is the first one called in every network here.
"""

from __future__ import annotations

import math

from torch import nn
from torch.nn.modules.utils import _pair

from swatlib.checks import check_choice
from swatlib.densities import check_density, distribute

from .compressed import INDEX_FORMATS
from .layers import MODES, SWATConv2d, SWATLayer, SWATLinear, name_swat_layers
from .pool import MAX_WINDOW, MaskMaxPool2d
from .relu import MaskReLU
from .topk_state import check_period, check_structured

__all__ = ["SWAT_METHODS", "redistributable_layers", "swat_densities", "swat_layer", "swatify"]

#: Accepted values of ``method``.
SWAT_METHODS = ("u", "erk", "m")


def swat_densities(weight_shapes: list[tuple[int, ...]], method: str, density: float, *,
                   first_layer_dense: bool = True) -> list[float]:
    """Per-layer densities of ``method`` for layers with these weight shapes (first = index 0).

    Parameters
    ----------
    weight_shapes : list of tuple of int
        ``(O, I)`` for linear, ``(O, I/groups, kh, kw)`` for conv layers, in order.
    method : {"u", "erk", "m"}
        See the module docstring (``"m"`` starts uniform).
    density : float
        Global density in (0, 1].
    first_layer_dense : bool
        Hold the first layer at density 1.

    Returns
    -------
    list of float

    Raises
    ------
    ValueError
        For a bad method or density, or an ERK budget too small to hold the first layer dense.
    """
    check_choice(method, SWAT_METHODS, "method")
    return distribute(weight_shapes, density, "erk" if method == "erk" else "uniform",
                      first_layer_dense=first_layer_dense)


def swat_layer(module: nn.Linear | nn.Conv2d, **settings: object) -> SWATLayer:
    """The SWAT twin of one ``nn.Linear`` / ``nn.Conv2d``, sharing its ``weight`` and ``bias`` Parameters.

    ``settings`` are the SWAT layer's keywords (``density``, ``period``, ``mode``...); the twin keeps the
    module's training flag. Used by :func:`swatify` and by models that choose their SWAT layers
    themselves (:func:`swatlib.models.toy_bert.sparsify`).
    """
    w = module.weight
    common = {"bias": module.bias is not None, "device": w.device, "dtype": w.dtype}
    if isinstance(module, nn.Linear):
        layer: SWATLayer = SWATLinear(module.in_features, module.out_features, **common,
                                      **settings)
    else:
        layer = SWATConv2d(module.in_channels, module.out_channels, module.kernel_size,
                           module.stride, module.padding, module.dilation, module.groups,
                           padding_mode=module.padding_mode, **common, **settings)
    layer.weight, layer.bias = module.weight, module.bias
    return layer.train(module.training)


def _swappable(pool: nn.MaxPool2d) -> bool:
    """Whether ``MaskMaxPool2d`` can replace ``pool``: no returned indices, a 1-byte window."""
    return not pool.return_indices and math.prod(_pair(pool.kernel_size)) <= MAX_WINDOW


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


def swatify(model: nn.Module, *, method: str = "u", density: float,
            first_layer_dense: bool = True, period: int = 1, structured: str | None = None,
            mode: str = "swat", index_format: str = "bitmap") -> nn.Module:
    """Replace ``nn.Linear`` / ``nn.Conv2d`` by SWAT layers, ReLU and max-pool by their Mask forms.

    ``nn.ReLU`` becomes :class:`~swatlib.swat.relu.MaskReLU` and ``nn.MaxPool2d``
    :class:`~swatlib.swat.pool.MaskMaxPool2d` (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        Modified in place.
    method : {"u", "erk", "m"}
        SWAT-U, SWAT-ERK or SWAT-M (module docstring).
    density : float
        Global density (kept fraction) in (0, 1].
    first_layer_dense : bool
        Keep the first conv / linear layer at density 1 (SWAT-U's rule).
    period : int
        Training steps between Top-K threshold recomputations (>= 1).
    structured : {None, "channel", "filter"}
        Structured Top-K of the weights (activations stay unstructured).
    mode : str
        :data:`swatlib.swat.layers.MODES` — ``"swat"``, or a sensitivity-study variant.
    index_format : {"bitmap", "indices"}
        Index of the compressed saved tensors.

    Returns
    -------
    nn.Module
        ``model`` itself, its SWAT layers named for the measured ledger.

    Raises
    ------
    ValueError
        For a bad argument (the message names it) or a model without linear / conv layers.
    """
    check_choice(method, SWAT_METHODS, "method")
    check_density(density)
    check_period(period)
    check_structured(structured)
    check_choice(mode, MODES, "mode")
    check_choice(index_format, INDEX_FORMATS, "index_format")
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) in (nn.Linear, nn.Conv2d)]
    if not targets:
        raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d module to replace")
    if targets[0][0] == "":
        raise ValueError("model must contain the layers: wrap a bare layer in nn.Sequential")
    densities = swat_densities([tuple(m.weight.shape) for _, m in targets], method, density,
                               first_layer_dense=first_layer_dense)
    for (name, module), layer_density in zip(targets, densities):
        new = swat_layer(module, density=layer_density, period=period, mode=mode,
                          structured=structured, index_format=index_format)
        _replace(model, name, new)
    for name, module in list(model.named_modules()):
        if type(module) is nn.ReLU and name:
            _replace(model, name, MaskReLU(module.inplace).train(module.training))
        elif type(module) is nn.MaxPool2d and name and _swappable(module):
            _replace(model, name, MaskMaxPool2d(module.kernel_size, module.stride, module.padding,
                                                module.dilation, False, module.ceil_mode)
                     .train(module.training))
    name_swat_layers(model)
    return model


def redistributable_layers(model: nn.Module) -> list[SWATLayer]:
    """The sparse SWAT layers of ``model`` with weight Top-K (density < 1): what SWAT-M shares its budget over.

    A dense first layer stays out of the budget.
    """
    return [m for m in model.modules()
            if isinstance(m, SWATLayer) and m.weight_topk is not None and m.density < 1.0]
