"""SET-MLP training speed and memory: swatlib truly sparse vs its masked twin vs dense vs ``sparselab``.

What is timed (identically for every variant, one process, one thread, side by side): one epoch of
training on Fashion-MNIST (784-1000-1000-1000-10, ε = 20, batch 128, All-ReLU α = 0.6, inverted
dropout 0.3 after every hidden activation, the authors' momentum SGD with decoupled weight decay,
lr 0.01) followed by one SET evolution (ζ = 0.3; none for the dense network). Data loading, model
building and evaluation are not timed. Every repeat builds a fresh model; the variants run
round-robin within a repeat and see the same mini-batch order. The median of the repeats is reported.

Variants — the same ``swatlib.models`` network, only the linear layers differ:

``swatlib``
    ``SparseMLP(layer="sparse")``: values + indices, CSR ``sparse.mm`` forward, SDDMM weight gradient;
    evolution ``swatlib.topology.SET``.
``swatlib_torch``
    The same ``swatlib`` model with the native kernels switched off (``swatlib.sparse.native.disabled``):
    torch's CSR ``addmm`` / ``sparse_sampled_addmm`` and torch's ops for the dropout — what the
    layer costs on a machine without a C compiler, and how much the native kernels bring.
``masked``
    ``SparseMLP(layer="masked")``: dense weight × {0, 1} mask, same topology, same SET.
``dense``
    ``MLP``: ``nn.Linear`` layers, no evolution.
``sparselab``
    The ``sparselab`` package (PyPI, 0.2.2; not a swatlib dependency), if importable: its
    ``SparseLinear`` (PaddedCSR storage, its own C++ kernels) in place of every linear layer, at the
    Erdős–Rényi sparsity of ε = 20 per layer (the output layer is dense, sparsity 0, as in swatlib);
    evolution: its ``SET.update()`` once, on the three hidden layers. Install it into a throw-away
    directory and put that on ``PYTHONPATH`` (see benchmarks/README.md).

Bytes per connection in training: what each variant's model and optimizer hold after a few training
steps (parameters, gradients, momentum, index structures; :func:`swatlib.sparse.state_bytes`, and for
sparselab its PaddedCSR arrays and cached transposes), divided by its connections.

Memory: peak RSS (``VmHWM``) of a fresh subprocess that builds a truly sparse
65536-100000-100000-2 SET-MLP at ε = 10 and runs one training step (batch 128, random inputs), and the
same at other ε, so that the growth per connection can be read off; the dense / masked weight storage
of the same shape is computed (never allocated).

Run ``python benchmarks/set_mlp.py --help``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # sparselab's kernels use their own bundled OpenMP runtime, which torch.set_num_threads does not
    # reach: pin every OpenMP pool to one thread before any runtime is loaded. (Only when run as a
    # script: importing this module, as the tests do, leaves the environment alone.)
    os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from swatlib import machine  # noqa: E402
from swatlib.checks import check_choice, check_int  # noqa: E402
from swatlib.data import DatasetNotFoundError  # noqa: E402
from swatlib.models.mlp import MLP, SparseMLP  # noqa: E402
from swatlib.optim import make_optimizer  # noqa: E402
from swatlib.sparse import epsilon_to_density, native, state_bytes  # noqa: E402
from swatlib.topology import SET, evolvable_layers  # noqa: E402

SIZES = (784, 1000, 1000, 1000, 10)
EPSILON = 20.0
BATCH = 128
ALPHA = 0.6
DROPOUT = 0.3
LR = 0.01
ZETA = 0.3
REPEATS = 3
QUICK_TRAIN = 10_000
VARIANTS = ("swatlib", "swatlib_torch", "masked", "dense", "sparselab")

MEMORY_SIZES = (65536, 100_000, 100_000, 2)
MEMORY_EPSILON = 10.0
#: Further ε of the same shape (same activations, fewer / more connections) for the slope.
MEMORY_EXTRA_EPSILONS = (5.0, 20.0, 40.0)

#: glibc ``M_MMAP_THRESHOLD`` of the memory subprocesses (bytes), see :func:`measure_memory`.
MMAP_THRESHOLD = 128 * 1024

GOALS = {"swatlib_over_sparselab": 0.5, "swatlib_over_masked": 0.25, "swatlib_bytes_per_connection": 20.0}
#: Training steps before the bytes per connection are counted (gradients and momentum then exist).
HELD_STEPS = 3


# --------------------------------------------------------------------------- sparselab
def import_sparselab():
    """The ``sparselab`` module if it can be imported, else ``None``."""
    try:
        return importlib.import_module("sparselab")
    except ImportError:
        return None


class _SparselabSET:
    """sparselab's SET on the hidden layers of a model, run once per call of ``step`` (swatlib's protocol)."""

    def __init__(self, sparselab, layers: Sequence[nn.Module], sparsity: float, seed: int) -> None:
        # update_freq is irrelevant: step() is never called, update() is called once per epoch.
        self.algo = sparselab.SET(sparsity=sparsity, drop_fraction=ZETA, update_freq=10**9, seed=seed)
        for layer in layers:
            self.algo.attach(layer)

    def step(self) -> None:
        self.algo.update()


def sparselab_model(sparselab, sizes: Sequence[int], epsilon: float, seed: int) -> nn.Module:
    """swatlib's dense ``MLP`` (All-ReLU, dropout) with every linear layer replaced by sparselab's.

    Each layer gets sparselab's ``sparsity = 1 − density`` of the Erdős–Rényi rule of ``epsilon``;
    sparselab draws its own mask and values from torch's global generator (seeded here).
    """
    # sparselab caches the transpose of each weight under id(PaddedCSR) and its topology version:
    # a fresh model whose PaddedCSR reuses a freed object's id would get the previous model's stale
    # transpose in backward (sparselab 0.2.2, ops.py, "id(W) collision risk"). Clear that cache.
    clear = getattr(getattr(sparselab, "ops", None), "_clear_transpose_cache", None)
    if clear is not None:
        clear()
    torch.manual_seed(seed)
    model = MLP(list(sizes), activation="all_relu", alpha=ALPHA, dropout=DROPOUT)
    model.linears = nn.ModuleList(
        sparselab.SparseLinear(n_in, n_out, sparsity=1.0 - epsilon_to_density(epsilon, n_in, n_out))
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    )
    return model


# --------------------------------------------------------------------------- building and timing
def build(variant: str, sizes: Sequence[int], epsilon: float, seed: int, sparselab=None):
    """A fresh ``(model, optimizer, evolution)`` of ``variant``; ``evolution`` is None for dense."""
    generator = torch.Generator().manual_seed(seed)
    common = dict(activation="all_relu", alpha=ALPHA, dropout=DROPOUT, init="he_uniform")
    evolution = None
    if check_choice(variant, VARIANTS, "variant") in ("swatlib", "swatlib_torch", "masked"):
        layer = "masked" if variant == "masked" else "sparse"
        model = SparseMLP(list(sizes), epsilon=epsilon, layer=layer, generator=generator, **common)
        optimizer = make_optimizer("authors", model.parameters(), lr=LR)
        return model, optimizer, SET(evolvable_layers(model), zeta=ZETA, optimizer=optimizer, generator=generator)
    if variant == "dense":
        model = MLP(list(sizes), generator=generator, **common)
    else:  # sparselab
        if sparselab is None:
            raise ValueError("variant 'sparselab' needs the sparselab module")
        model = sparselab_model(sparselab, sizes, epsilon, seed)
        hidden = list(model.linears)[:-1]
        mean_sparsity = 1.0 - sum(l.nnz for l in hidden) / sum(l.in_features * l.out_features for l in hidden)
        evolution = _SparselabSET(sparselab, hidden, mean_sparsity, seed)
    optimizer = make_optimizer("authors", model.parameters(), lr=LR)
    return model, optimizer, evolution


def connections(model: nn.Module) -> int:
    """Number of weights that exist (biases excluded), whatever the layer type."""
    total = 0
    for layer in model.linears:
        total += layer.weight.numel() if isinstance(layer, nn.Linear) else int(layer.nnz)
    return total


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, generator: torch.Generator) -> float:
    """One shuffled pass over ``(x, y)``: the training step of ``swatlib.train.fit``; returns the last loss.

    (``fit`` also sums the squared gradient norm every step and evaluates after the epoch; neither
    is part of the benchmark.)
    """
    model.train()
    order = torch.randperm(len(x), generator=generator)
    loss = None
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    last = float(loss.detach())
    del loss  # topology changes must not meet a live graph
    return last


def _sparselab_bytes(sparselab, model: nn.Module, seen: set[int]) -> int:
    """Bytes of sparselab's own arrays (PaddedCSR of every layer, cached transposes) not in ``seen``."""
    import numpy as np

    cache = getattr(getattr(sparselab, "ops", None), "_transpose_cache", {})
    arrays = []
    for layer in model.linears:
        csr = layer._csr
        entry = cache.get(id(csr))
        for structure in (csr, None if entry is None else entry[2]):
            if structure is not None:
                arrays += [np.asarray(getattr(structure, name)) for name in
                           ("values", "col_indices", "row_start", "row_nnz", "row_capacity")]
        if entry is not None:
            arrays.append(np.asarray(entry[3]))  # the permutation
    total = 0
    for array in arrays:
        if array.ctypes.data not in seen:
            seen.add(array.ctypes.data)
            total += array.nbytes
    return total


