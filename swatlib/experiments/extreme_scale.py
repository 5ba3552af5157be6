"""Extreme-scale SET-MLPs (seed 001 §2.4 and Table 4): the paper's architectures, measured on this machine.

The authors trained SET-MLPs of 1 to 50 million neurons on a 65,536-feature synthetic dataset, on 96
cores and 768 GB. :data:`ARCHITECTURES` lists Table 4's networks (layer sizes and Erdős–Rényi ε);
:func:`build_model` estimates the peak memory of building and training one
(:func:`swatlib.sparse.memory.training_memory`) and refuses it with one line naming the estimate and the
memory available (:func:`swatlib.sparse.memory.check_fits`) before anything is allocated — instead of an
out-of-memory kill half-way through drawing 10⁸ connections. :func:`accumulated_step` trains on the
paper's batch of 128 in micro-batches, so that only one micro-batch's activations exist at a time
(the estimate then takes the micro-batch size).

Table 4 rows
------------
A *row spec* (:func:`make_spec`) names an architecture, a width ``scale`` (1 = the paper's; the
``smoke`` profile shrinks every width), how many training batches are timed (``None``: a full epoch)
and how many test batches are inferred (``None``: the whole test split). :func:`measure` builds the
model on ``madelon-65536`` (Erdős–Rényi, timed), trains the batches with momentum SGD on all
``threads`` cores (each batch timed), runs
one SET evolution (timed), infers the test batches in batches of ``batch_size`` on every core
(the paper's inference bottleneck; timed) and reports the process's peak RSS. Each row runs in a
fresh process (:func:`run_rows`, ``python -m swatlib.experiments.extreme_scale``), so a row's peak RSS
is its own; rows go through the results cache and are timed, i.e. they train alone. When only some
batches are timed, the epoch and inference times are extrapolated linearly and every table and figure
says "measured over N batches".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from swatlib import machine
from swatlib.checks import check_choice, check_int, check_number
from swatlib.experiments import runs
from swatlib.experiments.truly_sparse_reported import PAPER_SETTINGS
from swatlib.models.mlp import SparseMLP
from swatlib.optim import make_optimizer
from swatlib.sparse.memory import available_memory, check_fits, training_memory
from swatlib.topology import SET, evolvable_layers
from swatlib.train import evaluate

__all__ = [
    "ARCHITECTURES",
    "EXPERIMENT",
    "FAMILY",
    "REPORTED",
    "accumulated_step",
    "build_model",
    "dense_training_bytes",
    "describe",
    "make_spec",
    "measure",
    "replicas_that_fit",
    "run_rows",
    "scaled_sizes",
    "table4",
]

_M = 1_000_000

#: Table 4's networks: name → (layer sizes, ε). The first is read from ``PAPER_SETTINGS["madelon-65536"]``,
#: where WASAP-SGD and the benchmarks take it from, so that it is written in one place.
ARCHITECTURES: dict[str, tuple[tuple[int, ...], float]] = {
    "65536-0.5M-0.5M-2": (tuple(PAPER_SETTINGS["madelon-65536"]["sizes"]),
                          float(PAPER_SETTINGS["madelon-65536"]["epsilon"])),
    "65536-2.5M-2.5M-2": ((65536, 5 * _M // 2, 5 * _M // 2, 2), 5.0),
    "65536-5M-5M-2": ((65536, 5 * _M, 5 * _M, 2), 5.0),
    "65536-5Mx4-2": ((65536, *[5 * _M] * 4, 2), 1.0),
    "65536-5Mx10-2": ((65536, *[5 * _M] * 10, 2), 1.0),
}

#: Table 4 as reported (96 cores, 768 GB, WASAP-SGD): neurons, parameters and workers, and the four
#: timing columns whose headers are lost in our copy of the paper (SPEC §9), in the paper's order.
REPORTED: dict[str, dict[str, Any]] = {
    "65536-0.5M-0.5M-2": {"neurons": 1 * _M, "parameters": 20.6e6, "workers": 16, "columns": (1, 6, 2.5, 1)},
    "65536-2.5M-2.5M-2": {"neurons": 5 * _M, "parameters": 50.3e6, "workers": 16, "columns": (2, 10, 6, 2)},
    "65536-5M-5M-2": {"neurons": 10 * _M, "parameters": 100.3e6, "workers": 16, "columns": (3, 20, 11, 5)},
    "65536-5Mx4-2": {"neurons": 20 * _M, "parameters": 40.3e6, "workers": 8, "columns": (5, 26, 18, 6)},
    "65536-5Mx10-2": {"neurons": 50 * _M, "parameters": 100.3e6, "workers": 8, "columns": (9, 52, 20, 6)},
}

#: The paper's text on its largest model: about 75 minutes per training epoch (§2.4).
REPORTED_LARGEST_EPOCH_MINUTES = 75.0

#: Name (and format version) of these runs in the results cache.
EXPERIMENT = "extreme-scale/row-v2"  # v2: narrow-batch kernels, huge pages (timings of v1 are stale)

#: Training protocol of Table 4 (SPEC §9): momentum SGD, dropout 0.4, batch 128, lr 0.01; the
#: authors' decoupled weight decay and SET's ζ as in the rest of the Truly Sparse study — the settings
#: of ``PAPER_SETTINGS["madelon-65536"]``, which WASAP-SGD trains at this scale — and the dataset's split.
PROTOCOL = {**{key: PAPER_SETTINGS["madelon-65536"][key] for key in
               ("optimizer", "lr", "momentum", "weight_decay", "dropout", "alpha", "zeta", "batch_size")},
            "train_fraction": 0.7, "samples": 10_000}


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
    check_int(micro_batch_size, "micro_batch_size")
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


def scaled_sizes(architecture: str, scale: float = 1.0) -> tuple[int, ...]:
    """Table 4's layer sizes with every width (input and hidden; not the 2 classes) times ``scale``.

    Raises
    ------
    ValueError
        For an unknown architecture (the message lists them) or a scale outside (0, 1].
    """
    check_choice(architecture, ARCHITECTURES, "architecture")
    check_number(scale, "scale", 0, 1, open_low=True)
    sizes = ARCHITECTURES[architecture][0]
    return (*(max(2, round(n * scale)) for n in sizes[:-1]), sizes[-1])


def make_spec(architecture: str, *, scale: float = 1.0, train_batches: int | None = None,
              inference_batches: int | None = None, micro_batch_size: int = 128, threads: int = 2,
              seed: int = 0) -> dict[str, Any]:
    """The cache key of one measured Table 4 row.

    Parameters
    ----------
    architecture
        A key of :data:`ARCHITECTURES`.
    scale
        Width multiplier (1: the paper's model; the ``smoke`` profile uses a small one).
    train_batches
        Batches of 128 trained and timed (the first included), the epoch time extrapolated from their
        mean; ``None``: one full epoch over the 7,000 training samples.
    inference_batches
        Test batches inferred, the time extrapolated to the 3,000 test samples; ``None``: all of them.
    micro_batch_size
        Gradient accumulation: samples per forward/backward pass (128: none).
    threads
        Cores used by training and inference (the process's torch threads).
    seed
        Topology, values, data order and dropout.

    Raises
    ------
    ValueError
        On an unknown architecture, a bad scale, or a count that is not a positive integer.
    """
    sizes = scaled_sizes(architecture, scale)
    train_batches = None if train_batches is None else check_int(train_batches, "train_batches (None for all)")
    inference_batches = None if inference_batches is None else check_int(inference_batches,
                                                                          "inference_batches (None for all)")
    micro_batch_size, threads = check_int(micro_batch_size, "micro_batch_size"), check_int(threads, "threads")
    return {"experiment": EXPERIMENT, "dataset": "madelon-65536", "architecture": architecture,
            "scale": float(scale), "sizes": list(sizes), "epsilon": ARCHITECTURES[architecture][1],
            **PROTOCOL, "train_batches": train_batches, "inference_batches": inference_batches,
            "micro_batch_size": min(micro_batch_size, PROTOCOL["batch_size"]), "threads": threads,
            "seed": seed}


def _label(spec: dict[str, Any]) -> str:
    scale = "" if spec["scale"] == 1 else f" × {spec['scale']:g}"
    return f"{spec['architecture']}{scale}"


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def measure(spec: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build, train, evolve and infer one Table 4 row in this process (see the module docstring).

    Returns
    -------
    dict
        Connections, neurons, the memory estimate, wall and CPU seconds of each phase (and the
        extrapolated epoch / inference times), loss and accuracy, and peak RSS (with the data's bytes).
    """
    from swatlib.data import load  # the dataset module is only needed where a row runs

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])  # dropout masks come from the global generator
    generator = torch.Generator().manual_seed(spec["seed"])
    sizes, batch, micro = spec["sizes"], spec["batch_size"], spec["micro_batch_size"]
    baseline_rss, load_average = machine.resident_bytes(), machine.load_average()
    start = _clock()
    data = load(spec["dataset"], n_features=sizes[0], n_samples=spec["samples"], seed=spec["seed"])
    data_seconds = _since(start)[0]
    data_bytes = sum(t.numel() * t.element_size() for t in (data.x_train, data.y_train, data.x_test, data.y_test))
    log(f"data: {data.name}, {tuple(data.x_train.shape)} train, {data_seconds:.1f} s")

    estimate = training_memory(sizes, epsilon=spec["epsilon"], batch_size=micro)
    start = _clock()
    model = build_model(sizes, epsilon=spec["epsilon"], batch_size=micro, alpha=spec["alpha"],
                        dropout=spec["dropout"], generator=generator, available=available_memory())
    init_wall, init_cpu = _since(start)
    connections = int(model.nnz)
    log(f"built {describe(sizes)}: {connections:,} connections in {init_wall:.1f} s")
    optimizer = make_optimizer(spec["optimizer"], model.parameters(), lr=spec["lr"],
                               momentum=spec["momentum"], weight_decay=spec["weight_decay"])

    n_train = len(data.x_train)
    epoch_batches = math.ceil(n_train / batch)
    order = torch.randperm(n_train, generator=generator)
    full_epoch = spec["train_batches"] is None
    timed_batches = epoch_batches if full_epoch else min(epoch_batches, spec["train_batches"])
    train_wall = train_cpu = 0.0
    losses = []
    model.train()
    for index in range(timed_batches):
        rows = order[index * batch:(index + 1) * batch]
        step_start = _clock()
        losses.append(accumulated_step(model, optimizer, data.x_train[rows], data.y_train[rows], micro))
        wall, cpu = _since(step_start)
        train_wall, train_cpu = train_wall + wall, train_cpu + cpu
        log(f"batch {index + 1}/{timed_batches}: loss {losses[-1]:.4f}, {wall:.2f} s")
    epoch_wall = train_wall if full_epoch else train_wall / timed_batches * epoch_batches

    start = _clock()
    SET(evolvable_layers(model), zeta=spec["zeta"], optimizer=optimizer, generator=generator).step()
    evolution_wall, evolution_cpu = _since(start)
    log(f"SET evolution: {evolution_wall:.1f} s")

    n_test = len(data.x_test)
    inferred = n_test if spec["inference_batches"] is None else min(n_test, spec["inference_batches"] * batch)
    start = _clock()
    test_loss, test_accuracy = evaluate(model, data.x_test[:inferred], data.y_test[:inferred], batch_size=batch)
    inference_wall, inference_cpu = _since(start)
    log(f"inference of {inferred} test samples: {inference_wall:.1f} s")
    return {
        "sizes": list(sizes), "neurons": int(sum(sizes[1:-1])), "connections": connections,
        "connections_per_layer": [int(layer.nnz) for layer in model.linears],
        "estimate": {"state_bytes": estimate.state_bytes, "init_bytes": estimate.init_bytes,
                     "activation_bytes": estimate.activation_bytes, "peak_bytes": estimate.peak_bytes},
        "data_seconds": data_seconds, "data_bytes": data_bytes,
        "init_seconds": init_wall, "init_cpu_seconds": init_cpu,
        "epoch_batches": epoch_batches, "timed_batches": timed_batches, "full_epoch": full_epoch,
        "train_seconds": train_wall, "train_cpu_seconds": train_cpu, "epoch_seconds": epoch_wall,
        "batch_seconds": train_wall / timed_batches, "losses": losses,
        "evolution_seconds": evolution_wall, "evolution_cpu_seconds": evolution_cpu,
        "inferred_samples": inferred, "test_samples": n_test, "inference_seconds_measured": inference_wall,
        "inference_cpu_seconds": inference_cpu, "inference_seconds": inference_wall * n_test / inferred,
        "test_loss": test_loss, "test_accuracy": test_accuracy,
        "baseline_rss_bytes": baseline_rss, "peak_rss_bytes": machine.peak_resident_bytes(),
        "machine": machine.describe(), "load_average_before": load_average,
        "huge_pages": os.environ.get("THP_MEM_ALLOC_ENABLE") == "1",
    }


