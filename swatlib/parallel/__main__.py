"""``python -m swatlib.parallel``: train one SET-MLP with WASAP-SGD, WASSP-SGD or sequentially.

On one machine it spawns the master and the workers itself::

    python -m swatlib.parallel --algorithm wasap --workers 2 --dataset fashion-mnist --subset 10000 --epochs 5

Across machines, ``torchrun`` starts the processes and this module notices (``RANK`` and
``WORLD_SIZE`` in the environment); the world size must be ``workers + 1``, rank 0 is the master
and prints the result::

    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 2 --master-addr HOST0 --master-port 29500 \\
        -m swatlib.parallel --algorithm wasap --workers 3 --dataset fashion-mnist
    torchrun --nnodes 2 --node-rank 1 --nproc-per-node 2 --master-addr HOST0 --master-port 29500 \\
        -m swatlib.parallel --algorithm wasap --workers 3 --dataset fashion-mnist

Every node needs the dataset (``make data``). Bad arguments exit with status 2 and a one-line
message before any process starts; a failed process ends the run with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from swatlib.data import DatasetNotFoundError
from swatlib.experiments import runs
from swatlib.experiments.truly_sparse import make_spec
from swatlib.experiments.truly_sparse_reported import PAPER_SETTINGS
from swatlib.parallel.training import (ALGORITHMS, PHASE2, SCHEDULES, Options, ParallelRunError, assemble,
                                       leave_without_finalising, make_plan, run_rank, train)
from swatlib.parallel.roles import AVERAGING, RETAIN

SUMMARY = ("algorithm", "workers", "epochs", "best_test_acc", "final_test_acc", "train_seconds",
           "samples_per_second", "nnz", "hidden_neurons", "cpu_utilisation", "staleness")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m swatlib.parallel", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithm", default="wasap", help=f"one of {', '.join(ALGORITHMS)} (default: wasap)")
    p.add_argument("--workers", type=int, default=2, help="number of workers K (default: 2)")
    p.add_argument("--dataset", default="fashion-mnist", help=f"one of {', '.join(PAPER_SETTINGS)}")
    p.add_argument("--subset", type=int, default=None, help="training samples (default: the full split)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the paper's)")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="layer widths, input first (default: the paper's for the dataset)")
    p.add_argument("--importance-pruning", action="store_true", help="prune neurons on the paper's schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--local-fraction", type=float, default=0.3, help="fraction of epochs in phase 2 (default: 0.3)")
    p.add_argument("--schedule", default="async", help=f"one of {', '.join(SCHEDULES)} (default: async)")
    p.add_argument("--retain", default="map", help=f"one of {', '.join(RETAIN)} (default: map)")
    p.add_argument("--averaging", default="mean", help=f"one of {', '.join(AVERAGING)} (default: mean)")
    p.add_argument("--phase2", default="local", help=f"one of {', '.join(PHASE2)} (default: local)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (sequential only; default: 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    return p


def _spec(args: argparse.Namespace) -> dict:
    own = {}
    if args.subset is not None:
        own["subset"] = args.subset
    if args.epochs is not None:
        own["epochs"] = args.epochs
    if args.sizes is not None:
        own["sizes"] = args.sizes
    return make_spec(args.dataset, "set", "all_relu", args.importance_pruning, seed=args.seed, profile="cli",
                     overrides={args.dataset: own})


def _options(args: argparse.Namespace) -> dict:
    return dict(algorithm=args.algorithm, workers=args.workers, local_fraction=args.local_fraction,
                schedule=args.schedule, retain=args.retain, averaging=args.averaging, phase2=args.phase2,
                threads=args.threads)


def _under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _torchrun(spec: dict, options: dict) -> dict | None:
    """This process's rank under torchrun; rank 0 returns the result."""
    parsed = Options(**options)
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    if world != parsed.world:
        raise ValueError(f"torchrun started {world} processes but --workers {parsed.workers} needs {parsed.world}")
    data = runs.load_dataset(spec["dataset"], spec["subset"])
    plan = make_plan(spec, parsed, len(data.y_train))
    torch.set_num_threads(parsed.threads)
    reports = run_rank(rank, world, spec, parsed, plan, "env://")
    return None if rank != 0 else assemble(spec, parsed, plan, reports, data)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        spec = _spec(args)
        options = _options(args)
        Options(**options)
        if _under_torchrun():
            result = _torchrun(spec, options)
        else:
            result = train(spec, log=(lambda line: None) if args.json else print, **options)
    except (ValueError, DatasetNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ParallelRunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every process of the run was stopped", file=sys.stderr)
        return 130
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result))
    else:
        for key in SUMMARY:
            print(f"{key}: {result[key]}")
    return 0


if __name__ == "__main__":
    if _under_torchrun():  # a gloo rank: leave as the spawned ranks do (training.leave_without_finalising)
        leave_without_finalising(main())
    sys.exit(main())
