"""The runs behind notebook ``40_wasap_sgd``: Table 3, staleness, the cost of the authors' phase-2 overwrite.

A parallel run's spec is a Truly Sparse run spec (the SET-MLP with All-ReLU of the notebook's
profile, :func:`swatlib.experiments.truly_sparse.make_spec`) plus ``parallel`` — the
:class:`swatlib.parallel.Options` as a dict — and ``runner``: ``"processes"``
(:func:`swatlib.parallel.train`, real processes, timed) or ``"simulator"``
(:func:`swatlib.parallel.simulate`, WASAP-SGD's ordered schedule in one process, for the teaching
panel: its results equal the ordered processes' bit for bit, its times mean nothing). Runs go through
the results cache like every other family; the timed ones train alone (:mod:`~swatlib.experiments.runs`).

A dataset whose files are absent gives a result with status ``"not run: dataset absent"``, so
Table 3 keeps its Higgs and CIFAR-10 rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from swatlib.checks import check_choice, check_seeds
from swatlib.experiments import runs
from swatlib.experiments import truly_sparse as ts
from swatlib.experiments.runs import ABSENT
from swatlib.experiments.truly_sparse_reported import DATASET_NAMES, TABLE3
from swatlib.experiments.truly_sparse_tables import mean_std
from swatlib.parallel import Options, simulate, train

__all__ = [
    "ABSENT",
    "EXPERIMENT",
    "FAMILY",
    "METHOD_NAMES",
    "RUNNERS",
    "curves",
    "describe",
    "make_spec",
    "reported_rows",
    "run_many",
    "staleness",
    "table3",
    "table3_specs",
]

#: Name (and format version) of these runs in the results cache.
EXPERIMENT = "parallel/run-v1"

#: How a run is executed.
RUNNERS = ("processes", "simulator")

#: Names of the methods in tables and figures (the paper's, and the authors' Keras baselines).
METHOD_NAMES = {"sequential": "Sequential", "wassp": "WASSP-SGD", "wasap": "WASAP-SGD",
                "keras-cpu-1": "Keras CPU (1 core)", "keras-cpu-12": "Keras CPU (12 cores)", "keras-gpu": "Keras GPU"}


def make_spec(dataset: str, importance_pruning: bool, *, seed: int, profile: str,
              overrides: str | dict | None, runner: str = "processes", **options: Any) -> dict[str, Any]:
    """The cache key of one parallel run.

    Parameters
    ----------
    dataset, importance_pruning, seed, profile, overrides
        As for :func:`swatlib.experiments.truly_sparse.make_spec` (a SET-MLP with All-ReLU).
    runner
        ``"processes"`` or ``"simulator"`` (the simulator runs WASAP-SGD's ordered schedule only).
    **options
        :class:`swatlib.parallel.Options` fields (``algorithm``, ``workers``, ``schedule``, …).

    Raises
    ------
    ValueError
        On an unknown runner, option, or a simulator run that is not ordered WASAP-SGD.
    """
    check_choice(runner, RUNNERS, "runner")
    parsed = Options(**options)
    if runner == "simulator" and (parsed.algorithm != "wasap" or parsed.schedule != "ordered"):
        raise ValueError("the simulator runs WASAP-SGD's ordered schedule only (algorithm='wasap', "
                         "schedule='ordered')")
    spec = ts.make_spec(dataset, "set", "all_relu", importance_pruning, seed=seed, profile=profile,
                        overrides=overrides)
    record = parsed.record()
    del record["chunk"]  # how messages are cut does not change a result
    return {**spec, "experiment": EXPERIMENT, "parallel": record, "runner": runner}


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(spec["parallel"])


def describe(spec: dict[str, Any]) -> str:
    """One-line name of a run, e.g. ``"Fashion-MNIST WASAP-SGD K=2 + IP seed 0"``."""
    options = spec["parallel"]
    name = METHOD_NAMES[options["algorithm"]]
    if options["algorithm"] != "sequential":
        name += f" K={options['workers']}"
        if options["schedule"] == "ordered":
            name += " ordered"
        if options["phase2"] != "local":
            name += f" phase-2 {options['phase2']}"
    ip = " + IP" if spec["importance_pruning"] else ""
    return f"{DATASET_NAMES.get(spec['dataset'], spec['dataset'])} {name}{ip} seed {spec['seed']}"


def _compute(spec: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    options = _options(spec)
    if spec["runner"] == "simulator":
        keep = ("workers", "local_fraction", "retain", "averaging", "phase2", "overwrite_every")
        return simulate(spec, **{k: options[k] for k in keep})
    return train(spec, log=lambda line: log(f"{describe(spec)}: {line}"), **options)


def _timed(spec: dict[str, Any]) -> bool:
    return spec["runner"] == "processes"


#: Parallel runs: timed when they run as processes (they measure speed), an absent dataset is a result.
FAMILY = runs.Family(compute=_compute, describe=describe, absent_is_a_result=True, is_timed=_timed)


def run_many(specs: Iterable[dict[str, Any]], *, log: Callable[[str], None] = print,
             jobs: int | str | None = None) -> list[runs.RunResult]:
    """Every spec's result in order (:func:`swatlib.experiments.runs.run_many`): process runs train
    alone, one after the other; simulator runs may share the machine."""
    return runs.run_many(FAMILY, specs, log=log, jobs=jobs)


def table3_specs(datasets: Iterable[str], *, workers: int, seeds: Sequence[int], profile: str,
                 overrides: str | dict | None, algorithms: Sequence[str] = ("sequential", "wassp", "wasap"),
                 pruning: Sequence[bool] = (False, True), **options: Any) -> list[dict[str, Any]]:
    """Table 3: each algorithm (sequential, WASSP-SGD, WASAP-SGD), without and with Importance Pruning."""
    seeds = check_seeds(seeds)
    return [make_spec(dataset, ip, seed=seed, profile=profile, overrides=overrides, algorithm=algorithm,
                      workers=workers, **options)
            for dataset in datasets for algorithm in algorithms for ip in pruning for seed in seeds]


def _row_key(spec: dict[str, Any]) -> tuple[str, str, bool]:
    return spec["dataset"], spec["parallel"]["algorithm"], bool(spec["importance_pruning"])


def table3(outcomes: Iterable[runs.RunResult], reported: dict = TABLE3) -> pd.DataFrame:
    """Table 3 as measured (mean ± std over seeds), beside the paper's row.

    Columns: best test accuracy (%), training minutes, speed-up over the sequential run of the same
    dataset, pruning and seed (paired by seed), CPU utilisation (% of all cores), peak RSS of the
    master and of the largest worker (MiB); and the paper's accuracy, minutes, speed-up, CPU
    utilisation and memory. Rows whose dataset is absent say so.
    """
    outcomes = [o for o in outcomes if o.spec["runner"] == "processes"]
    sequential = {(o.spec["dataset"], bool(o.spec["importance_pruning"]), o.spec["seed"]): o.result
                  for o in outcomes if o.ok and o.spec["parallel"]["algorithm"] == "sequential"}
    groups: dict[tuple, list[runs.RunResult]] = {}
    for outcome in outcomes:
        groups.setdefault(_row_key(outcome.spec), []).append(outcome)
    rows = []
    for (dataset, algorithm, ip), members in groups.items():
        rep = reported.get((dataset, algorithm, ip), {})
        rep_seq = reported.get((dataset, "sequential", ip), {})
        row = {"dataset": DATASET_NAMES.get(dataset, dataset), "method": METHOD_NAMES[algorithm],
               "IP": "yes" if ip else "no"}
        done = [m for m in members if m.ok]
        if not done:
            row["status"] = members[0].status
        else:
            row["status"] = "ok"
            row["workers"] = done[0].result["workers"]
            acc, acc_std, n = mean_std(100 * m.result["best_test_acc"] for m in done)
            minutes, minutes_std, _ = mean_std(m.result["train_seconds"] / 60 for m in done)
            speedups = [sequential[(dataset, ip, m.spec["seed"])]["train_seconds"] / m.result["train_seconds"]
                        for m in done if (dataset, ip, m.spec["seed"]) in sequential]
            speedup, speedup_std, _ = mean_std(speedups)
            cpu, _, _ = mean_std(100 * m.result["cpu_utilisation"] for m in done)
            master_rss, _, _ = mean_std(m.result["roles"][0]["peak_rss_mib"] for m in done)
            worker_rss, _, _ = mean_std(max([r["peak_rss_mib"] for r in m.result["roles"][1:]] or [math.nan])
                                        for m in done)
            row.update({"seeds": n, "best acc %": acc, "acc ± std": acc_std, "train minutes": minutes,
                        "minutes ± std": minutes_std, "speed-up": speedup, "speed-up ± std": speedup_std,
                        "CPU %": cpu, "master MiB": master_rss, "worker MiB": worker_rss})
        row.update({"reported acc %": rep.get("accuracy"), "reported minutes": rep.get("minutes"),
                    "reported speed-up": (rep_seq["minutes"] / rep["minutes"]) if rep and rep_seq else None,
                    "reported CPU %": rep.get("cpu_percent"), "reported MB": rep.get("memory_mb")})
        rows.append(row)
    return pd.DataFrame(rows)


def reported_rows(datasets: Iterable[str], reported: dict = TABLE3) -> pd.DataFrame:
    """The paper's Table 3 rows for ``datasets``, Keras baselines included (all "reported")."""
    rows = [{"dataset": DATASET_NAMES.get(d, d), "method": METHOD_NAMES[m], "IP": "yes" if ip else "no", **values}
            for (d, m, ip), values in reported.items() if d in set(datasets)]
    return pd.DataFrame(rows)


def staleness(outcomes: Iterable[runs.RunResult]) -> pd.DataFrame:
    """Staleness histograms: one row per (run, staleness) with the count and its share of the updates."""
    rows = []
    for outcome in outcomes:
        if not outcome.ok:
            continue
        counts = {int(k): v for k, v in outcome.result["staleness"].items()}
        total = sum(counts.values())
        for value, count in sorted(counts.items()):
            rows.append({"run": describe(outcome.spec), "workers": outcome.result["workers"],
                         "schedule": outcome.spec["parallel"]["schedule"], "staleness": value, "count": count,
                         "share": count / total})
    return pd.DataFrame(rows)


def curves(outcomes: Iterable[runs.RunResult]) -> pd.DataFrame:
    """Per-epoch records of finished runs: epoch, wall seconds, test accuracy, which model was scored."""
    rows = []
    for outcome in outcomes:
        if not outcome.ok:
            continue
        for record in outcome.result["history"]:
            rows.append({"run": describe(outcome.spec), "algorithm": outcome.spec["parallel"]["algorithm"],
                         "IP": bool(outcome.spec["importance_pruning"]), "seed": outcome.spec["seed"],
                         "workers": outcome.result["workers"], "phase2": outcome.spec["parallel"]["phase2"],
                         "epoch": record["epoch"], "wall_seconds": record["wall_seconds"],
                         "test_acc": 100 * record["test_acc"], "model": record["model"]})
    return pd.DataFrame(rows)
