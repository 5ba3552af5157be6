"""SWAT training step on a CPU: time, peak memory, memory saved for backward, FLOP ledger — dense vs SWAT-U.

What is measured (identically for every variant, one process, one thread, side by side): one
training step of a network — ``SmallCNN`` (width 32 by default, BatchNorm, max-pooling; batch 128
Fashion-MNIST images by default) or, with ``--network conv4`` / ``conv12``, the plain
conv + ReLU stack of :func:`swatlib.experiments.swat.conv_stack` — forward, cross-entropy,
backward, SGD step with momentum — for

``dense``
    the stock network (``nn.Conv2d``, ``nn.ReLU``, ...);
``swat-<d>``
    the same network after ``swatify(method="u", density=d)`` (first layer dense), for each
    density d (default 0.5, 0.2, 0.1).

Every variant starts from the same initial weights. Per repeat, the variants run round-robin,
each for ``steps`` steps after ``warmup`` untimed ones; the median over repeats of the mean step
time is reported, split into forward (incl. loss) and backward + update. Then, per variant, one
more forward pass measures

* the bytes saved for backward (``SavedTensorMeter``: distinct storages at their real size,
  activations vs weights — the peak, since everything saved stays alive until backward);
* the resident memory released when that graph is freed (``graph_resident_bytes``; Linux);
* the **peak** of a whole training step (``swatlib.swat.step_peak``: resident high-water mark
  above the memory held before the step, in a fresh process; Linux) — what decides whether a
  network fits, temporaries of the Top-K, the compression and the backward products included;

and one training step under a ``MeasuredLedger`` gives the conv/linear FLOPs per example it
really performed (zero-skipping, FLOPs = 2·MACs).

On a CPU the Top-K selections (a ``kthvalue`` over every weight and every input tensor), the
compression of the saved tensors and their decompression in the backward pass are *extra* work:
PyTorch's dense kernels do not skip zeros, so SWAT is slower per step here. The point of the
benchmark is the memory and the FLOP ledger — what a zero-skipping accelerator would gain —
and to show honestly what the reference implementation costs on stock hardware.

The machine's load average is recorded before and after (``environment.load_average``): the
timings are only comparable on an otherwise idle machine.

Run ``python benchmarks/swat.py --help``; the issue's peak-memory goals::

    python benchmarks/swat.py --network conv4 --batch-size 256 --densities 0.5 0.2
    python benchmarks/swat.py --network conv12 --batch-size 256 --densities 0.5 0.2 --repeats 3 --steps 1
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from swatlib import machine
from swatlib.checks import check_int
from swatlib.costmodel import MeasuredLedger
from swatlib.data import DatasetNotFoundError
from swatlib.densities import check_density
from swatlib.experiments.swat import MEMORY_NETWORKS, memory_network
from swatlib.swat import SavedTensorMeter, graph_resident_bytes, step_peak

NETWORK = "smallcnn"
WIDTH = None  # the network's default (SmallCNN 32, conv stacks 64)
BATCH = 128
DENSITIES = (0.5, 0.2, 0.1)
REPEATS = 5
STEPS = 3
WARMUP = 1


def builder(variant: str, width: int | None, network: str = NETWORK,
            seed: int = 0) -> Callable[[], nn.Module]:
    """A picklable function building ``dense`` or ``swat-<density>`` from ``seed`` (same weights)."""
    density = 1.0 if variant == "dense" else float(variant.removeprefix("swat-"))
    return functools.partial(memory_network, network, density, width=width, seed=seed)


def build(variant: str, width: int | None, network: str = NETWORK, seed: int = 0) -> nn.Module:
    """A fresh model of :func:`builder`, in training mode."""
    return builder(variant, width, network, seed)().train()


def variant_names(densities: Sequence[float]) -> list[str]:
    """``["dense", "swat-0.5", ...]``."""
    return ["dense", *[f"swat-{d:g}" for d in densities]]


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
          y: torch.Tensor) -> tuple[float, float]:
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    middle = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return middle - start, time.perf_counter() - middle


def time_steps(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *,
               repeats: int = REPEATS, steps: int = STEPS, warmup: int = WARMUP) -> dict[str, dict]:
    """Median over ``repeats`` of the mean forward / backward+update time per step (seconds)."""
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                  for name, m in models.items()}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for name, model in models.items():
        for _ in range(warmup):
            _step(model, optimizers[name], x, y)
    for _ in range(repeats):
        for name, model in models.items():  # round-robin: every variant sees the same load
            times = [_step(model, optimizers[name], x, y) for _ in range(steps)]
            samples[name].append((sum(t[0] for t in times) / steps,
                                  sum(t[1] for t in times) / steps))
    out = {}
    for name, pairs in samples.items():
        totals = [f + b for f, b in pairs]
        out[name] = {"step_s": statistics.median(totals),
                     "forward_s": statistics.median(f for f, _ in pairs),
                     "backward_update_s": statistics.median(b for _, b in pairs),
                     "step_s_all": totals}
    return out


def peak(build_model: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor,
         threads: int) -> dict[str, int | None]:
    """Peak resident growth of a training step and of its forward pass (fresh process; Linux)."""
    try:
        result = step_peak(build_model, x, y, threads=threads)
    except RuntimeError:
        return {"peak_step_bytes": None, "peak_forward_bytes": None}
    return {"peak_step_bytes": result.step, "peak_forward_bytes": result.forward}


def memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, int | None]:
    """Bytes saved for backward (meter) and resident bytes released with the graph."""
    with SavedTensorMeter(model) as meter:
        loss = F.cross_entropy(model(x), y)
    del loss
    assert meter.result is not None
    try:
        resident = graph_resident_bytes(lambda: F.cross_entropy(model(x), y))
    except RuntimeError:
        resident = None
    return {"saved_activation_bytes": meter.result.activations,
            "saved_weight_bytes": meter.result.weights,
            "saved_bytes": meter.result.total, "graph_resident_bytes": resident}


def ledger_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Conv/linear FLOPs per example of one measured training step (and the dense arithmetic)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    ledger = MeasuredLedger()
    with ledger, ledger.watch(model):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ledger.end_step(len(x))
    measured = ledger.ledger()
    return {"flops_per_example": measured.training_flops() / len(x),
            "dense_flops_per_example": 2.0 * measured.dense_macs() / len(x),
            "extra_flops_per_example": measured.extra_flops() / len(x)}


def run(x: torch.Tensor, y: torch.Tensor, *, network: str = NETWORK, width: int | None = WIDTH,
        densities: Sequence[float] = DENSITIES, repeats: int = REPEATS, steps: int = STEPS,
        warmup: int = WARMUP, threads: int = 1,
        log: Callable[[str], None] | None = None) -> dict:
    """Everything above for every variant; torch's thread count is restored afterwards."""
    for name, value in (("batch size", len(x)), ("repeats", repeats), ("steps", steps), ("threads", threads)):
        check_int(value, name)
    check_int(warmup, "warmup", 0)
    for density in densities:
        check_density(density, "densities")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = machine.load_average()
    try:
        names = variant_names(densities)
        models = {name: build(name, width, network) for name in names}
        if log:
            log(f"timing {', '.join(names)}: {repeats} repeats × {steps} steps, batch {len(x)}")
        timing = time_steps(models, x, y, repeats=repeats, steps=steps, warmup=warmup)
        variants = {}
        for name in names:
            if log:
                log(f"memory of {name}: saved for backward, graph, peak of a step (fresh process)")
            fresh = build(name, width, network)
            variants[name] = {**timing[name], **memory(fresh, x, y),
                              **peak(builder(name, width, network), x, y, threads),
                              **ledger_flops(fresh, x, y)}
        dense = variants["dense"]
        for v in variants.values():
            v["time_over_dense"] = v["step_s"] / dense["step_s"]
            v["peak_over_dense"] = (None if dense["peak_step_bytes"] is None
                                    else v["peak_step_bytes"] / dense["peak_step_bytes"])
            v["saved_over_dense"] = v["saved_bytes"] / dense["saved_bytes"]
            v["activations_over_dense"] = v["saved_activation_bytes"] / dense["saved_activation_bytes"]
            v["weights_over_dense"] = v["saved_weight_bytes"] / dense["saved_weight_bytes"]
            v["flops_over_dense"] = v["flops_per_example"] / dense["flops_per_example"]
        env = {**machine.describe(), "load_average": {"before": load_before, "after": machine.load_average()}}
    finally:
        torch.set_num_threads(previous)
    return {"network": network, "width": width or MEMORY_NETWORKS[network][1],
            "batch_size": len(x), "repeats": repeats, "steps": steps, "threads": threads,
            "environment": env, "variants": variants}


