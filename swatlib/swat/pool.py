"""``MaskMaxPool2d``: a max-pooling layer that keeps one byte per output for its backward pass.

``nn.MaxPool2d`` keeps, between the forward and the backward pass, its dense input and an
``int64`` argmax per output (the flat position of the maximum in the input plane): for a 2×2 pool
over float32, 1.5 times its input's size. Its backward pass only routes each output gradient to the
argmax, and the argmax lies inside its output's window, so :class:`MaskMaxPool2d` keeps only the
**position inside the window** (``kernel_h · kernel_w <= 256`` positions, one byte) and the input's
shape: one byte per output, no input at all (for the 2×2 pool, 1/16 of its float32 input).

Forward, chunk by chunk of the batch (:func:`swatlib.swat.functions.batch_chunks`), the pool runs
``F.max_pool2d(..., return_indices=True)`` and converts each chunk's flat indices to window
positions, so the ``int64`` indices exist for one chunk at a time. Backward rebuilds a chunk's flat
indices from the positions and calls the very kernel ``nn.MaxPool2d``'s backward calls
(``aten.max_pool2d_with_indices_backward``) on it; both conversions are exact integer arithmetic
and the kernels compute each example as in the whole batch, so outputs, the argmax (ties
included) and input gradients are bit-identical to ``nn.MaxPool2d``'s for every stride, padding,
dilation and ``ceil_mode`` — overlapping windows included (checked in
``tests/test_swat_maxpool.py``).

One setting is refused with a ValueError: padding and dilation that leave a window without a
single input element (e.g. ``kernel_size=2, dilation=2, padding=1`` on a one-pixel-wide input).
PyTorch gives such a window an "argmax" outside it — outside the plane, even — and its backward
pass writes the gradient there; there is no exact position to keep.

The positions are stored as ``int8`` (the unsigned position's bit pattern, 0…255): they are an
index, and the per-layer accounting (:func:`swatlib.experiments.swat_tables.saved_by_layer`) reads
``uint8`` / ``bool`` tensors as masks and other integer tensors as indices. The backward pass is
not itself differentiable (no double backward). :func:`~swatlib.swat.swatify.swatify` swaps every
``nn.MaxPool2d`` for one; a pool called as a function (``F.max_pool2d``) inside a model's
``forward`` cannot be swapped.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch._prims_common import suggest_memory_format
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

from .functions import batch_chunks

__all__ = ["MaskMaxPool2d", "mask_max_pool2d", "MAX_WINDOW"]

#: Most elements of a pooling window whose position fits the one byte kept per output.
MAX_WINDOW = 256

_Pair = tuple[int, int]


def _check_window(kernel_size: _Pair) -> None:
    if math.prod(kernel_size) > MAX_WINDOW:
        raise ValueError(f"kernel_size must cover at most {MAX_WINDOW} elements (a 1-byte argmax), "
                         f"got {kernel_size}: use nn.MaxPool2d")


@functools.lru_cache(maxsize=256)
def _misses_input(outputs: int, size: int, kernel: int, stride: int, padding: int,
                  dilation: int) -> bool:
    """Whether a window along one dimension covers only padding (dilation can step over the input)."""
    return any(all(not 0 <= o * stride - padding + k * dilation < size for k in range(kernel))
               for o in range(outputs))


def _origins(size: int, stride: int, padding: int, device: torch.device) -> torch.Tensor:
    """First input row (column) of every output row's (column's) window, padding included."""
    return torch.arange(size, device=device) * stride - padding


class _MaskMaxPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel_size: _Pair, stride: _Pair, padding: _Pair,
                dilation: _Pair, ceil_mode: bool) -> torch.Tensor:
        args = (kernel_size, stride, padding, dilation, ceil_mode)
        if not ctx.needs_input_grad[0]:
            return F.max_pool2d(x, *args)
        _check_window(kernel_size)
        width = x.shape[-1]
        chunks = batch_chunks(x.shape[0], x.shape[1:].numel())
        positions = y = rows = cols = None
        for start, stop in chunks:
            out, index = F.max_pool2d(x[start:stop], *args, return_indices=True)
            if y is None:
                if any(_misses_input(*dims) for dims in zip(out.shape[-2:], x.shape[-2:],
                                                            kernel_size, stride, padding, dilation)):
                    raise ValueError("padding and dilation leave a pooling window with no input "
                                     "element (PyTorch's argmax then points outside it): reduce "
                                     "padding or dilation")
                y = out if len(chunks) == 1 else torch.empty(
                    (x.shape[0], *out.shape[1:]), dtype=out.dtype, device=out.device,
                    memory_format=suggest_memory_format(x))
                positions = torch.empty(y.shape, dtype=torch.uint8, device=x.device)
                rows = _origins(out.shape[-2], stride[0], padding[0], x.device).unsqueeze(1)
                cols = _origins(out.shape[-1], stride[1], padding[1], x.device)
            if len(chunks) > 1:
                y[start:stop] = out
            del out
            # flat index -> (row, column) in the window -> row · kernel_w + column
            row = torch.div(index, width, rounding_mode="floor")
            col = index.sub_(row * width).sub_(cols)
            row.sub_(rows)
            if dilation[1] > 1:
                col.div_(dilation[1], rounding_mode="floor")
            if dilation[0] > 1:
                row.div_(dilation[0], rounding_mode="floor")
            positions[start:stop] = row.mul_(kernel_size[1]).add_(col)
            del index, row, col
        ctx.save_for_backward(positions.view(torch.int8))
        ctx.args, ctx.x_shape, ctx.memory_format = args, x.shape, suggest_memory_format(x)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (saved,) = ctx.saved_tensors
        positions = saved.view(torch.uint8)
        kernel_size, stride, padding, dilation, ceil_mode = ctx.args
        x_shape, width = ctx.x_shape, ctx.x_shape[-1]
        rows = _origins(positions.shape[-2], stride[0], padding[0], positions.device).unsqueeze(1)
        cols = _origins(positions.shape[-1], stride[1], padding[1], positions.device)
        grad_x = torch.empty(x_shape, dtype=grad_out.dtype, device=grad_out.device,
                             memory_format=ctx.memory_format)
        placeholder = grad_out.new_empty(1)
        for start, stop in batch_chunks(x_shape[0], x_shape[1:].numel()):
            # row · kernel_w + column in the window -> flat index in the input plane
            row = positions[start:stop].long()
            col = row.remainder(kernel_size[1])
            row.div_(kernel_size[1], rounding_mode="floor")
            index = row.mul_(dilation[0]).add_(rows).mul_(width)
            index.add_(col.mul_(dilation[1]).add_(cols))
            del col
            torch.ops.aten.max_pool2d_with_indices_backward.grad_input(
                grad_out[start:stop], placeholder.expand(stop - start, *x_shape[1:]),
                list(kernel_size), list(stride), list(padding), list(dilation), ceil_mode, index,
                grad_input=grad_x[start:stop])
            del index
        return grad_x, None, None, None, None, None


def mask_max_pool2d(x: torch.Tensor, kernel_size: int | _Pair, stride: int | _Pair | None = None,
                    padding: int | _Pair = 0, dilation: int | _Pair = 1,
                    ceil_mode: bool = False) -> torch.Tensor:
    """``F.max_pool2d``, keeping a 1-byte window position per output for the backward pass.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)`` or ``(C, H, W)``.
    kernel_size, stride, padding, dilation, ceil_mode
        As for ``F.max_pool2d`` (``stride`` defaults to ``kernel_size``).

    Returns
    -------
    torch.Tensor
        The pooled tensor, bit-identical to ``F.max_pool2d``'s.

    Raises
    ------
    ValueError
        For a window of more than :data:`MAX_WINDOW` elements, or (when ``x`` requires a gradient)
        one that covers only padding.
    """
    kernel = _pair(kernel_size)
    _check_window(kernel)
    args = (kernel, _pair(kernel_size if stride is None else stride), _pair(padding),
            _pair(dilation), bool(ceil_mode))
    if x.dim() == 3:
        return _MaskMaxPool2dFunction.apply(x.unsqueeze(0), *args).squeeze(0)
    return _MaskMaxPool2dFunction.apply(x, *args)


class MaskMaxPool2d(nn.MaxPool2d):
    """Drop-in ``nn.MaxPool2d`` whose backward pass keeps one byte per output (module docstring).

    A subclass of ``nn.MaxPool2d``, so cost-model layer tables count it as a max-pool.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode
        As for ``nn.MaxPool2d``; the window must have at most :data:`MAX_WINDOW` elements.
    return_indices : bool
        Must be False: the layer keeps no int64 indices to return (use ``nn.MaxPool2d``).

    Raises
    ------
    ValueError
        For ``return_indices=True`` or a window of more than :data:`MAX_WINDOW` elements.
    """

    def __init__(self, kernel_size: int | _Pair, stride: int | _Pair | None = None,
                 padding: int | _Pair = 0, dilation: int | _Pair = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        if return_indices:
            raise ValueError("return_indices must be False: MaskMaxPool2d keeps no int64 indices "
                             "(use nn.MaxPool2d)")
        _check_window(_pair(kernel_size))
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The max-pooled ``x``."""
        return mask_max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                               self.ceil_mode)
