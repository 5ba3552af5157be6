"""Tables and figure data of notebooks ``10``–``14`` from finished runs, beside the paper's values.

Every builder takes :class:`~swatlib.experiments.truly_sparse.RunResult` objects (or the records
derived from them) and returns a pandas DataFrame; none of them trains anything, so they are cheap
and unit-tested on tiny synthetic histories. Accuracies are reported in percent, like the paper.

* :func:`summaries` — one row per run: best and final accuracy, parameters, minutes.
* :func:`table2` — paper Table 2: mean (± std over seeds) best test accuracy, final accuracy,
  parameters at start and end, training minutes, and the reported values. A dataset whose files
  are absent keeps its reported values and says ``not run: dataset absent``.
* :func:`table2_claims` — Table 2's claims as differences (All-ReLU − ReLU, IP − no IP, ...).
* :func:`table5` — paper Table 5: the All-ReLU slope sweep against ReLU.
* :func:`table6` — paper Table 6: post-training Importance Pruning without retraining.
* :func:`relative_size_error` / :func:`reported_relative_size_error` — paper Figure 4: relative
  model size against relative error, both relative to the dense MLP (ReLU) of the same dataset.
* :func:`curves` — per-epoch records (learning curves, gradient flow, Figures 5 and 6).

The paper's values are looked up by what a run *is* — its spec's dataset, model, activation and
pruning (:func:`variant`) — never by parsing the labels shown in the tables, so a LeakyReLU run
never sits beside ReLU's reported values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from swatlib.experiments.truly_sparse import ABSENT, RunResult
from swatlib.experiments.truly_sparse_reported import DATASET_NAMES, TABLE2, TABLE5, TABLE6

__all__ = [
    "absent_datasets",
    "curves",
    "relative",
    "relative_size_error",
    "reported_relative_size_error",
    "summaries",
    "table2",
    "table2_claims",
    "table5",
    "table6",
    "variant",
]

_ACT = {"relu": "ReLU", "all_relu": "All-ReLU", "leaky_relu": "LeakyReLU"}
_KEY = ["dataset", "model", "activation", "IP"]

#: Key of :func:`table2`'s ``attrs`` mapping each row to its :func:`variant` (for :func:`table2_claims`).
_VARIANTS = "variants"


def variant(spec: dict[str, Any]) -> tuple[str, str, str, bool]:
    """``(dataset, model, activation, importance_pruning)`` of a run in the keys of
    :data:`~swatlib.experiments.truly_sparse_reported.TABLE2` (model ``"set"`` or ``"dense"``)."""
    return (spec["dataset"], "set" if spec["model"] == "set-mlp" else "dense", spec["activation"],
            bool(spec["importance_pruning"]))


def _model(spec: dict[str, Any]) -> str:
    return "SET-MLP" if spec["model"] == "set-mlp" else "Dense MLP"


def _activation(spec: dict[str, Any]) -> str:
    name = _ACT.get(spec["activation"], spec["activation"])
    return name if spec["alpha"] is None else f"{name} (α={spec['alpha']:g})"


def summaries(outcomes: Iterable[RunResult]) -> pd.DataFrame:
    """One row per run (absent datasets included, with NaN results).

    Columns: ``dataset, model, activation, IP, alpha, seed, status, variant`` (:func:`variant`),
    ``data`` (the dataset's name as loaded, e.g. "Madelon-like (synthetic)"), ``architecture``,
    ``best_test_acc``, ``best_epoch``, ``final_test_acc``, ``final_train_acc`` (%, final = the
    network handed back, after the last pruning), ``params_start``, ``params_end``, ``minutes``
    (training + topology updates, evaluation excluded), ``epochs``.
    """
    rows = []
    for o in outcomes:
        spec, r = o.spec, o.result
        row = {
            "dataset": spec["dataset"], "model": _model(spec), "activation": _activation(spec),
            "IP": "yes" if spec["importance_pruning"] else "no", "alpha": spec["alpha"],
            "seed": spec["seed"], "status": o.status, "variant": variant(spec),
            "architecture": "-".join(str(s) for s in spec["sizes"]), "epochs": spec["epochs"],
        }
        if o.ok:
            history = r["history"]
            best = max(history, key=lambda h: h["test_acc"])
            last = history[-1]
            row.update({
                "data": r.get("dataset_name", DATASET_NAMES.get(spec["dataset"], spec["dataset"])),
                "best_test_acc": 100 * best["test_acc"],
                "best_epoch": best["epoch"],
                "final_test_acc": 100 * r.get("final_test_acc", last["test_acc"]),
                "final_train_acc": 100 * r.get("final_train_acc", last["train_acc"]),
                "params_start": r["params_start"],
                "params_end": r["params_end"],
                "minutes": r.get("train_seconds", sum(h["seconds"] for h in history)) / 60,
            })
        else:
            row.update({"data": DATASET_NAMES.get(spec["dataset"], spec["dataset"]),
                        **{k: math.nan for k in ("best_test_acc", "best_epoch", "final_test_acc",
                                                 "final_train_acc", "params_start", "params_end", "minutes")}})
        rows.append(row)
    return pd.DataFrame(rows)


def table2(outcomes: Iterable[RunResult], reported: dict = TABLE2) -> pd.DataFrame:
    """Paper Table 2, reproduced beside the reported values.

    Returns
    -------
    DataFrame
        Indexed by ``dataset, model, activation, IP``; columns ``status``, ``data``,
        ``architecture``, ``seeds``, ``best acc %`` (mean over seeds of the best test accuracy, as
        the paper reports), ``± std``, ``final acc %``, ``params start``, ``params end``,
        ``minutes``, then ``reported acc %``, ``reported params start``, ``reported params end``,
        ``reported minutes``. Its ``attrs["variants"]`` maps each row to its :func:`variant`.
    """
    df = summaries(outcomes)
    rows = []
    variants = {}
    seen = {}
    for key, group in df.groupby(_KEY, sort=False):
        seen.setdefault(key[0], group.iloc[0])
        ok = group[group.status == "ok"]
        status = "ok" if len(ok) else group.status.iloc[0]
        variants[key] = group.variant.iloc[0]
        rep = reported.get(variants[key], {})
        rows.append({
            **dict(zip(_KEY, key)),
            "status": status,
            "data": group.data.iloc[0],
            "architecture": group.architecture.iloc[0],
            "seeds": len(ok),
            "best acc %": ok.best_test_acc.mean() if len(ok) else math.nan,
            "± std": ok.best_test_acc.std(ddof=1) if len(ok) > 1 else math.nan,
            "final acc %": ok.final_test_acc.mean() if len(ok) else math.nan,
            "params start": ok.params_start.mean() if len(ok) else math.nan,
            "params end": ok.params_end.mean() if len(ok) else math.nan,
            "minutes": ok.minutes.mean() if len(ok) else math.nan,
            "reported acc %": _num(rep.get("accuracy")),
            "reported params start": _num(rep.get("params_start")),
            "reported params end": _num(rep.get("params_end")),
            "reported minutes": _num(rep.get("minutes")),
        })
    # Variants of the paper that were not run (e.g. the dense Leukemia MLP): reported values only.
    done = set(variants.values())
    for dataset, first in seen.items():
        for (d, model, activation, ip), rep in reported.items():
            if d != dataset or (d, model, activation, ip) in done:
                continue
            row = {"dataset": dataset, "model": "SET-MLP" if model == "set" else "Dense MLP",
                   "activation": _ACT[activation], "IP": "yes" if ip else "no"}
            variants[tuple(row[k] for k in _KEY)] = (d, model, activation, ip)
            rows.append({**row,
                         "status": "not run (no such run in this profile)", "data": first.data,
                         "architecture": first.architecture, "seeds": 0,
                         **{c: math.nan for c in ("best acc %", "± std", "final acc %", "params start",
                                                  "params end", "minutes")},
                         "reported acc %": _num(rep["accuracy"]),
                         "reported params start": _num(rep["params_start"]),
                         "reported params end": _num(rep["params_end"]),
                         "reported minutes": _num(rep["minutes"])})
    table = pd.DataFrame(rows).set_index(_KEY)
    table.attrs[_VARIANTS] = variants
    return table


def table2_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 claims as differences, ours beside the reported, per dataset that ran.

    From a :func:`table2` table: All-ReLU − ReLU (best accuracy, points, without and with IP),
    IP − no IP (points, per activation), parameters at the end with IP as % of the start, and
    SET-MLP All-ReLU − dense MLP ReLU (points).

    Returns
    -------
    DataFrame
        Indexed by ``dataset, claim``; columns ``ours``, ``reported``.

    Raises
    ------
    ValueError
        If ``table`` does not carry :func:`table2`'s ``attrs["variants"]``.
    """
    if _VARIANTS not in table.attrs:
        raise ValueError("table2_claims takes the table that table2() returns (its attrs name each row's variant)")
    rows = []
    by_variant: dict[tuple, pd.Series] = {}
    for index, row in table.iterrows():
        by_variant.setdefault(table.attrs[_VARIANTS][index], row)
    for dataset in dict.fromkeys(table.index.get_level_values("dataset")):
        if not (table.loc[dataset].status == "ok").any():
            continue

        def pick(model, activation, ip, column):
            row = by_variant.get((dataset, model, activation, ip))
            return math.nan if row is None else float(row[column])

        def both(a, b):
            return tuple(pick(*a, c) - pick(*b, c) for c in ("best acc %", "reported acc %"))

        relu, all_relu = ("set", "relu", False), ("set", "all_relu", False)
        relu_ip, all_relu_ip = ("set", "relu", True), ("set", "all_relu", True)
        claims = {
            "All-ReLU − ReLU, no IP (points)": both(all_relu, relu),
            "All-ReLU − ReLU, with IP (points)": both(all_relu_ip, relu_ip),
            "IP − no IP, ReLU (points)": both(relu_ip, relu),
            "IP − no IP, All-ReLU (points)": both(all_relu_ip, all_relu),
            "SET All-ReLU − dense ReLU (points)": both(all_relu, ("dense", "relu", False)),
        }
        for name, pruned in (("ReLU", relu_ip), ("All-ReLU", all_relu_ip)):
            claims[f"params at end with IP, {name} (% of start)"] = tuple(
                100 * pick(*pruned, f"{p}params end") / pick(*pruned, f"{p}params start")
                for p in ("", "reported "))
        claims["SET-MLP params (% of dense)"] = tuple(
            100 * pick(*all_relu, f"{p}params start") / pick("dense", "relu", False, f"{p}params start")
            for p in ("", "reported "))
        for claim, (ours, reported) in claims.items():
            rows.append({"dataset": dataset, "claim": claim, "ours": ours, "reported": reported})
    if not rows:
        return pd.DataFrame(columns=["ours", "reported"])
    return pd.DataFrame(rows).set_index(["dataset", "claim"])


def _num(value) -> float:
    return math.nan if value is None else float(value)


def table5(outcomes: Iterable[RunResult], reported: dict = TABLE5) -> pd.DataFrame:
    """Paper Table 5: best test accuracy of SET-MLP on one dataset, ReLU and each All-ReLU slope.

    Returns
    -------
    DataFrame
        Indexed by ``activation`` ("ReLU", then "All-ReLU (α=…)" by increasing α); columns
        ``alpha``, ``seeds``, ``best acc %``, ``± std``, ``final acc %``, ``Δ vs ReLU`` (points), and
        ``reported acc %`` where the paper's α is certain (ReLU and All-ReLU α = 0.6; see
        :data:`~swatlib.experiments.truly_sparse_reported.TABLE5`).
    """
    df = summaries(outcomes)
    df = df[(df.status == "ok") & df.variant.map(lambda v: v[1] == "set" and not v[3])]
    rows = []
    for (activation, alpha), group in df.groupby(["activation", df.alpha.fillna(-1.0)], sort=False):
        alpha = None if alpha < 0 else alpha
        rep = _table5_reported(group.variant.iloc[0][2], alpha, reported)
        rows.append({"activation": activation, "alpha": alpha, "seeds": len(group),
                     "best acc %": group.best_test_acc.mean(),
                     "± std": group.best_test_acc.std(ddof=1) if len(group) > 1 else math.nan,
                     "final acc %": group.final_test_acc.mean(), "reported acc %": rep})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values("alpha", na_position="first", key=lambda s: s.astype(float))
    relu = table[table.alpha.isna()]["best acc %"]
    table["Δ vs ReLU"] = table["best acc %"] - (relu.iloc[0] if len(relu) else math.nan)
    cols = ["alpha", "seeds", "best acc %", "± std", "final acc %", "Δ vs ReLU", "reported acc %"]
    return table.set_index("activation")[cols]


def _table5_reported(activation: str, alpha: float | None, reported: dict) -> float:
    if activation == "relu":
        return reported["relu"]
    if activation == "all_relu" and math.isclose(alpha, reported["best_alpha"]):
        return reported["best"]
    return math.nan


def table6(records: Sequence[dict[str, Any]], dataset: str, reported: dict = TABLE6) -> pd.DataFrame:
    """Paper Table 6 from :func:`~swatlib.experiments.truly_sparse.post_training_pruning` records.

    Returns
    -------
    DataFrame
        Indexed by ``threshold`` ("trained", then "5th percentile", ...); columns ``test acc %``,
        ``Δ acc (points)``, ``params``, ``params % of trained``, ``hidden neurons``, ``reported acc %``,
        ``reported params``, ``reported params % of trained``.
    """
    base = next(r for r in records if r["percentile"] is None)
    rep = reported.get(dataset, {})
    rows = []
    for r in records:
        p = r["percentile"]
        if p is None:
            rep_acc, rep_params = rep.get("accuracy", math.nan), rep.get("params", math.nan)
        else:
            rep_acc, rep_params = rep.get("pruned", {}).get(int(p), (math.nan, math.nan))
        rows.append({
            "threshold": "trained" if p is None else f"{p:g}th percentile",
            "test acc %": 100 * r["test_acc"],
            "Δ acc (points)": 100 * (r["test_acc"] - base["test_acc"]),
            "params": r["params"],
            "params % of trained": 100 * r["params"] / base["params"],
            "hidden neurons": "-".join(str(n) for n in r["hidden_neurons"]),
            "reported acc %": rep_acc,
            "reported params": rep_params,
            "reported params % of trained": 100 * rep_params / rep["params"] if rep else math.nan,
        })
    return pd.DataFrame(rows).set_index("threshold")


def relative(size: float, error: float, reference_size: float, reference_error: float) -> tuple[float, float]:
    """``(size / reference_size, error / reference_error)`` — one point of Figure 4.

    Raises
    ------
    ValueError
        If a reference is not positive (a reference with zero error makes relative error undefined).
    """
    if not reference_size > 0 or not reference_error > 0:
        raise ValueError(f"references must be positive, got size {reference_size!r}, error {reference_error!r}")
    return size / reference_size, error / reference_error


def _relative_or_nan(size, error, reference_size, reference_error) -> tuple[float, float]:
    """:func:`relative`, with NaN error where the reference made no error (e.g. a memorised training set)."""
    if reference_error <= 0:
        return size / reference_size, math.nan
    return relative(size, error, reference_size, reference_error)


def relative_size_error(outcomes: Iterable[RunResult], reference: tuple[str, str] = ("dense", "relu")) -> pd.DataFrame:
    """Figure 4: every SET-MLP run's final size and error relative to the dense MLP of its dataset.

    Relative size = parameters at the end / the dense MLP's parameters; relative error =
    (100 − final accuracy) / (100 − the dense MLP's final accuracy), on the training and the test
    split (the paper's panels a and b). Seeds are averaged first. Where the dense MLP made no error
    at all (it memorised the training split), the relative error is NaN. ``reference`` is the
    ``(model, activation)`` of the reference run, as in :func:`variant`.

    Returns
    -------
    DataFrame
        Columns ``dataset, data, activation, IP, relative size, relative train error,
        relative test error``; empty if no dataset has both its SET-MLP and reference runs.
    """
    df = summaries(outcomes)
    df = df[df.status == "ok"]
    if df.empty:
        return pd.DataFrame(columns=["dataset", "data", "activation", "IP", "relative size",
                                     "relative train error", "relative test error"])
    mean = df.groupby(["dataset", "data", "model", "activation", "IP", "variant"], sort=False)[
        ["params_end", "final_train_acc", "final_test_acc"]].mean().reset_index()
    rows = []
    for dataset, group in mean.groupby("dataset", sort=False):
        ref = group[group.variant.map(lambda v: v[1:3] == tuple(reference))]
        if ref.empty:
            continue
        ref = ref.iloc[0]
        for _, row in group[group.variant.map(lambda v: v[1] == "set")].iterrows():
            size, train_err = _relative_or_nan(row.params_end, 100 - row.final_train_acc,
                                               ref.params_end, 100 - ref.final_train_acc)
            _, test_err = _relative_or_nan(row.params_end, 100 - row.final_test_acc,
                                           ref.params_end, 100 - ref.final_test_acc)
            rows.append({"dataset": dataset, "data": row.data, "activation": row.activation, "IP": row.IP,
                         "relative size": size, "relative train error": train_err,
                         "relative test error": test_err})
    return pd.DataFrame(rows)


def reported_relative_size_error(datasets: Iterable[str], reported: dict = TABLE2) -> pd.DataFrame:
    """Figure 4 from the paper's Table 2 (test split, best accuracy), relative to its dense ReLU MLP.

    Datasets whose dense MLP has no reported accuracy (Leukemia) are skipped.
    """
    rows = []
    for dataset in datasets:
        ref = reported.get((dataset, "dense", "relu", False))
        if not ref or ref["accuracy"] is None:
            continue
        for activation in ("relu", "all_relu"):
            for ip in (False, True):
                rep = reported[(dataset, "set", activation, ip)]
                size, err = relative(rep["params_end"], 100 - rep["accuracy"],
                                     ref["params_end"], 100 - ref["accuracy"])
                rows.append({"dataset": dataset, "activation": _ACT[activation], "IP": "yes" if ip else "no",
                             "relative size": size, "relative test error": err})
    return pd.DataFrame(rows)


def curves(outcomes: Iterable[RunResult]) -> pd.DataFrame:
    """Per-epoch records of every finished run, long format.

    Columns: ``dataset, data, label`` (e.g. "SET-MLP All-ReLU (α=0.6) + IP"), ``model, activation,
    IP, variant`` (:func:`variant`: select by it, not by parsing the labels), ``seed, epoch, train_acc, test_acc`` (%), ``train_loss, test_loss, gradient_flow, nnz,
    hidden_neurons`` (total over hidden layers).
    """
    rows = []
    for o in outcomes:
        if not o.ok:
            continue
        spec = o.spec
        for h in o.result["history"]:
            rows.append({
                "dataset": spec["dataset"], "data": o.result.get("dataset_name", spec["dataset"]),
                "label": f"{_model(spec)} {_activation(spec)}" + (" + IP" if spec["importance_pruning"] else ""),
                "model": _model(spec), "activation": _activation(spec),
                "IP": "yes" if spec["importance_pruning"] else "no", "variant": variant(spec),
                "seed": spec["seed"], "epoch": h["epoch"], "train_acc": 100 * h["train_acc"], "test_acc": 100 * h["test_acc"],
                "train_loss": h["train_loss"], "test_loss": h["test_loss"],
                "gradient_flow": h["gradient_flow"], "nnz": h.get("nnz", np.nan),
                "hidden_neurons": sum(h["hidden_neurons"]) if "hidden_neurons" in h else np.nan,
            })
    return pd.DataFrame(rows)


def absent_datasets(outcomes: Iterable[RunResult]) -> list[str]:
    """Datasets of ``outcomes`` that were not run because their files are absent."""
    return sorted({o.spec["dataset"] for o in outcomes if o.status == ABSENT})
