"""Neuron importance and Importance Pruning (seed 001, eq. 4 and Algorithm 2; SPEC §3).

The importance of hidden neuron ``j`` is the strength of its incoming connections,
``I_j = Σ_i |W_ji|``. Importance Pruning removes, in every hidden layer, each neuron whose importance
is *at or below* the ``p``-th percentile of that layer (``np.percentile`` with its default linear
interpolation, on a plain 1-D float64 array — the authors' call silently selected every neuron under
numpy ≥ 2). Two guarantees on top of the rule: only hidden neurons are pruned, and a layer always
keeps at least one neuron (if every neuron ties at the threshold, the most important one — the first
of them — stays). The importances of all layers are computed before anything is removed, so a
layer's verdict does not depend on the pruning of the layer before it.

Modes (named options):

``"remove"`` (default, the paper's intent)
    The neuron really disappears: layer ``l`` loses the output, layer ``l+1`` the matching input, the
    bias entry and any per-neuron activation parameters (SReLU) go too, and the optimizer state of
    everything that remains follows (:func:`swatlib.optim.replace_parameter`).
``"zero_incoming"`` (the authors' code)
    Only the incoming connections of the selected neurons are removed (zeroed, for a dense
    ``nn.Linear``); shapes, outgoing weights and biases are unchanged and nothing is regrown, so
    nnz shrinks.

:func:`prune_neurons` prunes once — the post-training variant of paper Table 6, and the step that
:class:`swatlib.topology.ImportancePruning` repeats on a schedule during training
(:func:`prune_and_map` also returns the old → new connection maps that topology steps expose).

**Model protocol.** A model exposes ``linears``, its ordered linear layers (``SparseLinear``,
``MaskedLinear`` or ``nn.Linear``; the last is the output layer), and optionally ``activations``, the
``len(linears) - 1`` modules applied after each hidden layer; those having
``select_features(keep, optimizer)`` (e.g. :class:`swatlib.activations.SReLU`) shrink with their layer.
A model without ``linears`` (e.g. an ``nn.Sequential``) is read in module registration order, each
module with ``select_features`` belonging to the linear layer before it.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from swatlib.checks import check_choice, check_number
from swatlib.optim import replace_parameter
from swatlib.sparse import MaskedLinear, SparseLinear

__all__ = [
    "MODES",
    "check_percentile",
    "hidden_sizes",
    "linear_layers",
    "neuron_importance",
    "neurons_to_prune",
    "prune_and_map",
    "prune_neurons",
]

#: Accepted ``mode`` names.
MODES = ("remove", "zero_incoming")

_LINEAR_TYPES = (nn.Linear, SparseLinear, MaskedLinear)


def check_percentile(percentile: float) -> float:
    """Return ``percentile`` as a float if it lies in [0, 100), else raise a ValueError naming it."""
    return check_number(percentile, "percentile", 0, 100, open_high=True)


@torch.no_grad()
def neuron_importance(layer: nn.Module) -> torch.Tensor:
    """``I_j = Σ_i |W_ji|`` for every output neuron ``j`` of ``layer`` (float64, length ``out_features``).

    Parameters
    ----------
    layer
        A ``SparseLinear``, ``MaskedLinear`` or ``nn.Linear``.
    """
    if isinstance(layer, (SparseLinear, MaskedLinear)):
        rows, _, values = layer.connections()
        importance = torch.zeros(layer.out_features, dtype=torch.float64, device=values.device)
        return importance.index_add_(0, rows, values.abs().to(torch.float64))
    if isinstance(layer, nn.Linear):
        return layer.weight.detach().abs().sum(1, dtype=torch.float64)
    raise ValueError(f"layer must be SparseLinear, MaskedLinear or nn.Linear, got {type(layer).__name__}")


def neurons_to_prune(importance: torch.Tensor, percentile: float) -> torch.Tensor:
    """Sorted indices of the neurons at or below the ``percentile``-th percentile of ``importance``.

    Never all of them: if every neuron qualifies, the first most important one is spared.

    Raises
    ------
    ValueError
        If ``percentile`` ∉ [0, 100) or ``importance`` is empty.
    """
    percentile = check_percentile(percentile)
    if importance.numel() == 0:
        raise ValueError("importance must not be empty")
    values = importance.detach().cpu().to(torch.float64).reshape(-1)
    threshold = float(np.percentile(values.numpy(), percentile))
    selected = values <= threshold
    if bool(selected.all()):
        selected[int(values.argmax())] = False
    return selected.nonzero().squeeze(1)


def _structure(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module | None]]:
    """The model's linear layers and the per-neuron module (or None) after each hidden layer."""
    linears = getattr(model, "linears", None)
    if linears is not None:
        linears = list(linears)
        activations = list(getattr(model, "activations", [None] * (len(linears) - 1)))
        if len(activations) != len(linears) - 1:
            raise ValueError(f"model.activations must have {len(linears) - 1} entries (one per hidden layer), "
                             f"got {len(activations)}")
        return linears, [a if hasattr(a, "select_features") else None for a in activations]
    linears, activations = [], []
    for module in model.modules():
        if isinstance(module, _LINEAR_TYPES):
            linears.append(module)
            activations.append(None)
        elif hasattr(module, "select_features") and linears:
            activations[-1] = module
    return linears, activations[:-1]