def _compute(spec: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Measure ``spec`` in a fresh process (its peak RSS is the row's own), passing its lines to ``log``."""
    command = [sys.executable, "-m", "swatlib.experiments.extreme_scale", "--spec", json.dumps(spec)]
    # THP_MEM_ALLOC_ENABLE: torch backs its allocations of 2 MB and more with transparent huge pages
    # (read once, when the process first allocates, hence here). The kernels fetch one randomly chosen
    # row of a multi-GB activation matrix per connection, and with 4 KiB pages nearly every fetch also
    # missed the TLB: up to 3x slower (benchmarks/wide_layer.py).
    environment = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "THP_MEM_ALLOC_ENABLE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment)
    try:
        result, last = None, ""
        for line in process.stdout:  # progress and error lines, then the result as JSON
            if line.startswith("{"):
                result = json.loads(line)
            elif line.strip():
                last = line.strip()
                log(f"{_label(spec)}: {last}")
        code = process.wait()
    finally:
        if process.poll() is None:  # interrupted here: the row's process must not survive
            process.kill()
            process.wait()
    if code != 0 or result is None:
        if code < 0:
            reason = f"was killed by {signal.Signals(-code).name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
        else:
            reason = f"failed: {last or f'exit status {code}'}"
        raise RuntimeError(f"Table 4 row {_label(spec)} {reason}")
    return result


def _timed(spec: dict[str, Any]) -> bool:
    return True


#: Table 4 rows: each measured alone, in its own process.
FAMILY = runs.Family(compute=_compute, describe=_label, is_timed=_timed)


def run_rows(specs: Iterable[dict[str, Any]], *, log: Callable[[str], None] = print) -> list[runs.RunResult]:
    """Every row's result, from the cache or measured now, one row at a time and alone."""
    return runs.run_many(FAMILY, specs, log=log, jobs=1)


def dense_training_bytes(sizes: Sequence[int]) -> int:
    """Bytes a dense MLP of these sizes holds in momentum-SGD training: float32 weight, gradient and
    momentum per weight and bias (activations not counted)."""
    return sum(12 * (n_in * n_out + n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def replicas_that_fit(sizes: Sequence[int], *, epsilon: float, batch_size: int, available: int) -> int:
    """How many WASAP-SGD workers fit beside the master in ``available`` bytes (an estimate).

    The master holds the model and its optimizer state; each worker holds a replica (values and
    indices, their gradient) and one (micro-)batch's activations — the estimate of
    :func:`~swatlib.sparse.memory.training_memory` less the momentum buffers it does not keep.
    """
    estimate = training_memory(sizes, epsilon=epsilon, batch_size=batch_size)
    momentum = 4 * (sum(estimate.connections) + sum(sizes[1:]))
    worker = estimate.state_bytes - momentum + estimate.activation_bytes
    return max(0, (available - estimate.state_bytes) // worker)


def table4(results: Iterable[runs.RunResult], available: int) -> pd.DataFrame:
    """Measured Table 4, one row per result, beside the paper's reported values.

    ``available`` (bytes) sizes the "WASAP workers that fit" column (:func:`replicas_that_fit`).
    """
    rows = []
    for outcome in results:
        spec, result = outcome.spec, outcome.result
        reported = REPORTED[spec["architecture"]]
        sizes = spec["sizes"]
        uncapped = sum(spec["epsilon"] * (a + b) for a, b in zip(sizes[:-1], sizes[1:]))
        rows.append({
            "architecture": _label(spec),
            "epsilon": spec["epsilon"],
            "neurons": result["neurons"],
            "connections (ours)": result["connections"],
            "epsilon x (n_in + n_out) summed": round(uncapped),
            "parameters (reported)": reported["parameters"] if spec["scale"] == 1 else float("nan"),
            "workers (reported)": reported["workers"],
            "WASAP workers that fit (estimate)": replicas_that_fit(
                sizes, epsilon=spec["epsilon"], batch_size=spec["micro_batch_size"], available=available),
            "... without micro-batches": replicas_that_fit(
                sizes, epsilon=spec["epsilon"], batch_size=spec["batch_size"], available=available),
            "micro-batch": spec["micro_batch_size"],
            "timed batches": "full epoch" if result["full_epoch"] else f"{result['timed_batches']} of "
                                                                      f"{result['epoch_batches']}",
            "init [s]": result["init_seconds"],
            "s per batch of 128": result["batch_seconds"],
            "train epoch [s]": result["epoch_seconds"],
            "inference [s]": result["inference_seconds"],
            "evolution [s]": result["evolution_seconds"],
            "peak RSS [GiB]": result["peak_rss_bytes"] / 2**30,
            "data [GiB]": result["data_bytes"] / 2**30,
            "estimated peak [GiB]": result["estimate"]["peak_bytes"] / 2**30,
            "dense training state [GiB]": dense_training_bytes(sizes) / 2**30,
            "reported columns (headers lost)": " / ".join(f"{v:g}" for v in reported["columns"]),
        })
    return pd.DataFrame(rows)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m swatlib.experiments.extreme_scale",
        description="Measure one Table 4 row (build, train, SET, inference, peak RSS) in this process.")
    parser.add_argument("architecture", nargs="?", choices=list(ARCHITECTURES))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--train-batches", type=int, default=None, help="timed batches (default: a full epoch)")
    parser.add_argument("--inference-batches", type=int, default=None, help="default: the whole test split")
    parser.add_argument("--micro-batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", help=argparse.SUPPRESS)  # how run_rows starts a row
    args = parser.parse_args(argv)
    if args.spec is not None:
        spec = json.loads(args.spec)
    elif args.architecture is None:
        parser.error("name an architecture")
    else:
        try:
            spec = make_spec(args.architecture, scale=args.scale, train_batches=args.train_batches,
                             inference_batches=args.inference_batches, micro_batch_size=args.micro_batch_size,
                             threads=args.threads, seed=args.seed)
        except ValueError as exc:  # a bad argument: status 2, like argparse's own errors
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        if os.environ.get("THP_MEM_ALLOC_ENABLE") != "1":
            print("note: huge pages are off; start with THP_MEM_ALLOC_ENABLE=1 (as the notebook's rows do) for "
                  "up to 3x faster kernels at this scale", file=sys.stderr, flush=True)
        runs.die_with_parent()
        result = measure(spec, log=lambda line: print(line, flush=True))
    except (ValueError, MemoryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
