"""Layer table: every conv / linear / BatchNorm / activation / pooling call of one forward pass.

The table is the cost model's only view of a network. It is built by running one example
through the model with forward hooks — on the ``meta`` device that costs no memory and
takes milliseconds even for WRN-50-2 — and records, per call, the input and output shapes,
the weight shape, the parameters and the dense forward MACs (a MAC is one multiply-add;
FLOPs = 2·MACs).

Dense forward MACs per example:

* convolution: ``output elements × (in_channels / groups) × kh × kw`` (bias adds not counted,
  as in ``torch.utils.flop_counter``);
* linear: ``output elements × in_features``.

Residual additions and concatenations are not module calls and are not in the table (they
cost about one FLOP per block output element, < 0.3 % of the convolution work of the
networks here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

__all__ = ["LayerInfo", "layer_table", "compute_layers", "total_macs", "KINDS"]

#: Layer kinds of the table, and the module classes (subclasses included) behind each.
KINDS: dict[str, tuple[type[nn.Module], ...]] = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "linear": (nn.Linear,),
    "bn": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
    "act": (nn.ReLU, nn.LeakyReLU),
    "maxpool": (nn.MaxPool2d,),
    "avgpool": (nn.AvgPool2d, nn.AdaptiveAvgPool2d),
}


@dataclass(frozen=True)
class LayerInfo:
    """One module call of the traced forward pass.

    Attributes
    ----------
    name : str
        Qualified module name; a module called k > 1 times gets ``name#k`` from its second call.
    kind : str
        One of :data:`KINDS`: ``conv``, ``linear``, ``bn``, ``act``, ``maxpool``, ``avgpool``.
    module : str
        Class name of the module.
    input_shape, output_shape : tuple of int
        Shapes of one example (no batch dimension).
    weight_shape : tuple of int
        Shape of the weight (empty for parameter-free layers).
    params : int
        Parameters of the module (weight, bias, BatchNorm affine).
    macs : int
        Dense forward MACs per example (conv and linear only; 0 otherwise).
    window : int
        Pooling window size (kh·kw) for pooling layers, 1 otherwise.
    input_id : int
        Identity of the input tensor: equal ids are the same tensor (used to count a tensor
        saved by two layers once).
    """

    name: str
    kind: str
    module: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    params: int
    macs: int
    window: int
    input_id: int

    @property
    def input_numel(self) -> int:
        """Elements of one example's input."""
        return math.prod(self.input_shape)

    @property
    def output_numel(self) -> int:
        """Elements of one example's output."""
        return math.prod(self.output_shape)

    @property
    def weight_numel(self) -> int:
        """Elements of the weight (0 without one)."""
        return math.prod(self.weight_shape) if self.weight_shape else 0


def _kind(module: nn.Module) -> str | None:
    for kind, classes in KINDS.items():
        if isinstance(module, classes):
            return kind
    return None


def _window(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size
        return math.prod(k) if isinstance(k, tuple) else k * k
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return math.ceil(math.prod(inp.shape[-2:]) / math.prod(out.shape[-2:]))
    return 1


def _macs(kind: str, weight_shape: tuple[int, ...], out: torch.Tensor) -> int:
    if kind == "conv":
        return out.numel() * math.prod(weight_shape[1:])
    if kind == "linear":
        return out.numel() * weight_shape[1]
    return 0


def layer_table(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[LayerInfo]:
    """Trace one example through ``model`` and list its layers in call order.

    Parameters
    ----------
    model : nn.Module
        Preferably on the ``meta`` device (no memory, no arithmetic). Its training mode is
        restored afterwards (the trace runs in eval mode so BatchNorm accepts one example).
    input_shape : tuple of int, optional
        Shape of one example without the batch dimension, e.g. ``(3, 224, 224)``. Defaults to
        the model's ``input_shape`` attribute (set by every analysis architecture).

    Returns
    -------
    list of LayerInfo
        One row per conv / linear / BatchNorm / activation / pooling call.

    Raises
    ------
    ValueError
        If no input shape is known, or the network cannot take the given one; the message
        names the shape the model expects.
    """
    expected = getattr(model, "input_shape", None)
    shape = tuple(input_shape) if input_shape is not None else expected
    if shape is None:
        raise ValueError(f"{type(model).__name__} has no input_shape attribute; pass input_shape")
    rows: list[LayerInfo] = []
    ids: dict[int, int] = {}
    alive: list[torch.Tensor] = []  # keep traced tensors alive so that id() stays unique
    calls: dict[str, int] = {}

    def hook(name: str, kind: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        inp = inputs[0]
        alive.extend((inp, output))
        calls[name] = calls.get(name, 0) + 1
        weight = getattr(module, "weight", None)
        weight_shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else ()
        rows.append(LayerInfo(
            name=name if calls[name] == 1 else f"{name}#{calls[name]}",
            kind=kind,
            module=type(module).__name__,
            input_shape=tuple(inp.shape[1:]),
            output_shape=tuple(output.shape[1:]),
            weight_shape=weight_shape,
            params=sum(p.numel() for p in module.parameters(recurse=False)),
            macs=_macs(kind, weight_shape, output),
            window=_window(module, inp, output),
            input_id=ids.setdefault(id(inp), len(ids)),
        ))

    handles = []
    for name, module in model.named_modules():
        kind = _kind(module)
        if kind is not None:
            handles.append(module.register_forward_hook(partial(hook, name or "model", kind)))
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("meta"))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device))
    except (RuntimeError, ValueError, IndexError) as err:
        hint = f"; expected input shape {expected} (C, H, W)" if expected is not None else ""
        raise ValueError(
            f"{type(model).__name__} cannot take input shape {shape}{hint}: {err}") from err
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return rows


def compute_layers(table: list[LayerInfo]) -> list[LayerInfo]:
    """The conv and linear rows — the layers whose MACs the ledger counts — in call order."""
    return [row for row in table if row.kind in ("conv", "linear")]


def total_macs(table: list[LayerInfo]) -> int:
    """Dense forward MACs per example of all conv and linear layers (FLOPs = 2·MACs)."""
    return sum(row.macs for row in table)