def held_bytes_per_connection(variant: str, x: torch.Tensor, y: torch.Tensor, *, sizes: Sequence[int],
                              epsilon: float, batch_size: int, seed: int, sparselab=None) -> float:
    """Bytes a fresh ``variant`` model and its optimizer hold per connection after ``HELD_STEPS`` steps."""
    model, optimizer, _ = build(variant, sizes, epsilon, seed, sparselab)
    torch.manual_seed(seed)
    with _kernels(variant):
        for i in range(HELD_STEPS):
            batch = slice(i * batch_size, (i + 1) * batch_size)
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    total = state_bytes(model, optimizer)
    if variant == "sparselab":
        seen = {t.untyped_storage().data_ptr() for t in model.parameters()}
        total += _sparselab_bytes(sparselab, model, seen)
    return total / connections(model)


def _kernels(variant: str) -> contextlib.AbstractContextManager:
    """torch's kernels for ``swatlib_torch``, swatlib's native ones (when available) for the rest."""
    return native.disabled() if variant == "swatlib_torch" else contextlib.nullcontext()


def time_once(variant: str, x: torch.Tensor, y: torch.Tensor, *, sizes: Sequence[int], epsilon: float,
              batch_size: int, seed: int, sparselab=None) -> dict:
    """Build a fresh model (untimed), then time one epoch + one evolution."""
    model, optimizer, evolution = build(variant, sizes, epsilon, seed, sparselab)
    nnz = connections(model)
    kernels = _kernels(variant)
    torch.manual_seed(seed)  # the dropout masks come from torch's global generator
    gc.collect()
    with kernels:
        cpu_start, start = time.process_time(), time.perf_counter()
        loss = train_epoch(model, optimizer, x, y, batch_size, torch.Generator().manual_seed(seed))
        trained = time.perf_counter()
        if evolution is not None:
            evolution.step()
        end, cpu_end = time.perf_counter(), time.process_time()
    return dict(seconds=end - start, cpu_seconds=cpu_end - cpu_start, train_seconds=trained - start,
                evolve_seconds=end - trained, nnz=nnz, last_loss=loss, nnz_after=connections(model))


