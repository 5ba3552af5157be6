"""Magnitude Top-K: keep the ``k = ceil(density * numel)`` entries of largest absolute value.

This is the selection SWAT applies to weights and activations (SPEC §5): over the *whole* tensor,
threshold θ = the k-th largest ``|x|``, keep ``|x| >= θ``. Entries tied with θ are all kept, so a
mask may hold slightly more than ``k`` entries when values repeat (never fewer).
"""

from __future__ import annotations

import math

import torch

from swatlib.densities import check_density


def topk_count(numel: int, density: float) -> int:
    """``k = ceil(density * numel)``, at least 1 for a non-empty tensor."""
    check_density(density)
    return min(numel, max(1, math.ceil(density * numel - 1e-9)))


def topk_threshold(x: torch.Tensor, density: float) -> torch.Tensor:
    """θ: the k-th largest ``|x|`` over the whole tensor (a 0-d tensor)."""
    if x.numel() == 0:
        raise ValueError("cannot take the Top-K of an empty tensor")
    k = topk_count(x.numel(), density)
    magnitudes = x.detach().abs().flatten()
    return magnitudes.kthvalue(magnitudes.numel() - k + 1).values


def topk_mask(x: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask of the entries of ``x`` kept by magnitude Top-K at ``density``."""
    return x.detach().abs() >= topk_threshold(x, density)
