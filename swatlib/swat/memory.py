"""Measure the memory a training step keeps for its backward pass: activations vs weights.

The cost model (:mod:`swatlib.costmodel.memory`) *predicts* backward-pass memory from a layer
table; this module *measures* it on a real model, two ways:

* :class:`SavedTensorMeter` — every tensor the autograd graph saves during a forward pass passes
  through ``torch.autograd.graph.saved_tensors_hooks``; the meter counts each distinct storage
  once (tensors sharing storage — a ReLU output that is also the next convolution's input, a
  weight and its transpose — are one allocation) at its real size, so compressed SWAT tensors
  count as their values plus their bitmap or indices. A storage counts as a **weight** if it
  belongs to a parameter of the model or was compressed from a weight (the ``_swat_role`` tag of
  :func:`swatlib.swat.compressed.compress`), otherwise as an **activation** (inputs, masks,
  BatchNorm statistics, …). A dense weight saved by a stock layer is the parameter itself: it is
  counted because the backward pass reads it, although it costs nothing beyond the parameter.
* :func:`graph_resident_bytes` — the process memory (resident set) released when the graph is
  freed: what the saved tensors *really* occupy, allocator included. Linux with glibc only.
* :func:`step_peak` — the **peak** of a whole training step (forward, loss, backward, optimizer
  step): the resident set's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``)
  above what the process held just before the step, after ``malloc_trim``, measured in a fresh
  Python process so that nothing the caller allocated or cached counts, with glibc's mmap threshold
  fixed (:data:`_FIXED_MMAP_THRESHOLD`) so that the resident set follows the live tensors and
  identical steps measure identically. What the graph saves is
  only part of it: the temporaries of the selection, of the compression and of the backward
  products count too. Linux with glibc only.

Which layers still keep dense copies in a swatified model: BatchNorm saves its dense input
(plus per-channel statistics: its backward needs the normalised input, which only the dense
input gives back exactly); smooth activations (GELU, Tanh, Sigmoid, SiLU) and functional
``F.relu`` / ``F.max_pool2d`` save dense tensors (a stock max-pool: its dense input and an int64
argmax per output); dropout saves a 1-byte mask; the first layer, kept dense, saves the network
input (which the data batch holds anyway). Average-pooling, flattening, residual additions and
concatenations save nothing; ``MaskReLU`` saves one bit per element and ``MaskMaxPool2d`` (which
``swatify`` puts in place of ``nn.MaxPool2d``) one byte per output, its argmax's position in the
window.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from swatlib.machine import peak_resident_bytes, reset_peak_resident, resident_bytes

from .compressed import ROLE_ATTRIBUTE

__all__ = ["SavedBytes", "SavedTensorMeter", "saved_bytes", "graph_resident_bytes", "StepPeak",
           "measure_step_peak", "step_peak"]


@dataclass(frozen=True)
class SavedBytes:
    """Bytes saved for backward, split by role.

    Attributes
    ----------
    activations, weights : int
        Bytes of distinct storages holding activations (anything not a weight) and weights.
    storages : int
        Distinct storages counted.
    """

    activations: int
    weights: int
    storages: int

    @property
    def total(self) -> int:
        """Activations plus weights."""
        return self.activations + self.weights


class SavedTensorMeter:
    """Context manager that counts what the autograd graph saves inside its block.

    Run only the forward pass inside the block (the graph must still be alive when the block
    ends, which is when :attr:`result` is computed)::

        with SavedTensorMeter(model) as meter:
            loss = loss_fn(model(x), y)
        meter.result.activations, meter.result.weights

    Whole storages are counted: a view such as ``x_train[:128]`` counts all of ``x_train``, so
    pass a copy (``.clone()``) of a slice.

    Parameters
    ----------
    model : nn.Module, optional
        Its parameters' storages count as weights.

    Attributes
    ----------
    result : SavedBytes or None
        Set when the block exits.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        params = model.parameters() if model is not None else ()
        self._weight_storages = {p.untyped_storage().data_ptr() for p in params}
        self._saved: dict[int, tuple[torch.Tensor, str]] = {}
        self._hooks: Any = None
        self.result: SavedBytes | None = None

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        pointer = tensor.untyped_storage().data_ptr()
        weight = (pointer in self._weight_storages or isinstance(tensor, nn.Parameter)
                  or getattr(tensor, ROLE_ATTRIBUTE, None) == "weight")
        # Keep a reference so that a freed storage's address cannot be reused inside the block.
        self._saved.setdefault(pointer, (tensor, "weight" if weight else "activation"))
        return tensor

    def __enter__(self) -> SavedTensorMeter:
        self._saved.clear()
        self.result = None
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
        totals = {"activation": 0, "weight": 0}
        for tensor, role in self._saved.values():
            totals[role] += tensor.untyped_storage().nbytes()
        self.result = SavedBytes(totals["activation"], totals["weight"], len(self._saved))
        self._saved.clear()


def saved_bytes(model: nn.Module, *inputs: torch.Tensor) -> SavedBytes:
    """Bytes ``model(*inputs)`` saves for backward (one forward pass, graph freed afterwards).

    Parameters
    ----------
    model : nn.Module
        In the mode to measure (``train()`` for a training step).
    *inputs : torch.Tensor
        Its inputs.

    Returns
    -------
    SavedBytes
    """
    with SavedTensorMeter(model) as meter:
        output = model(*inputs)
    del output
    assert meter.result is not None
    return meter.result