def run_speed(x: torch.Tensor, y: torch.Tensor, *, sizes: Sequence[int] = SIZES, epsilon: float = EPSILON,
              batch_size: int = BATCH, repeats: int = REPEATS, seed: int = 0, sparselab=None,
              variants: Sequence[str] = VARIANTS, log: Callable[[str], None] | None = None) -> dict:
    """Time every variant ``repeats`` times, round-robin; medians, all runs and ratios.

    ``sparselab=None`` leaves the sparselab variant out (its result is then ``None``).
    """
    check_int(repeats, "repeats")
    runs: dict[str, list[dict]] = {v: [] for v in variants if v != "sparselab" or sparselab is not None}
    native.available()  # compile (once per machine) or load the native kernels before any timing
    for r in range(repeats):
        for variant in runs:
            result = time_once(variant, x, y, sizes=sizes, epsilon=epsilon, batch_size=batch_size,
                               seed=seed + r, sparselab=sparselab)
            runs[variant].append(result)
            if log is not None:
                log(f"  repeat {r + 1}/{repeats} {variant:13s} {result['seconds']:7.2f} s "
                    f"(train {result['train_seconds']:.2f} s, evolution {result['evolve_seconds']:.3f} s, "
                    f"nnz {result['nnz']:,})")
    out: dict = {}
    cpu: dict = {}
    for variant in VARIANTS:
        results = runs.get(variant)
        out[f"{variant}_s"] = statistics.median(r["seconds"] for r in results) if results else None
        cpu[f"{variant}_s"] = statistics.median(r["cpu_seconds"] for r in results) if results else None
    for other in ("sparselab", "swatlib_torch", "masked", "dense"):
        for medians in (out, cpu):
            mine, theirs = medians["swatlib_s"], medians[f"{other}_s"]
            medians[f"swatlib_over_{other}"] = mine / theirs if mine is not None and theirs else None
    out["bytes_per_connection"] = {
        v: held_bytes_per_connection(v, x, y, sizes=sizes, epsilon=epsilon, batch_size=batch_size, seed=seed,
                                     sparselab=sparselab) for v in runs}
    out["swatlib_bytes_per_connection"] = out["bytes_per_connection"]["swatlib"]
    out["goals"] = {name: {"target": bound, "measured": out[name],
                           "met": None if out[name] is None else out[name] <= bound}
                    for name, bound in GOALS.items()}
    # Process CPU time (one thread, so ≈ wall time on an idle machine): less sensitive to other
    # processes taking the core away, not to their sharing caches and memory bandwidth.
    out["cpu"] = cpu
    out["runs"] = runs
    out["nnz"] = {v: rs[0]["nnz"] for v, rs in runs.items()}
    out["evolve_s"] = {v: statistics.median(r["evolve_seconds"] for r in rs) for v, rs in runs.items()}
    return out


