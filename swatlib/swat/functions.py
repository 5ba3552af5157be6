"""The SWAT products as ``torch.autograd.Function``: linear and 2-D convolution.

SPEC §5, for a layer with weight W, input X and output gradient dY:

* forward ``Y = op(X, W_s)`` with ``W_s = TopK(W)`` and the *dense* input X;
* saved for backward: ``X_s = TopK(X)`` and ``W_s``, both **compressed**
  (:mod:`swatlib.swat.compressed`: values plus a bitmap or flat indices) — never the dense tensors;
* backward ``dX = input_grad(W_s, dY)``, ``dW = weight_grad(X_s, dY)``, ``db = Σ dY``; dY is not
  sparsified, and dW is dense, so every weight — kept or not — is updated.

:class:`SWATFunction` is one Function for both products; an :class:`Op` (:class:`LinearOp`,
:class:`Conv2dOp`) supplies the forward and the two gradient products, and a
:class:`Selection` says which tensor is Top-K'd where — SWAT itself and the sensitivity-study
variants (SPEC §5, paper Fig. 2) differ only in their Selection:

==========================  ===========  ===========  =======================================
variant                     forward W    forward X    backward
==========================  ===========  ===========  =======================================
SWAT                        W_s          X            W_s, X_s (compressed)
forward sparse weights      W_s          X            W, X dense (straight-through)
forward sparse activations  W            X_s          W, X dense (straight-through)
backward W + A              W            X            W_s, X_s (compressed)
output gradient (meProp)    W            X            W, X, Top-K of dY (for dX, dW and db)
==========================  ===========  ===========  =======================================

A dense role is saved as the stock layers save it: the input tensor itself and the weight
parameter itself (which costs no extra memory). Sparse roles are saved only when their gradient
is needed (W_s for dX, X_s for dW). With nothing sparse the Function computes bit for bit what
``nn.Linear`` / ``nn.Conv2d`` compute: the same forward call and the same backward kernels
(``addmm``'s products for linear, ``aten.convolution_backward`` for convolution).

Measured FLOP ledger (:mod:`swatlib.costmodel.ledger`): if a :class:`MeasuredLedger` is active
during the forward pass, the Function records ``forward``, ``input_grad`` (when dX is computed)
and ``weight_grad`` (when dW is computed) with the nonzeros of the tensors it actually multiplied:
W or W_s, X or X_s, dY — natural zeros included, exactly as
:meth:`MeasuredLedger.watch` counts plain layers — and dX / dW as fully computed. The backward
records go to the ledger captured in the forward pass, because the autograd engine may run the
backward pass on another thread, where context variables do not follow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from swatlib.costmodel.ledger import MeasuredLedger, active_ledger

from .compressed import CompressedTensor, check_index_format, compress

__all__ = ["Op", "LinearOp", "Conv2dOp", "Selection", "SWATFunction", "swat_op"]


class Op(ABC):
    """A product with a weight: forward, the two gradient products, and its dense MACs."""

    @abstractmethod
    def forward(self, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """``Y = op(X, W) + b``."""

    @abstractmethod
    def gradients(self, grad_out: torch.Tensor, x: torch.Tensor | None, weight: torch.Tensor | None,
                  x_shape: torch.Size, weight_shape: torch.Size, has_bias: bool,
                  needs: tuple[bool, bool, bool]) -> tuple[torch.Tensor | None, ...]:
        """``(dX, dW, db)`` from dY, for the ``needs`` flags; ``x`` / ``weight`` may be None
        where the corresponding gradient is not needed (only their shapes are)."""

    @abstractmethod
    def macs(self, y: torch.Tensor, weight: torch.Tensor) -> int:
        """Dense MACs of the forward product for the whole batch."""


@dataclass(frozen=True)
class LinearOp(Op):
    """``Y = X Wᵀ + b`` over the last dimension of X (any leading dimensions)."""

    def forward(self, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """``F.linear``."""
        return F.linear(x, weight, bias)

    def gradients(self, grad_out: torch.Tensor, x: torch.Tensor | None, weight: torch.Tensor | None,
                  x_shape: torch.Size, weight_shape: torch.Size, has_bias: bool,
                  needs: tuple[bool, bool, bool]) -> tuple[torch.Tensor | None, ...]:
        """``dX = dY W``, ``dW = dYᵀ X``, ``db = Σ dY`` (``addmm``'s backward products)."""
        grad2 = grad_out.reshape(-1, weight_shape[0])
        grad_x = grad_w = grad_b = None
        if needs[0]:
            grad_x = grad2.mm(weight).reshape(x_shape)
        if needs[1]:
            grad_w = grad2.t().mm(x.reshape(-1, weight_shape[1]))
        if needs[2] and has_bias:
            grad_b = grad2.sum(0)
        return grad_x, grad_w, grad_b

    def macs(self, y: torch.Tensor, weight: torch.Tensor) -> int:
        """Output elements × in_features."""
        return y.numel() * weight.shape[1]


@dataclass(frozen=True)
class Conv2dOp(Op):
    """2-D convolution with explicit (integer) stride, padding, dilation and groups.

    Attributes
    ----------
    stride, padding, dilation : tuple of int
        As for ``F.conv2d`` (padding symmetric; string and non-zero paddings are applied by
        the layer before the product).
    groups : int
    """

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def forward(self, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """``F.conv2d``."""
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def gradients(self, grad_out: torch.Tensor, x: torch.Tensor | None, weight: torch.Tensor | None,
                  x_shape: torch.Size, weight_shape: torch.Size, has_bias: bool,
                  needs: tuple[bool, bool, bool]) -> tuple[torch.Tensor | None, ...]:
        """One ``aten.convolution_backward`` call, as the stock convolution's backward makes."""
        placeholder = grad_out.new_empty(1)
        x = placeholder.expand(x_shape) if x is None else x
        weight = placeholder.expand(weight_shape) if weight is None else weight
        mask = (needs[0], needs[1], needs[2] and has_bias)
        grads = torch.ops.aten.convolution_backward(
            grad_out, x, weight, [weight_shape[0]] if has_bias else None, list(self.stride),
            list(self.padding), list(self.dilation), False, [0, 0], self.groups, list(mask))
        return tuple(g if m else None for g, m in zip(grads, mask))

    def macs(self, y: torch.Tensor, weight: torch.Tensor) -> int:
        """Output elements × (in_channels / groups) × kh × kw."""
        return y.numel() * weight[0].numel()


@dataclass(frozen=True)
class Selection:
    """Which tensors one call Top-K's, as boolean masks (None = dense).

    Attributes
    ----------
    weight_forward, act_forward : torch.Tensor or None
        Masks of W and X for the forward product.
    weight_backward, act_backward : torch.Tensor or None
        Masks of the W and X saved (compressed) for the backward products.
    output_grad : callable or None
        ``dY -> mask`` for meProp-style output-gradient Top-K, called in the backward pass.
    index_format : {"bitmap", "indices"}
        Index of the compressed saved tensors.
    name : str
        Layer name for the measured ledger.
    """

    weight_forward: torch.Tensor | None = None
    act_forward: torch.Tensor | None = None
    weight_backward: torch.Tensor | None = None
    act_backward: torch.Tensor | None = None
    output_grad: Callable[[torch.Tensor], torch.Tensor] | None = None
    index_format: str = "bitmap"
    name: str = "swat"

    def __post_init__(self) -> None:
        check_index_format(self.index_format)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def _nnz(x: torch.Tensor | CompressedTensor) -> int:
    return x.nnz if isinstance(x, CompressedTensor) else int(x.count_nonzero())


class SWATFunction(torch.autograd.Function):
    """``Y = op(X, W) + b`` with Top-K selections; see the module docstring.

    Call through :func:`swat_op` (``apply`` takes positional arguments only).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                op: Op, selection: Selection) -> torch.Tensor:
        """Forward product with the forward selection; compress and save the backward operands."""
        x_used = _masked(x, selection.act_forward)
        w_used = _masked(weight, selection.weight_forward)
        y = op.forward(x_used, w_used, bias)
        needs_x, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]

        # W_s is needed for dX, X_s for dW; dense roles are saved as the stock layers save them.
        saved: list[torch.Tensor] = []
        ctx.w_format = ctx.x_format = None
        if selection.weight_backward is None:
            saved.append(weight)
        elif needs_x:
            compressed = compress(weight, selection.weight_backward, selection.index_format,
                                  role="weight")
            ctx.w_format = (compressed.shape, compressed.index_format)
            saved.extend(compressed.parts)
        if selection.act_backward is None:
            saved.append(x)
        elif needs_w:
            compressed = compress(x, selection.act_backward, selection.index_format)
            ctx.x_format = (compressed.shape, compressed.index_format)
            saved.extend(compressed.parts)
        ctx.save_for_backward(*saved)
        ctx.dense_w, ctx.dense_x = selection.weight_backward is None, selection.act_backward is None
        ctx.op, ctx.output_grad, ctx.name = op, selection.output_grad, selection.name
        ctx.x_shape, ctx.w_shape, ctx.has_bias = x.shape, weight.shape, bias is not None

        ctx.ledger = active_ledger()
        ctx.macs = op.macs(y, weight)
        if ctx.ledger is not None:
            ctx.ledger.record(selection.name, "forward", ctx.macs, _nnz(w_used), weight.numel(),
                              _nnz(x_used), x.numel(), y.numel(), y.numel())
        return y

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """``dX = input_grad(W_s, dY)``, ``dW = weight_grad(X_s, dY)``, ``db = Σ dY``."""
        saved = list(ctx.saved_tensors)
        weight: torch.Tensor | CompressedTensor | None = None
        x: torch.Tensor | CompressedTensor | None = None
        if ctx.dense_w:
            weight = saved.pop(0)
        elif ctx.w_format is not None:
            weight = CompressedTensor.from_parts((saved.pop(0), saved.pop(0)), *ctx.w_format)
        if ctx.dense_x:
            x = saved.pop(0)
        elif ctx.x_format is not None:
            x = CompressedTensor.from_parts((saved.pop(0), saved.pop(0)), *ctx.x_format)

        if ctx.output_grad is not None:
            grad_out = grad_out * ctx.output_grad(grad_out)
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        w_dense = weight.decompress() if isinstance(weight, CompressedTensor) else weight
        x_dense = x.decompress() if isinstance(x, CompressedTensor) else x
        grad_x, grad_w, grad_b = ctx.op.gradients(
            grad_out, x_dense if needs[1] else None, w_dense if needs[0] else None,
            ctx.x_shape, ctx.w_shape, ctx.has_bias, needs)

        ledger: MeasuredLedger | None = ctx.ledger
        if ledger is not None:
            nnz_g, numel_g = int(grad_out.count_nonzero()), grad_out.numel()
            numel_w, numel_x = ctx.w_shape.numel(), ctx.x_shape.numel()
            if needs[0]:
                ledger.record(ctx.name, "input_grad", ctx.macs, _nnz(weight), numel_w,
                              numel_x, numel_x, nnz_g, numel_g)
            if needs[1]:
                ledger.record(ctx.name, "weight_grad", ctx.macs, numel_w, numel_w,
                              _nnz(x), numel_x, nnz_g, numel_g)
        return grad_x, grad_w, grad_b, None, None


def swat_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, op: Op,
            selection: Selection) -> torch.Tensor:
    """Apply :class:`SWATFunction` (differentiable in ``x``, ``weight`` and ``bias``).

    Parameters
    ----------
    x, weight, bias : torch.Tensor
        Input, weight and (optional) bias of the product.
    op : Op
        :class:`LinearOp` or :class:`Conv2dOp`.
    selection : Selection
        The masks of this call.

    Returns
    -------
    torch.Tensor
        The output Y.
    """
    return SWATFunction.apply(x, weight, bias, op, selection)