#: glibc's malloc serves blocks of at least 128 KiB with their own mmap, returned to the system when
#: freed — but after freeing such a block it raises that threshold (up to 32 MiB), and later blocks
#: below it stay in the heap after they are freed. Which blocks end up where then depends on the order
#: of earlier frees, and the peak RSS of identical steps varied by ±30 MiB between fresh processes.
#: Fixing the threshold at its initial 128 KiB (what this environment variable does) makes the resident
#: set follow the tensors alive: identical steps give identical peaks.
_FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def _glibc() -> ctypes.CDLL:
    """glibc, for ``malloc_trim``; a RuntimeError off Linux / glibc."""
    if not sys.platform.startswith("linux"):
        raise RuntimeError("process memory is read from /proc: it needs Linux")
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError) as err:
        raise RuntimeError(f"process memory needs glibc's malloc_trim: {err}") from err
    return libc


def _trimmed_resident_bytes(libc: ctypes.CDLL) -> int:
    """:func:`swatlib.machine.resident_bytes` once garbage is collected and freed heap pages are returned."""
    gc.collect()
    libc.malloc_trim(0)  # hand freed heap pages back, so that freed memory leaves the RSS
    return resident_bytes()


def graph_resident_bytes(run: Callable[[], torch.Tensor]) -> int:
    """Process memory released when the output of ``run()`` — and its autograd graph — is freed.

    Parameters
    ----------
    run : callable
        Performs a forward pass and returns its output (e.g. the loss); nothing else may keep
        the output or the graph alive.

    Returns
    -------
    int
        Resident bytes before minus after freeing (the output itself included; make it small,
        e.g. a scalar loss).

    Raises
    ------
    RuntimeError
        Off Linux / glibc, where the resident set cannot be read this way.
    """
    libc = _glibc()
    output = run()
    alive = _trimmed_resident_bytes(libc)
    del output
    return alive - _trimmed_resident_bytes(libc)


@dataclass(frozen=True)
class StepPeak:
    """Process memory of one training step, in bytes above what the process held before it.

    Attributes
    ----------
    step : int
        Peak resident growth over the whole step: forward, loss, backward, optimizer update.
    forward : int
        Peak resident growth during the forward pass and the loss.
    graph : int
        Resident memory held after the forward pass (the graph and its saved tensors).
    saved : SavedBytes
        The saved-for-backward bytes of the same forward pass (:class:`SavedTensorMeter`).
    """

    step: int
    forward: int
    graph: int
    saved: SavedBytes


def measure_step_peak(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                      warmup: int = 1) -> StepPeak:
    """:class:`StepPeak` of a cross-entropy SGD (momentum 0.9) step of ``model``, in this process.

    ``warmup`` steps first allocate the gradients, the momentum buffers and the library caches;
    then one measured step gives the forward peak, the graph it holds and the step peak. Prefer
    :func:`step_peak`, which runs this in a fresh process.

    Raises
    ------
    RuntimeError
        Off Linux / glibc.
    """
    libc = _glibc()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def forward() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    def update(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(warmup):
        update(forward())
    # One measured step, one baseline: the forward peak is read first, the step's later, so the step's
    # peak contains the forward's (two separately measured steps could disagree by allocator reuse).
    before = _trimmed_resident_bytes(libc)
    reset_peak_resident()
    loss = forward()
    peak_forward = peak_resident_bytes() - before
    graph = _trimmed_resident_bytes(libc) - before
    update(loss)
    del loss
    # Linux batches per-thread RSS counters, so a later VmHWM reading can come out a few dozen pages
    # lower than an earlier one; the step's peak includes its forward pass's by definition.
    step = max(peak_resident_bytes() - before, peak_forward)
    with SavedTensorMeter(model) as meter:
        loss = forward()
    del loss
    assert meter.result is not None
    return StepPeak(step, peak_forward, graph, meter.result)


def _measure_in_child() -> None:
    """Entry point of :func:`step_peak`'s process: pickled arguments in, pickled StepPeak out."""
    build, x, y, threads, warmup = pickle.load(sys.stdin.buffer)
    result, sys.stdout = sys.stdout.buffer, sys.stderr  # what the model prints goes to stderr
    torch.set_num_threads(threads)
    pickle.dump(measure_step_peak(build(), x, y, warmup=warmup), result)
    result.flush()


def step_peak(build: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, *,
              threads: int = 1, warmup: int = 1) -> StepPeak:
    """The peak memory of a training step of ``build()``, measured in a fresh process.

    Parameters
    ----------
    build : callable
        Returns the model to measure; it must pickle (a module-level function or a
        ``functools.partial`` of one), because it runs in a new Python process.
    x, y : torch.Tensor
        Input batch and integer labels (sent to the process).
    threads : int
        torch intra-op threads there.
    warmup : int
        Unmeasured steps first (:func:`measure_step_peak`).

    Returns
    -------
    StepPeak

    Raises
    ------
    RuntimeError
        Off Linux / glibc, or if the measuring process fails (its error output is quoted).
    """
    _glibc()
    root = str(Path(__file__).resolve().parents[2])  # the directory that holds swatlib/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p), **_FIXED_MMAP_THRESHOLD}
    child = subprocess.run(
        [sys.executable, "-c", "from swatlib.swat.memory import _measure_in_child; _measure_in_child()"],
        input=pickle.dumps((build, x, y, threads, warmup)), capture_output=True, env=env,
        check=False)
    if child.returncode:
        raise RuntimeError(f"step_peak's measuring process failed: {child.stderr.decode()[-2000:]}")
    return pickle.loads(child.stdout)
