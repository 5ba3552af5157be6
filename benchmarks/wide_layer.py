"""Kernel times of one extreme-scale layer across micro-batch sizes, with and without huge pages.

Table 4's large models (``swatlib.experiments.extreme_scale``) are 5,000,000 → 5,000,000 layers at
ε = 1 (10⁷ connections, about two per neuron), trained in micro-batches of 16–128 samples. Each
connection reads one randomly chosen row of a multi-GB activation matrix, so the kernels wait on main
memory and on the TLB, not on arithmetic. For each micro-batch this script times, on the same
operands (feature-major, float32, every core):

``forward``
    ``Yᵀ = b + W Xᵀ`` (native ``spmm``);
``grad_input``
    ``dXᵀ = Wᵀ dYᵀ`` (native ``spmm_t``, zeroed output included);
``grad_weight``
    ``dW`` at the connections (native ``sddmm``);
``activation``
    the fused All-ReLU + dropout forward and backward (``swatlib.dropout.relu_dropout``), its random
    bits included.

torch backs allocations of 2 MB and more with transparent huge pages only when ``THP_MEM_ALLOC_ENABLE=1``
is set before it first allocates, so ``--huge-pages both`` (the default) runs the measurement twice, in
two fresh processes one after the other — without, then with — and reports the ratio. The best of
``repeats`` calls is reported in ms and in ns per connection and sample. Run
``python benchmarks/wide_layer.py --help``; nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import torch

from swatlib import machine
from swatlib.checks import check_choice, check_int, check_number
from swatlib.dropout import relu_dropout
from swatlib.sparse import SparseLinear, native

KERNELS = ("forward", "grad_input", "grad_weight", "activation")
MICRO_BATCHES = (16, 32, 64, 128)


def _best_ms(function: Callable[[], object], repeats: int) -> float:
    function()  # first touch of the output pages and the OpenMP pool, untimed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _activation_step(z_t: torch.Tensor, grad: torch.Tensor) -> None:
    leaf = z_t.t().detach().requires_grad_()  # batch-major view of the feature-major tensor, as in a model
    relu_dropout(leaf, -0.6, 0.4).backward(grad.t())


def measure(width: int, *, epsilon: float = 1.0, micro_batches: Sequence[int] = MICRO_BATCHES, repeats: int = 3,
            seed: int = 0) -> dict:
    """Best-of-``repeats`` milliseconds of every kernel of one ``width → width`` layer, in this process."""
    generator = torch.Generator().manual_seed(seed)
    layer = SparseLinear(width, width, epsilon=epsilon, generator=generator)
    crow, col, values = layer.crow_indices, layer.col_indices, layer.values.detach()
    bias = torch.randn(width, generator=generator)
    rows = []
    for batch in micro_batches:
        x_t = torch.randn(width, batch, generator=generator)
        g_t = torch.randn(width, batch, generator=generator)
        kernels = {"forward": lambda: native.spmm(crow, col, values, x_t, bias),
                   "grad_input": lambda: native.spmm_t(crow, col, values, g_t, width),
                   "grad_weight": lambda: native.sddmm(crow, col, g_t, x_t),
                   "activation": lambda: _activation_step(x_t, g_t)}
        ms = {name: _best_ms(function, repeats) for name, function in kernels.items()}
        rows.append({"batch": batch, "ms": ms,
                     "ns_per_connection_and_sample": {name: ms[name] * 1e6 / (layer.nnz * batch)
                                                      for name in ("forward", "grad_input", "grad_weight")}})
        del x_t, g_t
    return {"width": width, "epsilon": epsilon, "nnz": layer.nnz, "repeats": repeats,
            "threads": torch.get_num_threads(), "native_available": native.available(),
            "huge_pages": os.environ.get("THP_MEM_ALLOC_ENABLE") == "1", "rows": rows}


def run(width: int, *, epsilon: float = 1.0, micro_batches: Sequence[int] = MICRO_BATCHES, repeats: int = 3,
        huge_pages: str = "both") -> dict:
    """The measurement in fresh processes: without huge pages, with them, or both (one after the other)."""
    for name, value in (("width", width), ("repeats", repeats)):
        check_int(value, name)
    check_number(epsilon, "epsilon", 0, open_low=True)
    for batch in micro_batches:
        check_int(batch, "micro_batches")
    check_choice(huge_pages, ("off", "on", "both"), "huge_pages")
    modes = {"off": [False], "on": [True], "both": [False, True]}[huge_pages]
    load_before = machine.load_average()
    results = []
    for enabled in modes:
        environment = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
        if enabled:
            environment["THP_MEM_ALLOC_ENABLE"] = "1"
        command = [sys.executable, __file__, "--in-process", "--width", str(width), "--epsilon", str(epsilon),
                   "--micro-batches", ",".join(map(str, micro_batches)), "--repeats", str(repeats)]
        completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"wide_layer measurement failed: {completed.stderr.strip().splitlines()[-1:]}")
        results.append(json.loads(completed.stdout))
    result = {"machine": machine.describe(), "load_average_before": load_before,
              "load_average_after": machine.load_average(), "busy": machine.is_busy(load_before), "runs": results}
    if len(results) == 2:
        result["off_over_on"] = [{"batch": off["batch"], **{name: off["ms"][name] / on["ms"][name] for name in KERNELS}}
                                 for off, on in zip(results[0]["rows"], results[1]["rows"])]
    return result


def _load(average: list[float] | None) -> str:
    return "n/a" if average is None else f"{average[0]:.2f}"


def summary(result: dict) -> str:
    first = result["runs"][0]
    lines = [f"{first['width']:,} -> {first['width']:,} at eps {first['epsilon']:g} ({first['nnz']:,} connections), "
             f"{first['threads']} thread(s), best of {first['repeats']}, ms per call; 1-min load average "
             f"{_load(result['load_average_before'])} -> {_load(result['load_average_after'])}"
             + (" (BUSY machine: do not compare)" if result["busy"] else "")]
    for run_result in result["runs"]:
        lines.append(f"huge pages {'on' if run_result['huge_pages'] else 'off'}:")
        for row in run_result["rows"]:
            per = row["ns_per_connection_and_sample"]
            lines.append(f"  batch {row['batch']:4d}: " + "  ".join(f"{name} {row['ms'][name]:8.1f}" for name in KERNELS)
                         + "   ns/(connection x sample): " + " / ".join(f"{per[name]:.2f}" for name in per))
    for row in result.get("off_over_on", []):
        lines.append(f"off / on, batch {row['batch']:4d}: " + "  ".join(f"{name} {row[name]:.2f}" for name in KERNELS))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=5_000_000, help="neurons of both sides (default 5,000,000)")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--micro-batches", default=",".join(map(str, MICRO_BATCHES)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--huge-pages", choices=("off", "on", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # one measurement, as JSON
    args = parser.parse_args(argv)
    try:
        try:
            micro_batches = [int(value) for value in args.micro_batches.split(",")]
        except ValueError:
            raise ValueError(f"--micro-batches must be comma-separated positive integers, "
                             f"got {args.micro_batches!r}") from None
        if args.in_process:  # run() below has checked every argument
            print(json.dumps(measure(args.width, epsilon=args.epsilon, micro_batches=micro_batches,
                                     repeats=args.repeats)))
            return 0
        result = run(args.width, epsilon=args.epsilon, micro_batches=micro_batches, repeats=args.repeats,
                     huge_pages=args.huge_pages)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
