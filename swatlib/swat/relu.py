"""``MaskReLU``: a ReLU that keeps a 1-bit mask for its backward pass instead of its dense output.

SWAT saves only ``TopK(X)`` of a layer's input (SPEC §5), but memory is only saved if nothing
*else* keeps the dense activation alive. ``nn.ReLU`` saves its dense output for its own backward
(``dX = dY · [Y > 0]``), which is exactly the dense input of the next convolution — so under a
stock ReLU, SWAT's compressed copy would come on top of a dense one. The backward pass needs
only the sign, so :class:`MaskReLU` saves ``[X > 0]`` packed eight elements to a byte
(:func:`swatlib.swat.compressed.pack_where`): 1/32 of the float32 output. The mask is packed and,
in the backward pass, unpacked chunk by chunk, so no dense boolean tensor exists at any time.

The forward and backward values are identical to ``nn.ReLU``'s (the gradient at 0 is 0 for
both). :func:`~swatlib.swat.swatify.swatify` swaps every ``nn.ReLU`` module for one; a ReLU called
as a function (``F.relu``, ``torch.relu``) inside a model's ``forward`` cannot be swapped and still
saves its dense output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .compressed import masked_multiply, pack_where

__all__ = ["MaskReLU", "mask_relu"]


class _MaskReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        positive, _ = pack_where(x, lambda values, _: values > 0)
        ctx.save_for_backward(positive)
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_min_(0)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (packed,) = ctx.saved_tensors
        return masked_multiply(grad_out.contiguous(), packed), None


def mask_relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``max(x, 0)``, saving a 1-bit mask for the backward pass.

    Parameters
    ----------
    x : torch.Tensor
        Input.
    inplace : bool
        Overwrite ``x`` (as ``nn.ReLU(inplace=True)``).

    Returns
    -------
    torch.Tensor
        ``max(x, 0)``.
    """
    return _MaskReLUFunction.apply(x, inplace)


class MaskReLU(nn.ReLU):
    """Drop-in ``nn.ReLU`` whose backward pass keeps a 1-bit mask (see the module docstring).

    A subclass of ``nn.ReLU``, so cost-model layer tables count it as an activation.

    Parameters
    ----------
    inplace : bool
        As for ``nn.ReLU``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``max(x, 0)``."""
        return mask_relu(x, self.inplace)
