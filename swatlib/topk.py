"""Magnitude Top-K: keep the ``k = ceil(density * numel)`` entries of largest absolute value.

This is the selection SWAT applies to weights and activations (SPEC §5): over the *whole* tensor,
threshold θ = the k-th largest ``|x|``, keep ``|x| >= θ``. Entries tied with θ are all kept, so a
mask may hold slightly more than ``k`` entries when values repeat (never fewer).

θ is found without sorting or copying the tensor (``kthvalue`` would copy it and allocate an int64
index of its size: three times a float32 activation, at the peak of the forward pass). The
magnitude of a float, read as an integer of the same width, orders exactly as the float does, so
θ is found digit by digit, 16 bits at a time from the top: a histogram (``bincount``) of the
next digit of the entries that match the digits found so far, read chunk by chunk, says which
digit the k-th largest has. Two passes for float32, four for float64; every temporary is the size
of one chunk (:data:`CHUNK`). θ is an entry of the tensor, the same value ``kthvalue`` returns.
"""

from __future__ import annotations

import math

import torch

from swatlib.densities import check_density

__all__ = ["CHUNK", "check_chunk", "topk_count", "kth_largest_magnitude", "topk_threshold",
           "magnitude_mask", "topk_mask"]

#: Elements per chunk of the chunked selection, compression and decompression (a multiple of 8,
#: so that a chunk's bitmap is whole bytes): 4 MiB of float32 temporaries at most.
CHUNK = 1 << 20

_DIGIT = 16
_INT_OF = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
           torch.bfloat16: torch.int16}


def check_chunk(chunk: int) -> int:
    """Return ``chunk`` if it is a positive multiple of 8, else a ValueError naming it."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 8 or chunk % 8:
        raise ValueError(f"chunk must be a positive multiple of 8 (elements per chunk), got {chunk!r}")
    return chunk


def topk_count(numel: int, density: float) -> int:
    """``k = ceil(density * numel)``, at least 1 for a non-empty tensor."""
    check_density(density)
    return min(numel, max(1, math.ceil(density * numel - 1e-9)))


def kth_largest_magnitude(x: torch.Tensor, k: int, *, chunk: int = CHUNK) -> torch.Tensor:
    """The k-th largest ``|x|`` (a 0-d tensor of ``x``'s dtype), by a chunked radix selection.

    Parameters
    ----------
    x : torch.Tensor
        Floating point, non-empty (detached inside).
    k : int
        In ``[1, numel]``.
    chunk : int
        Elements read at a time (:data:`CHUNK`).

    Returns
    -------
    torch.Tensor
        Exactly ``|x|.flatten().kthvalue(numel - k + 1).values``.
    """
    if x.dtype not in _INT_OF:
        raise ValueError(f"x must be a float16/bfloat16/float32/float64 tensor, got {x.dtype}")
    if not 1 <= k <= x.numel():
        raise ValueError(f"k must be in [1, {x.numel()}], got {k}")
    check_chunk(chunk)
    flat = x.detach().reshape(-1)
    int_dtype = _INT_OF[x.dtype]
    bits = 8 * x.element_size()
    prefix, remaining = 0, k
    for shift in range(bits - _DIGIT, -1, -_DIGIT):
        counts = torch.zeros(1 << _DIGIT, dtype=torch.int64, device=x.device)
        for start in range(0, flat.numel(), chunk):
            magnitude = flat[start:start + chunk].abs().view(int_dtype)
            if shift + _DIGIT < bits:  # only the entries that share the digits found so far
                magnitude = magnitude[(magnitude >> (shift + _DIGIT)) == prefix]
            digit = (magnitude >> shift) & ((1 << _DIGIT) - 1)
            counts += torch.bincount(digit.long(), minlength=1 << _DIGIT)
        at_least = counts.flip(0).cumsum(0)  # at_least[j]: entries whose digit is >= 65535 - j
        j = int((at_least < remaining).sum())
        digit = (1 << _DIGIT) - 1 - j
        remaining -= int(at_least[j]) - int(counts[digit])
        prefix = (prefix << _DIGIT) | digit
    return torch.tensor(prefix, dtype=int_dtype, device=x.device).view(x.dtype)


def topk_threshold(x: torch.Tensor, density: float, *, chunk: int = CHUNK) -> torch.Tensor:
    """θ: the k-th largest ``|x|`` over the whole tensor (a 0-d tensor)."""
    if x.numel() == 0:
        raise ValueError("cannot take the Top-K of an empty tensor")
    return kth_largest_magnitude(x, topk_count(x.numel(), density), chunk=chunk)


def magnitude_mask(x: torch.Tensor, threshold: torch.Tensor, *, chunk: int = CHUNK) -> torch.Tensor:
    """``|x| >= threshold`` as a boolean tensor, without a float temporary of ``x``'s size."""
    check_chunk(chunk)
    flat = x.detach().reshape(-1)
    mask = torch.empty(flat.shape, dtype=torch.bool, device=x.device)
    for start in range(0, flat.numel(), chunk):
        torch.ge(flat[start:start + chunk].abs(), threshold, out=mask[start:start + chunk])
    return mask.view(x.shape)


def topk_mask(x: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask of the entries of ``x`` kept by magnitude Top-K at ``density``."""
    return magnitude_mask(x, topk_threshold(x, density))
