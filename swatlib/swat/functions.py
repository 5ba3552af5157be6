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

Peak memory: the products never hold a temporary of a whole activation's size beyond dense
training's own. dW is computed first, from the compressed X one block of channels (features) at a
time, then dX, from the decompressed (small) W_s; convolutions run their forward product and dX
over chunks of the batch (:func:`batch_chunks`), so that the kernels' re-laid-out copies are a
chunk's size. Each chunk or block computes its outputs exactly as the whole call does (a kernel
slice's sum still runs over the whole batch and image; checked bit for bit in
``tests/test_swat_chunked.py``), so this changes how much memory the step needs, not what it
computes.

A dense role is saved as the stock layers save it: the input tensor itself and the weight
parameter itself (which costs no extra memory). Sparse roles are saved only when their gradient
is needed (W_s for dX, X_s for dW). With nothing sparse the Function computes bit for bit what
``nn.Linear`` / ``nn.Conv2d`` compute: the same forward kernels and the same backward kernels
(``addmm``'s products for linear, ``aten.convolution_backward`` for convolution), a convolution's
called on chunks of the batch (below).

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

from swatlib.checks import check_choice
from swatlib.costmodel.ledger import MeasuredLedger, active_ledger
from swatlib.topk import CHUNK

from .compressed import INDEX_FORMATS, CompressedTensor, compress

__all__ = ["Op", "LinearOp", "Conv2dOp", "Selection", "SWATFunction", "swat_op"]


#: Elements of one chunk of a product (4 MiB of float32): the convolution kernels' internal
#: copies are about this large, and a chunked product makes one kernel call per chunk.
PRODUCT_CHUNK = CHUNK


def batch_chunks(batch: int, per_example: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of the batch, about :data:`PRODUCT_CHUNK` elements each.

    Sizes differ by at most one and are at least two examples: the convolution kernels compute
    every example of a chunk exactly as in the whole batch (checked, bit for bit, by
    ``tests/test_swat_chunked.py``), except for chunks of a single example.
    """
    parts = max(1, min(batch // 2, -(-batch * per_example // PRODUCT_CHUNK)))
    size, extra = divmod(batch, parts)
    bounds = [0]
    for part in range(parts):
        bounds.append(bounds[-1] + size + (part < extra))
    return list(zip(bounds, bounds[1:]))


def _blocks(total: int, per_unit: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of ``total`` channels / features of ``per_unit`` elements each:
    about :data:`PRODUCT_CHUNK` elements per range, rounded up to a multiple of 16 units (the
    kernels vectorise over channels, and a block then starts on a byte of a bitmap)."""
    step = -(-max(1, PRODUCT_CHUNK // max(1, per_unit)) // 16) * 16
    return [(start, min(start + step, total)) for start in range(0, total, step)]


class Op(ABC):
    """A product with a weight: forward, the two gradient products, and its dense MACs.

    The gradient products take the saved input either dense or as a :class:`CompressedTensor`;
    a compressed input is read one block of input channels / features at a time
    (:meth:`CompressedTensor.decompress_slices`), so that the dense input never exists whole.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """``Y = op(X, W) + b``."""

    @abstractmethod
    def input_grad(self, grad_out: torch.Tensor, weight: torch.Tensor,
                   x_shape: torch.Size) -> torch.Tensor:
        """dX from dY and the (dense) weight used."""

    @abstractmethod
    def weight_grad(self, grad_out: torch.Tensor, x: torch.Tensor | CompressedTensor | None,
                    weight_shape: torch.Size, has_bias: bool,
                    needs: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(dW, db)`` for the ``needs`` flags; ``x`` may be None when dW is not needed."""

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

    def input_grad(self, grad_out: torch.Tensor, weight: torch.Tensor,
                   x_shape: torch.Size) -> torch.Tensor:
        """``dX = dY W`` (``addmm``'s backward product)."""
        return grad_out.reshape(-1, weight.shape[0]).mm(weight).reshape(x_shape)

    def weight_grad(self, grad_out: torch.Tensor, x: torch.Tensor | CompressedTensor | None,
                    weight_shape: torch.Size, has_bias: bool,
                    needs: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``dW = dYᵀ X`` (a compressed X one block of input features at a time), ``db = Σ dY``."""
        grad2 = grad_out.reshape(-1, weight_shape[0])
        grad_w = grad_b = None
        if needs[0] and isinstance(x, CompressedTensor):
            grad_w = grad2.new_empty(weight_shape)
            bounds = _blocks(weight_shape[1], grad2.shape[0])
            for (start, stop), block in zip(bounds, x.decompress_slices(len(x.shape) - 1, bounds)):
                grad_w[:, start:stop] = grad2.t().mm(block.reshape(-1, stop - start))
        elif needs[0]:
            grad_w = grad2.t().mm(x.reshape(-1, weight_shape[1]))
        if needs[1] and has_bias:
            grad_b = grad2.sum(0)
        return grad_w, grad_b

    def macs(self, y: torch.Tensor, weight: torch.Tensor) -> int:
        """Output elements × in_features."""
        return y.numel() * weight.shape[1]


@dataclass(frozen=True)
class Conv2dOp(Op):
    """2-D convolution with explicit (integer) stride, padding, dilation and groups.

    The forward product and dX run over chunks of the batch (:func:`batch_chunks`) into one
    output tensor, so the convolution kernels' internal copies (re-laid-out inputs and outputs)
    are the size of a chunk, not of the batch; dW from a compressed input runs over blocks of
    input and output channels (``groups=1``), each a separate ``aten.convolution_backward``
    that computes its kernel slices exactly as the whole call does (a kernel slice's sum runs
    over the batch and the image either way).

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

    def _conv(self, x: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _backward(self, grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                  has_bias: bool, mask: tuple[bool, bool, bool]) -> tuple[torch.Tensor, ...]:
        return torch.ops.aten.convolution_backward(
            grad_out, x, weight, [weight.shape[0]] if has_bias else None, list(self.stride),
            list(self.padding), list(self.dilation), False, [0, 0], self.groups, list(mask))

    def _example_size(self, x_shape: torch.Size, weight_shape: torch.Size) -> int:
        """Elements of one example's input or output, whichever is larger."""
        out = weight_shape[0]
        for size, k, s, p, d in zip(x_shape[2:], weight_shape[2:], self.stride, self.padding,
                                    self.dilation):
            out *= max(0, (size + 2 * p - d * (k - 1) - 1) // s + 1)
        return max(x_shape[1:].numel(), out)

    def forward(self, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """``F.conv2d``, chunk by chunk of the batch."""
        chunks = batch_chunks(x.shape[0], self._example_size(x.shape, weight.shape))
        if len(chunks) == 1:
            return self._conv(x, weight, bias)
        first = self._conv(x[:chunks[0][1]], weight, bias)
        y = first.new_empty((x.shape[0], *first.shape[1:]))
        y[:chunks[0][1]] = first
        del first
        for start, stop in chunks[1:]:
            y[start:stop] = self._conv(x[start:stop], weight, bias)
        return y

    def input_grad(self, grad_out: torch.Tensor, weight: torch.Tensor,
                   x_shape: torch.Size) -> torch.Tensor:
        """``aten.convolution_backward`` for dX, chunk by chunk of the batch."""
        placeholder = grad_out.new_empty(1)
        grad_x = grad_out.new_empty(x_shape)
        for start, stop in batch_chunks(x_shape[0], self._example_size(x_shape, weight.shape)):
            chunk = placeholder.expand(stop - start, *x_shape[1:])
            grad_x[start:stop] = self._backward(grad_out[start:stop], chunk, weight, False,
                                                (True, False, False))[0]
        return grad_x

    def weight_grad(self, grad_out: torch.Tensor, x: torch.Tensor | CompressedTensor | None,
                    weight_shape: torch.Size, has_bias: bool,
                    needs: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``aten.convolution_backward`` for dW and db (a compressed X by channel blocks)."""
        placeholder = grad_out.new_empty(1)
        needs_b = needs[1] and has_bias
        if not (needs[0] and isinstance(x, CompressedTensor) and self.groups == 1):
            if x is None:
                x = placeholder.expand(grad_out.shape[0], weight_shape[1] * self.groups,
                                       *grad_out.shape[2:])
            elif isinstance(x, CompressedTensor):  # grouped: decompressed whole
                x = x.decompress()
            grads = self._backward(grad_out, x, placeholder.expand(weight_shape), has_bias,
                                   (False, needs[0], needs_b))
            return grads[1] if needs[0] else None, grads[2] if needs_b else None
        grad_w = grad_out.new_empty(weight_shape)
        grad_b = grad_out.new_empty(weight_shape[0]) if needs_b else None
        outs = _blocks(weight_shape[0], grad_out.shape[0] * grad_out.shape[2:].numel())
        ins = _blocks(weight_shape[1], x.shape[0] * x.shape[2:].numel())
        for i, ((start, stop), block) in enumerate(zip(ins, x.decompress_slices(1, ins))):
            for o_start, o_stop in outs:
                grad = grad_out if len(outs) == 1 else grad_out[:, o_start:o_stop].contiguous()
                kernel = placeholder.expand(o_stop - o_start, stop - start, *weight_shape[2:])
                grads = self._backward(grad, block, kernel, has_bias, (False, True, needs_b and i == 0))
                grad_w[o_start:o_stop, start:stop] = grads[1]
                if needs_b and i == 0:
                    grad_b[o_start:o_stop] = grads[2]
        return grad_w, grad_b

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
        Masks of the W and X saved (compressed) for the backward products; either may instead
        be a 0-d Top-K threshold θ (keep ``|·| >= θ``), which
        :func:`~swatlib.swat.compressed.compress` applies chunk by chunk — how SWAT layers pass
        the activation's selection, so that no dense mask of the activation is built.
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
        check_choice(self.index_format, INDEX_FORMATS, "index_format")


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
        # One product at a time: dW and db from X_s block by block, then dX from W_s (dX,
        # as large as the input, is allocated only once dW's temporaries are gone).
        grad_x = grad_w = grad_b = None
        if needs[1] or needs[2]:
            grad_w, grad_b = ctx.op.weight_grad(grad_out, x if needs[1] else None, ctx.w_shape,
                                                ctx.has_bias, (needs[1], needs[2]))
        if needs[0]:
            w_dense = weight.decompress() if isinstance(weight, CompressedTensor) else weight
            grad_x = ctx.op.input_grad(grad_out, w_dense, ctx.x_shape)
            del w_dense

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
