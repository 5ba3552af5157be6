"""Command line of the cost model.

``python -m swatlib.costmodel --arch resnet50 --method swat-u --density 0.2 [--json]`` prints
the FLOP, memory and accelerator summary of one configuration (``--json``: one JSON object
with every field of :class:`~swatlib.costmodel.report.CostReport`); ``--list`` names the
architectures and methods. Bad input exits with status 2 and a one-line message naming the
valid values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ..checks import check_int
from ..models.registry import ARCHITECTURES
from .memory import INDEX_FORMATS
from .methods import METHODS
from .report import analyse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m swatlib.costmodel",
        description="FLOPs (= 2·MACs), backward-pass memory and accelerator speed-up of "
                    "sparse training against dense training.")
    parser.add_argument("--arch", help="architecture (see --list)")
    parser.add_argument("--method", help="training method (see --list)")
    parser.add_argument("--density", type=float,
                        help="kept fraction in (0, 1]; sparsity = 1 - density")
    parser.add_argument("--index-format", default="bitmap",
                        help=f"index of sparse tensors in the memory model: "
                             f"{', '.join(INDEX_FORMATS)} (default bitmap)")
    parser.add_argument("--batch-size", type=int, default=128, help="examples per step (128)")
    parser.add_argument("--input-shape", type=int, nargs=3, metavar=("C", "H", "W"),
                        help="example shape (default: the architecture's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--list", action="store_true", help="list architectures and methods")
    return parser


def _listing() -> str:
    lines = ["architectures:"]
    for spec in ARCHITECTURES.values():
        shape = "x".join(map(str, spec.input_shape))
        lines.append(f"  {spec.name:<12} {spec.dataset}, input {shape}, {spec.num_classes} classes")
    lines.append("methods:")
    lines += [f"  {m.name:<12} {m.description}" for m in METHODS.values()]
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 on bad input)."""
    args = _parser().parse_args(argv)
    if args.list:
        print(_listing())
        return 0
    for flag, value, valid in (("--arch", args.arch, f"one of {', '.join(ARCHITECTURES)}"),
                               ("--method", args.method, f"one of {', '.join(METHODS)}"),
                               ("--density", args.density, "the kept fraction in (0, 1]")):
        if value is None:
            return _fail(f"{flag} is required: {valid}")
    try:
        check_int(args.batch_size, "--batch-size")
        report = analyse(args.arch, args.method, args.density, index_format=args.index_format,
                         batch_size=args.batch_size, input_shape=args.input_shape)
    except ValueError as err:  # unknown architecture, method or index format, bad density or shape
        return _fail(" ".join(str(err).split()))
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