def summary(result: dict) -> str:
    """A readable table of :func:`run`'s result."""
    env = result["environment"]
    mib = 2.0**20
    load = env["load_average"]
    lines = [f"{result['network']} width {result['width']}, batch {result['batch_size']}, "
             f"{result['threads']} thread(s); {env['cpu']} ({env['logical_cpus']} logical CPUs), "
             f"torch {env['torch']}; median of {result['repeats']} × {result['steps']} steps; "
             f"load average {load['before']} before, {load['after']} after",
             f"{'variant':<10}{'step ms':>9}{'fwd ms':>8}{'bwd ms':>8}{'×dense':>8}"
             f"{'peak MiB':>10}{'×dense':>8}{'fwd pk':>8}"
             f"{'act MiB':>9}{'wt MiB':>8}{'saved ×':>8}{'RSS MiB':>9}{'MFLOP/ex':>10}{'×dense':>8}"]

    def mebibytes(value: int | None, digits: int = 1) -> str:
        return "n/a" if value is None else f"{value / mib:.{digits}f}"

    for name, v in result["variants"].items():
        ratio = "n/a" if v["peak_over_dense"] is None else f"{v['peak_over_dense']:.2f}"
        lines.append(
            f"{name:<10}{1e3 * v['step_s']:9.1f}{1e3 * v['forward_s']:8.1f}"
            f"{1e3 * v['backward_update_s']:8.1f}{v['time_over_dense']:8.2f}"
            f"{mebibytes(v['peak_step_bytes'], 0):>10}{ratio:>8}"
            f"{mebibytes(v['peak_forward_bytes'], 0):>8}"
            f"{v['saved_activation_bytes'] / mib:9.1f}{v['saved_weight_bytes'] / mib:8.2f}"
            f"{v['saved_over_dense']:8.2f}{mebibytes(v['graph_resident_bytes']):>9}"
            f"{v['flops_per_example'] / 1e6:10.2f}{v['flops_over_dense']:8.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", choices=tuple(MEMORY_NETWORKS), default=NETWORK,
                        help="SmallCNN, or the 4- / 12-conv ReLU stack (default smallcnn)")
    parser.add_argument("--width", type=int, default=WIDTH,
                        help="channels (default: SmallCNN 32, conv stacks 64)")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps per repeat")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    args = parser.parse_args(argv)
    from swatlib.data import load  # noqa: PLC0415 - only the CLI needs the data

    log = None if args.json else (lambda line: print(line, file=sys.stderr))
    try:
        data = load("fashion-mnist", subset=max(check_int(args.batch_size, "--batch-size"), 1000), flatten=False)
        x, y = data.x_train[:args.batch_size].clone(), data.y_train[:args.batch_size].clone()
        result = run(x, y, network=args.network, width=args.width, densities=args.densities,
                     repeats=args.repeats, steps=args.steps, threads=args.threads, log=log)
    except (ValueError, DatasetNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