# --------------------------------------------------------------------------- memory
def memory_child(sizes: Sequence[int], epsilon: float, batch_size: int, seed: int = 0) -> dict:
    """In *this* process: build a truly sparse SET-MLP, run one training step, report peak RSS.

    Meant to run in a fresh process (:func:`measure_memory`), whose peak resident set
    (:func:`swatlib.machine.peak_resident_bytes`) is then the peak of the build and the step.
    """
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, sizes[0], generator=generator)
    y = torch.randint(0, sizes[-1], (batch_size,), generator=generator)
    baseline = machine.peak_resident_bytes()  # interpreter + torch + swatlib + one input batch
    model = SparseMLP(list(sizes), epsilon=epsilon, activation="all_relu", alpha=ALPHA, dropout=DROPOUT,
                      layer="sparse", generator=generator)
    built = machine.peak_resident_bytes()
    optimizer = make_optimizer("authors", model.parameters(), lr=LR)
    model.train()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    peak = machine.peak_resident_bytes()
    value = float(loss.detach())
    del loss  # frees the graph: what stays is the model, its gradients and the optimizer state
    gc.collect()
    steady = machine.resident_bytes()
    return dict(sizes=list(sizes), epsilon=epsilon, batch=batch_size, nnz=int(model.nnz),
                baseline_rss_bytes=baseline, built_peak_rss_bytes=built, peak_rss_bytes=peak,
                steady_rss_bytes=steady, loss=value)