@torch.no_grad()
def _select_dense(
    linear: nn.Linear,
    outputs: torch.Tensor | None,
    inputs: torch.Tensor | None,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    """``select_neurons`` for a plain ``nn.Linear``."""
    out_keep = torch.arange(linear.out_features) if outputs is None else outputs
    in_keep = torch.arange(linear.in_features) if inputs is None else inputs
    source = (out_keep[:, None] * linear.in_features + in_keep[None, :]).reshape(-1)
    replace_parameter(linear.weight, linear.weight[out_keep][:, in_keep].clone(), source, optimizer)
    if linear.bias is not None and outputs is not None:
        replace_parameter(linear.bias, linear.bias[out_keep].clone(), out_keep, optimizer)
    linear.out_features, linear.in_features = out_keep.numel(), in_keep.numel()


@torch.no_grad()
def _remove_incoming(layer: nn.Module, pruned: torch.Tensor,
                     optimizer: torch.optim.Optimizer | None) -> torch.Tensor | None:
    """The authors' behaviour: drop (or zero) every incoming connection of the ``pruned`` neurons.

    Returns the old → new connection map of a sparse layer (None for a dense one).
    """
    if isinstance(layer, (SparseLinear, MaskedLinear)):
        rows, cols, values = layer.connections()
        kept = (~torch.isin(rows, pruned)).nonzero().squeeze(1)
        return layer.set_connections(rows[kept], cols[kept], values[kept], source=kept, optimizer=optimizer)
    else:
        weight = layer.weight
        source = torch.arange(weight.numel()).reshape(weight.shape)
        source[pruned] = -1
        new_weight = weight.detach().clone()
        new_weight[pruned] = 0.0
        replace_parameter(weight, new_weight, source.reshape(-1), optimizer)
        return None


def _select(layer: nn.Module, outputs: torch.Tensor | None, inputs: torch.Tensor | None,
            optimizer: torch.optim.Optimizer | None) -> torch.Tensor | None:
    """Shrink any linear layer; return the connection map of a sparse one (None for a dense one)."""
    if isinstance(layer, (SparseLinear, MaskedLinear)):
        return layer.select_neurons(outputs=outputs, inputs=inputs, optimizer=optimizer)
    _select_dense(layer, outputs, inputs, optimizer)
    return None


def prune_and_map(
    model: nn.Module,
    percentile: float,
    optimizer: torch.optim.Optimizer | None = None,
    mode: str = "remove",
) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
    """:func:`prune_neurons`, also returning which neurons went and each changed sparse layer's old → new map.

    Returns
    -------
    (list of torch.Tensor, dict of int to torch.Tensor)
        The (old) indices of the neurons selected in each hidden layer, and by index into the model's
        linear layers the old index of every remaining connection in the new order (a layer shrunk on
        both sides gets the two maps composed). Anything that follows the neurons — a parameter
        server's stale bias gradients — can be remapped from the former.
    """
    check_percentile(percentile)
    check_choice(mode, MODES, "mode")
    linears, activations = _structure(model)
    if len(linears) < 2:
        raise ValueError("model must have at least one hidden layer (two linear layers) to prune")
    for layer in linears:
        if not isinstance(layer, _LINEAR_TYPES):
            raise ValueError(f"model.linears must hold SparseLinear, MaskedLinear or nn.Linear, "
                             f"got {type(layer).__name__}")
    pruned = [neurons_to_prune(neuron_importance(layer), percentile) for layer in linears[:-1]]
    maps: dict[int, torch.Tensor] = {}

    def record(index: int, source: torch.Tensor | None) -> None:
        if source is not None:
            maps[index] = maps[index][source] if index in maps else source

    for index, drop in enumerate(pruned):
        layer = linears[index]
        if drop.numel() == 0:
            continue
        if mode == "zero_incoming":
            record(index, _remove_incoming(layer, drop, optimizer))
            continue
        keep_mask = torch.ones(layer.out_features, dtype=torch.bool)
        keep_mask[drop] = False
        keep = keep_mask.nonzero().squeeze(1)
        record(index, _select(layer, keep, None, optimizer))
        if activations[index] is not None:
            activations[index].select_features(keep, optimizer)
        record(index + 1, _select(linears[index + 1], None, keep, optimizer))
    return pruned, maps


def prune_neurons(
    model: nn.Module,
    percentile: float,
    optimizer: torch.optim.Optimizer | None = None,
    mode: str = "remove",
) -> list[int]:
    """Prune every hidden layer of ``model`` once at the ``percentile``-th importance percentile.

    Parameters
    ----------
    model
        A model following the protocol of this module.
    percentile
        ``p`` ∈ [0, 100): neurons with importance at or below the layer's ``p``-th percentile go
        (paper Table 6: 5, 10, 15, 20 or 25 after training).
    optimizer
        Optimizer whose state follows the surviving parameters (``None`` after training).
    mode
        ``"remove"`` (default) or ``"zero_incoming"``, see the module docstring.

    Returns
    -------
    list[int]
        Number of neurons selected in each hidden layer, in order.

    Raises
    ------
    ValueError
        If ``percentile`` ∉ [0, 100), ``mode`` is unknown, or the model has no hidden layer.
    """
    return [drop.numel() for drop in prune_and_map(model, percentile, optimizer, mode)[0]]


def linear_layers(model: nn.Module) -> list[nn.Module]:
    """The model's linear layers in forward order, as this module reads them (its ``linears``, or its
    linear modules in registration order)."""
    return _structure(model)[0]


def hidden_sizes(model: nn.Module) -> list[int]:
    """Current number of neurons of each hidden layer (``out_features`` of all but the last linear)."""
    return [layer.out_features for layer in linear_layers(model)[:-1]]
