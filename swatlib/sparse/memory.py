"""Memory of truly sparse training: what a model and its optimizer hold, and a peak estimated beforehand.

:func:`state_bytes` counts every distinct tensor storage a module keeps for training — parameters,
their gradients, buffers, the indices :class:`~swatlib.sparse.SparseLinear` builds for torch's
fallback kernels (only once those ran) — and the optimizer's state of those parameters. Divided by the
number of connections of a large layer it gives the bytes per connection in training: float32 value,
gradient and momentum (12 B) plus int32 column indices (4 B); the CSR row pointers and the bias cost
per neuron, not per connection. ``tests/test_sparse_linear.py`` checks it stays within 20 B, and
``benchmarks/set_mlp.py`` reports it.

:func:`training_memory` estimates, from the layer sizes alone, the peak memory of building and
training a truly sparse SET-MLP (Erdős–Rényi init, momentum SGD, All-ReLU, inverted dropout), and
:func:`check_fits` refuses a configuration whose estimate exceeds the memory available, with one line
naming both — before anything is allocated, instead of an out-of-memory kill half-way. The terms:

* **state** (exact for :class:`~swatlib.sparse.SparseLinear` + :class:`~swatlib.optim.DecoupledSGD`,
  checked by the tests against :func:`state_bytes`): per connection value, gradient and momentum
  (float32) and an int32 column index; per output neuron bias, its gradient and momentum, and an int64
  row pointer (one more per layer);
* **initialisation**: drawing a layer's connections holds, besides the layers built so far (value +
  column index), :data:`INIT_BYTES_PER_CONNECTION` of that layer (int64 candidate keys, sorted keys,
  rows and columns; measured: 32.0 B per connection for 10⁷ and 10⁸ connections);
* **activations** of one (micro-)batch, per sample: the float32 input copy the first layer keeps
  (feature-major), and per hidden unit :data:`SAVED_BYTES_PER_HIDDEN_UNIT` kept for backward — the
  float32 dropped-out output the next layer keeps and one bit each for All-ReLU's sign and the dropout
  mask (:func:`swatlib.dropout.relu_dropout`; 9 B before: the float32 pre-activation and a byte of
  mask) — plus :data:`TRANSIENT_BYTES_PER_HIDDEN_UNIT` of the widest layer while its gradients are
  computed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from swatlib.checks import check_int
from swatlib.densities import epsilon_to_density
from swatlib.sparse.erdos_renyi import connection_count

__all__ = [
    "INIT_BYTES_PER_CONNECTION",
    "SAVED_BYTES_PER_HIDDEN_UNIT",
    "TRANSIENT_BYTES_PER_HIDDEN_UNIT",
    "MemoryEstimate",
    "available_memory",
    "check_fits",
    "state_bytes",
    "training_memory",
]

#: float32 value, gradient and momentum + int32 column index.
STATE_BYTES_PER_CONNECTION = 3 * 4 + 4
#: float32 bias, gradient and momentum + int64 row pointer.
STATE_BYTES_PER_NEURON = 3 * 4 + 8
#: While a layer's connections are drawn: int64 candidate keys, sorted keys, rows and columns.
INIT_BYTES_PER_CONNECTION = 4 * 8
#: Kept for backward per hidden unit and sample: float32 dropout output (the next layer's input), one
#: bit for All-ReLU's sign and one for the dropout mask.
SAVED_BYTES_PER_HIDDEN_UNIT = 4 + 2 / 8
#: Live per unit and sample of the layer whose gradients are being computed (three float32 gradients).
TRANSIENT_BYTES_PER_HIDDEN_UNIT = 3 * 4


def _held_tensors(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> Iterator[torch.Tensor]:
    for param in module.parameters():
        yield param
        if param.grad is not None:
            yield param.grad
        if optimizer is not None:
            yield from (t for t in optimizer.state.get(param, {}).values() if torch.is_tensor(t))
    yield from module.buffers()
    for sub in module.modules():
        for cache in getattr(sub, "_fallback", {}).values():
            yield from cache.values()


def state_bytes(module: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Bytes of the distinct tensor storages ``module`` (and ``optimizer``'s state for it) holds.

    Parameters
    ----------
    module
        The model or layer; its parameters, their ``grad``, its buffers and SparseLinear's cached
        fallback indices are counted.
    optimizer
        If given, its per-parameter state tensors (e.g. ``momentum_buffer``) of ``module``'s parameters.

    Returns
    -------
    int
        Sum of ``untyped_storage().nbytes()`` over distinct storages (a view is counted once).
    """
    storages: dict[int, int] = {}
    for tensor in _held_tensors(module, optimizer):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes of building and training a truly sparse SET-MLP (see the module docstring).

    Attributes
    ----------
    connections
        Connections of every layer.
    state_bytes
        Model + optimizer state in training.
    init_bytes
        Peak while the layers are drawn.
    activation_bytes
        Activations of one (micro-)batch at their peak during a training step.
    peak_bytes
        ``max(init_bytes, state_bytes + activation_bytes)``.
    """

    connections: tuple[int, ...]
    state_bytes: int
    init_bytes: int
    activation_bytes: int

    @property
    def peak_bytes(self) -> int:
        return max(self.init_bytes, self.state_bytes + self.activation_bytes)


def training_memory(sizes: Sequence[int], *, epsilon: float, batch_size: int) -> MemoryEstimate:
    """Estimate the memory of building and training ``SparseMLP(sizes, epsilon=epsilon)`` on a CPU.

    Parameters
    ----------
    sizes
        Layer widths, input first.
    epsilon
        Erdős–Rényi ε of every layer.
    batch_size
        Samples per forward / backward pass (a micro-batch when gradients are accumulated).

    Raises
    ------
    ValueError
        If there are fewer than two sizes or a size or ``batch_size`` is not a positive integer.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output width, got {list(sizes)}")
    sizes = [check_int(n, "sizes") for n in sizes]
    batch_size = check_int(batch_size, "batch_size")
    counts = tuple(connection_count(epsilon_to_density(epsilon, n_in, n_out), n_in, n_out)
                   for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    state = sum(STATE_BYTES_PER_CONNECTION * c + STATE_BYTES_PER_NEURON * n_out + 8
                for c, n_out in zip(counts, sizes[1:]))
    built, init = 0, 0
    for c, n_out in zip(counts, sizes[1:]):
        init = max(init, built + INIT_BYTES_PER_CONNECTION * c)
        built += 8 * c + 8 * (n_out + 1) + 4 * n_out  # value + column index, row pointers, bias
    hidden = sizes[1:-1]
    saved = sum(4 * batch_size * h + 2 * math.ceil(batch_size * h / 8) for h in hidden)  # masks per layer
    activations = saved + batch_size * (4 * sizes[0] + TRANSIENT_BYTES_PER_HIDDEN_UNIT * max(hidden, default=0)
                                        + 3 * 4 * sizes[-1])
    return MemoryEstimate(counts, state, init, activations)


def available_memory() -> int:
    """Bytes the kernel reports as available to new allocations (``MemAvailable`` of /proc/meminfo)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not found in /proc/meminfo")


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_fits(estimate: MemoryEstimate, available: int | None = None, *, what: str = "this model") -> None:
    """Refuse (before allocating anything) a configuration whose estimated peak exceeds the memory available.

    Parameters
    ----------
    estimate
        From :func:`training_memory`.
    available
        Bytes available (default :func:`available_memory`).
    what
        Names the configuration in the message.

    Raises
    ------
    MemoryError
        One line naming the estimate, its parts and the memory available.
    """
    available = available_memory() if available is None else available
    if estimate.peak_bytes > available:
        raise MemoryError(
            f"{what} needs an estimated {_gib(estimate.peak_bytes)} (state {_gib(estimate.state_bytes)}, "
            f"activations {_gib(estimate.activation_bytes)}, initialisation peak {_gib(estimate.init_bytes)}) "
            f"but only {_gib(available)} is available: use a smaller batch (micro-batches), fewer neurons "
            f"or a lower epsilon")
