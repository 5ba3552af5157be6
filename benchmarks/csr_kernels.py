"""Per-kernel times of one SparseLinear layer and of the dropout: swatlib's native kernels vs torch's.

For each layer shape (default the two of the SET-MLP benchmark: 784→1000 and 1000→1000 at ε = 20,
batch 128, float32, one thread) it times, on the same operands:

``forward``
    ``Yᵀ = b + W Xᵀ`` — native ``spmm`` vs torch's CSR ``addmm``;
``grad_input``
    ``dXᵀ = Wᵀ dYᵀ`` — native ``spmm_t`` (a scatter over ``W``'s own CSR structure) vs torch's CSR
    ``sparse.mm`` on ``Wᵀ`` (values gathered with ``index_select``, as the fallback does);
``grad_weight``
    ``dW`` at the connections — native ``sddmm`` vs ``torch.sparse.sampled_addmm``;
``dropout``
    forward + backward of swatlib's inverted dropout on one ``batch × out`` activation (native pass vs
    its torch fallback) and, for reference, the former ``x * (rand_like(x) >= p) / (1 - p)``.

Every kernel is called ``calls`` times per repeat, the variants of one kernel interleaved; the best
repeat's mean per call is reported (the least disturbed by other processes), with the ratio
native / torch. Run ``python benchmarks/csr_kernels.py --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

import torch

from swatlib.checks import check_int
from swatlib.dropout import inverted_dropout
from swatlib.sparse import SparseLinear, native
from swatlib.sparse.sparse_linear import _transposed

SHAPES = ((784, 1000), (1000, 1000))
EPSILON = 20.0
BATCH = 128
DROPOUT = 0.3


def _best_ms(functions: dict[str, Callable[[], object]], calls: int, repeats: int) -> dict[str, float]:
    best = {name: float("inf") for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls):
                function()
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e3)
    return best


def _dropout_step(x: torch.Tensor, grad: torch.Tensor, fast: bool) -> None:
    leaf = x.detach().requires_grad_()
    if fast:
        inverted_dropout(leaf, DROPOUT).backward(grad)
    else:
        with native.disabled():
            inverted_dropout(leaf, DROPOUT).backward(grad)


def _former_dropout_step(x: torch.Tensor, grad: torch.Tensor) -> None:
    leaf = x.detach().requires_grad_()
    (leaf * (torch.rand_like(leaf) >= DROPOUT) * (1.0 / (1.0 - DROPOUT))).backward(grad)


def time_layer(n_in: int, n_out: int, *, epsilon: float = EPSILON, batch: int = BATCH, calls: int = 200,
               repeats: int = 5, seed: int = 0) -> dict:
    """Best-of-``repeats`` milliseconds per call of every kernel of one ``n_in → n_out`` layer."""
    generator = torch.Generator().manual_seed(seed)
    layer = SparseLinear(n_in, n_out, epsilon=epsilon, generator=generator)
    values = layer.values.detach()
    bias = torch.randn(n_out, generator=generator)
    x_t = torch.randn(n_in, batch, generator=generator)
    g_t = torch.randn(n_out, batch, generator=generator)
    crow, col = layer.crow_indices, layer.col_indices
    # torch's kernels take the int64 indices and transposed structure the layer builds for its fallback
    fallback = _transposed(crow, col, n_out, n_in, {})
    t_crow, t_col, t_perm = fallback["t_crow"], fallback["t_col"], fallback["perm"]
    weight = torch.sparse_csr_tensor(crow, fallback["col"], values, (n_out, n_in), check_invariants=False)

    def torch_grad_input():
        weight_t = torch.sparse_csr_tensor(t_crow, t_col, torch.index_select(values, 0, t_perm), (n_in, n_out),
                                           check_invariants=False)
        return torch.sparse.mm(weight_t, g_t)

    kernels = {
        "forward": {"native": lambda: native.spmm(crow, col, values, x_t, bias),
                    "torch": lambda: torch.addmm(bias[:, None], weight, x_t)},
        "grad_input": {"native": lambda: native.spmm_t(crow, col, values, g_t, n_in),
                       "torch": torch_grad_input},
        "grad_weight": {"native": lambda: native.sddmm(crow, col, g_t, x_t),
                        "torch": lambda: torch.sparse.sampled_addmm(weight, g_t, x_t.t(), beta=0.0)},
        "dropout": {"native": lambda: _dropout_step(g_t.t(), g_t.t(), True),
                    "torch": lambda: _dropout_step(g_t.t(), g_t.t(), False),
                    "former_rand_like": lambda: _former_dropout_step(g_t.t(), g_t.t())},
    }
    result: dict = {"n_in": n_in, "n_out": n_out, "nnz": layer.nnz, "batch": batch}
    for name, functions in kernels.items():
        if not native.available():
            functions.pop("native")
        ms = _best_ms(functions, calls, repeats)
        ms["native_over_torch"] = ms["native"] / ms["torch"] if "native" in ms else None
        result[name] = ms
    return result


def run(shapes: Sequence[tuple[int, int]] = SHAPES, *, epsilon: float = EPSILON, batch: int = BATCH,
        calls: int = 200, repeats: int = 5) -> dict:
    """Every shape, one thread (the caller's thread count is restored)."""
    for name, value in (("batch", batch), ("calls", calls), ("repeats", repeats)):
        check_int(value, name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        native.available()  # compile or load before timing
        layers = [time_layer(n_in, n_out, epsilon=epsilon, batch=batch, calls=calls, repeats=repeats)
                  for n_in, n_out in shapes]
    finally:
        torch.set_num_threads(threads)
    return {"epsilon": epsilon, "batch": batch, "calls": calls, "repeats": repeats, "threads": 1,
            "native_available": native.available(), "torch": torch.__version__, "layers": layers}


def summary(result: dict) -> str:
    lines = [f"eps={result['epsilon']:g}, batch {result['batch']}, 1 thread, best of {result['repeats']} "
             f"repeats x {result['calls']} calls, ms per call (native kernels "
             f"{'available' if result['native_available'] else 'UNAVAILABLE'})"]
    for layer in result["layers"]:
        lines.append(f"{layer['n_in']}->{layer['n_out']} (nnz {layer['nnz']:,}):")
        for kernel in ("forward", "grad_input", "grad_weight", "dropout"):
            ms = layer[kernel]
            extra = f"  former rand_like {ms['former_rand_like']:.3f}" if "former_rand_like" in ms else ""
            ratio = "n/a" if ms["native_over_torch"] is None else f"{ms['native_over_torch']:.2f}"
            lines.append(f"  {kernel:11s} native {ms.get('native', float('nan')):.3f}  torch {ms['torch']:.3f}"
                         f"  native/torch {ratio}{extra}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--calls", type=int, default=200, help="calls per repeat (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats, best one reported (default 5)")
    args = parser.parse_args(argv)
    try:
        result = run(calls=args.calls, repeats=args.repeats)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
