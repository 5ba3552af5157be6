"""Extreme-scale SET-MLPs (seed 001 §2.4 and Table 4): the paper's architectures, built only once they fit.

The authors trained SET-MLPs of 1 to 50 million neurons on a 65,536-feature synthetic dataset, on 96
cores and 768 GB. :data:`ARCHITECTURES` lists Table 4's networks (layer sizes and Erdős–Rényi ε);
:func:`build_model` estimates the peak memory of building and training one
(:func:`swatlib.sparse.memory.training_memory`) and refuses it with one line naming the estimate and the
memory available (:func:`swatlib.sparse.memory.check_fits`) before anything is allocated — instead of an
out-of-memory kill half-way through drawing 10⁸ connections. :func:`accumulated_step` trains on the
paper's batch of 128 in micro-batches, so that only one micro-batch's activations exist at a time
(the estimate then takes the micro-batch size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from swatlib.models.mlp import SparseMLP
from swatlib.sparse.memory import check_fits, training_memory

__all__ = ["ARCHITECTURES", "accumulated_step", "build_model", "describe"]

_M = 1_000_000

#: Table 4's networks: name → (layer sizes, ε).
ARCHITECTURES: dict[str, tuple[tuple[int, ...], float]] = {
    "65536-0.5M-0.5M-2": ((65536, _M // 2, _M // 2, 2), 10.0),
    "65536-2.5M-2.5M-2": ((65536, 5 * _M // 2, 5 * _M // 2, 2), 5.0),
    "65536-5M-5M-2": ((65536, 5 * _M, 5 * _M, 2), 5.0),
    "65536-5Mx4-2": ((65536, *[5 * _M] * 4, 2), 1.0),
    "65536-5Mx10-2": ((65536, *[5 * _M] * 10, 2), 1.0),
}


def describe(sizes: Sequence[int]) -> str:
    """``"65536-5000000-5000000-2"``: how a configuration is named in messages."""
    return "-".join(str(int(n)) for n in sizes)


def build_model(
    sizes: Sequence[int],
    *,
    epsilon: float,
    batch_size: int,
    alpha: float = 0.6,
    dropout: float = 0.3,
    generator: torch.Generator | None = None,
    available: int | None = None,
) -> SparseMLP:
    """A truly sparse All-ReLU SET-MLP, built only if its estimated training peak fits in memory.

    Parameters
    ----------
    sizes, epsilon
        Layer widths (input first) and Erdős–Rényi ε, e.g. ``ARCHITECTURES["65536-5M-5M-2"]``.
    batch_size
        The (micro-)batch it will be trained with: activations are part of the estimate.
    alpha, dropout
        All-ReLU slope and inverted-dropout probability (paper: 0.6 and 0.3).
    generator
        Draws topology and values.
    available
        Bytes available (default: the kernel's ``MemAvailable``).

    Raises
    ------
    MemoryError
        Before allocating anything, if the estimate exceeds ``available`` (one line, both amounts).
    """
    check_fits(training_memory(sizes, epsilon=epsilon, batch_size=batch_size), available,
               what=f"{describe(sizes)} at epsilon {epsilon:g}, batch {batch_size}")
    return SparseMLP(list(sizes), epsilon=epsilon, activation="all_relu", alpha=alpha, dropout=dropout,
                     generator=generator)


def accumulated_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                     micro_batch_size: int) -> float:
    """One optimizer step on the batch ``(x, y)``, its gradient accumulated over micro-batches.

    Each micro-batch's cross-entropy is summed and divided by the whole batch size, so the accumulated
    gradient is the batch's mean-loss gradient (up to rounding: the sums run in a different order, and
    each micro-batch draws its own dropout masks). With ``micro_batch_size >= len(x)`` this is exactly
    the ordinary step.

    Returns
    -------
    float
        The batch's mean loss.

    Raises
    ------
    ValueError
        If ``micro_batch_size`` is not a positive integer.
    """
    if isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, int) or micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be a positive integer, got {micro_batch_size!r}")
    optimizer.zero_grad(set_to_none=True)
    if micro_batch_size >= len(x):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    total = 0.0
    for start in range(0, len(x), micro_batch_size):
        part = slice(start, start + micro_batch_size)
        loss = F.cross_entropy(model(x[part]), y[part], reduction="sum") / len(x)
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    return total