def dense_weight_bytes(sizes: Sequence[int], bytes_per_weight: int = 4) -> int:
    """Bytes of the dense (or masked) float32 weights of ``sizes``: Σ in·out·4 — computed, never allocated."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * bytes_per_weight


def measure_memory(sizes: Sequence[int], epsilon: float, batch_size: int = BATCH) -> dict:
    """Run :func:`memory_child` in a fresh interpreter and add the per-connection figures."""
    command = [sys.executable, os.path.abspath(__file__), "--memory-child",
               json.dumps(dict(sizes=list(sizes), epsilon=epsilon, batch=batch_size))]
    # glibc raises its mmap threshold after each large free (up to 32 MiB), so freed temporaries of
    # a few MiB stay in RSS as heap and the RSS depends on allocation history; a fixed threshold (its
    # default initial value) returns every large tensor to the system when freed.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory subprocess failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    nnz = result["nnz"]
    result["peak_bytes_per_connection"] = result["peak_rss_bytes"] / nnz
    result["above_baseline_bytes_per_connection"] = (result["peak_rss_bytes"] - result["baseline_rss_bytes"]) / nnz
    result["steady_above_baseline_bytes_per_connection"] = (
        (result["steady_rss_bytes"] - result["baseline_rss_bytes"]) / nnz)
    result["dense_weight_bytes"] = dense_weight_bytes(sizes)
    result["malloc_mmap_threshold"] = MMAP_THRESHOLD
    result["dense_over_peak"] = result["dense_weight_bytes"] / result["peak_rss_bytes"]
    return result


def run_memory(sizes: Sequence[int] = MEMORY_SIZES, epsilon: float = MEMORY_EPSILON,
               extra_epsilons: Sequence[float] = MEMORY_EXTRA_EPSILONS, batch_size: int = BATCH) -> dict:
    """Peak RSS at ``epsilon`` and at ``extra_epsilons``; the slope of peak RSS against nnz."""
    main = measure_memory(sizes, epsilon, batch_size)
    points = [main] + [measure_memory(sizes, e, batch_size) for e in extra_epsilons]
    out = dict(main)
    keys = ("epsilon", "nnz", "baseline_rss_bytes", "built_peak_rss_bytes", "peak_rss_bytes", "steady_rss_bytes")
    out["points"] = [{k: p[k] for k in keys} for p in points]
    nnz = [p["nnz"] for p in points]
    out["slope_bytes_per_connection"], out["intercept_bytes"] = fit_line(nnz, [p["peak_rss_bytes"] for p in points])
    out["steady_slope_bytes_per_connection"], out["steady_intercept_bytes"] = fit_line(
        nnz, [p["steady_rss_bytes"] for p in points])
    return out


def fit_line(nnz: Sequence[float], peak: Sequence[float]) -> tuple[float | None, float | None]:
    """Least-squares ``peak ≈ slope·nnz + intercept``; ``(None, None)`` from fewer than two distinct nnz."""
    if len(set(nnz)) < 2:
        return None, None
    n_mean, m_mean = sum(nnz) / len(nnz), sum(peak) / len(peak)
    slope = (sum((a - n_mean) * (b - m_mean) for a, b in zip(nnz, peak))
             / sum((a - n_mean) ** 2 for a in nnz))
    return slope, m_mean - slope * n_mean


# --------------------------------------------------------------------------- profile
def profile(variant: str, x: torch.Tensor, y: torch.Tensor, *, steps: int = 100, sparselab=None,
            rows: int = 15) -> str:
    """torch.profiler table (self CPU time) of ``steps`` training steps of ``variant``."""
    model, optimizer, _ = build(variant, SIZES, EPSILON, 0, sparselab)
    subset = 8 * BATCH
    n = min(len(x), steps * BATCH)
    with _kernels(variant):
        train_epoch(model, optimizer, x[:subset], y[:subset], BATCH, torch.Generator().manual_seed(0))  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            train_epoch(model, optimizer, x[:n], y[:n], BATCH, torch.Generator().manual_seed(0))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# --------------------------------------------------------------------------- CLI
def environment(sparselab) -> dict:
    return {**machine.describe(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "sparselab": None if sparselab is None else getattr(sparselab, "__version__", "unknown")}


def run(x: torch.Tensor, y: torch.Tensor, *, sizes: Sequence[int] = SIZES, epsilon: float = EPSILON,
        repeats: int = REPEATS, sparselab=None, memory: bool = True,
        memory_sizes: Sequence[int] = MEMORY_SIZES, memory_epsilon: float = MEMORY_EPSILON,
        memory_extra_epsilons: Sequence[float] = MEMORY_EXTRA_EPSILONS, quick: bool = False,
        log: Callable[[str], None] | None = None) -> dict:
    """The whole benchmark as one JSON-ready dict (``--json`` prints exactly this).

    Runs with ``torch.set_num_threads(1)`` and restores the caller's thread count afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_speed(x, y, sizes=sizes, epsilon=epsilon, repeats=repeats, sparselab=sparselab, log=log)
        env = environment(sparselab)
    finally:
        torch.set_num_threads(threads)
    result.update(quick=quick, n_train=len(x), sizes=list(sizes), epsilon=epsilon, batch=BATCH,
                  repeats=repeats, environment=env)
    result["memory"] = (run_memory(memory_sizes, memory_epsilon, memory_extra_epsilons) if memory else None)
    return result


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def summary(result: dict) -> str:
    """The human-readable report printed without ``--json``."""
    env = result["environment"]
    cpu = result["cpu"]
    lines = [f"SET-MLP {'-'.join(map(str, result['sizes']))}, eps={result['epsilon']:g}, batch {result['batch']}, "
             f"{result['n_train']:,} training images{' (QUICK subset)' if result['quick'] else ''}, "
             f"one epoch + one evolution, median of {result['repeats']}",
             f"{env['cpu']}, {env['logical_cpus']} logical CPUs, torch {env['torch']}, "
             f"{env['torch_threads']} thread(s), sparselab {env['sparselab'] or 'absent'}", "",
             f"{'variant':13s} {'wall s':>8s} {'CPU s':>8s} {'evolution s':>12s} {'nnz':>11s} {'B/connection':>13s}"]
    for v in VARIANTS:
        s = result[f"{v}_s"]
        if s is None:
            lines.append(f"{v:13s} {'n/a':>8s}")
        else:
            lines.append(f"{v:13s} {s:8.2f} {cpu[v + '_s']:8.2f} {result['evolve_s'][v]:12.3f} "
                         f"{result['nnz'][v]:11,} {result['bytes_per_connection'][v]:13.1f}")
    lines.append("")
    for other in ("sparselab", "swatlib_torch", "masked", "dense"):
        r, c = result[f"swatlib_over_{other}"], cpu[f"swatlib_over_{other}"]
        lines.append(f"swatlib / {other:13s} = {'n/a' if r is None else f'{r:.3f}'} (wall)"
                     f"{'' if c is None else f', {c:.3f} (CPU)'}")
    for name, goal in result["goals"].items():
        met = {None: "not measurable", True: "met", False: "NOT met"}[goal["met"]]
        lines.append(f"goal {name} <= {goal['target']}: {met}")
    mem = result.get("memory")
    if mem:
        lines += ["", f"memory: truly sparse {'-'.join(map(str, mem['sizes']))} eps={mem['epsilon']:g}, "
                  f"build + one training step (batch {mem['batch']}), fresh process:",
                  f"  nnz {mem['nnz']:,}; peak RSS {_fmt_bytes(mem['peak_rss_bytes'])} "
                  f"(process baseline {_fmt_bytes(mem['baseline_rss_bytes'])}: "
                  f"{mem['above_baseline_bytes_per_connection']:.1f} B/connection above it, activations included); "
                  f"RSS after the step {_fmt_bytes(mem['steady_rss_bytes'])} "
                  f"({mem['steady_above_baseline_bytes_per_connection']:.1f} B/connection above baseline)",
                  f"  dense/masked float32 weights alone would need {_fmt_bytes(mem['dense_weight_bytes'])} "
                  f"(computed, not allocated) = {mem['dense_over_peak']:.0f}x the sparse peak"]
        for p in mem["points"]:
            lines.append(f"  eps={p['epsilon']:g}: nnz {p['nnz']:>11,}  build peak {_fmt_bytes(p['built_peak_rss_bytes'])}"
                         f"  step peak {_fmt_bytes(p['peak_rss_bytes'])}  after step {_fmt_bytes(p['steady_rss_bytes'])}")
        if mem.get("slope_bytes_per_connection") is not None:
            lines.append(f"  least squares over the eps points: peak RSS {mem['slope_bytes_per_connection']:.1f} "
                         f"B/connection + {_fmt_bytes(mem['intercept_bytes'])}; after-step RSS "
                         f"{mem['steady_slope_bytes_per_connection']:.1f} B/connection + "
                         f"{_fmt_bytes(mem['steady_intercept_bytes'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRAIN:,}-image subset (for trying it out)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--no-sparselab", action="store_true", help="leave sparselab out even if importable")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--profile", choices=VARIANTS, help="print a torch.profiler table of 100 steps and exit")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.memory_child:
        spec = json.loads(args.memory_child)
        print(json.dumps(memory_child(spec["sizes"], spec["epsilon"], spec["batch"])))
        return 0

    from swatlib.data import load

    try:
        check_int(args.repeats, "repeats")  # before loading the data
        data = load("fashion-mnist", subset=QUICK_TRAIN if args.quick else None)
    except (ValueError, DatasetNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sparselab = None if args.no_sparselab else import_sparselab()
    x, y = data.x_train.contiguous(), data.y_train.contiguous()
    if args.profile:
        print(profile(args.profile, x, y, sparselab=sparselab))
        return 0
    log = lambda line: print(line, file=sys.stderr if args.json else sys.stdout, flush=True)  # noqa: E731
    result = run(x, y, repeats=args.repeats, sparselab=sparselab, memory=not args.no_memory,
                 quick=args.quick, log=log)
    if sparselab is None:
        result["sparselab_note"] = ("sparselab not importable (install it into a throw-away directory and "
                                    "put that on PYTHONPATH, see benchmarks/README.md)"
                                    if not args.no_sparselab else "left out (--no-sparselab)")
    print(json.dumps(result) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
