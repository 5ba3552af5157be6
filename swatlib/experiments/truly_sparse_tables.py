"""Tables and figure data of notebooks ``10``–``14`` from finished runs, beside the paper's values.

Every builder takes :class:`~swatlib.experiments.truly_sparse.RunResult` objects (or the records
derived from them) and returns a pandas DataFrame; none of them trains anything, so they are cheap
and unit-tested on tiny synthetic histories. Accuracies are reported in percent, like the paper.

* :func:`summaries` — one row per run: best and final accuracy, parameters, minutes.
* :func:`table2` — paper Table 2: mean (± std over seeds) best test accuracy, final accuracy,
  parameters at start and end, training minutes, and the reported values. A dataset whose files
  are absent keeps its reported values and says ``not run: dataset absent``.
* :func:`table2_claims` — Table 2's claims as differences (All-ReLU − ReLU, IP − no IP, ...),
  computed per seed (paired by seed), then mean ± std.
* :func:`table5` — paper Table 5: the All-ReLU slope sweep against ReLU (Δ paired by seed).
* :func:`table6` — paper Table 6: post-training Importance Pruning without retraining, per seed,
  then mean ± std.
* :func:`relative_size_error` / :func:`reported_relative_size_error` — paper Figure 4: relative
  model size against relative error, both relative to the dense MLP (ReLU) of the same dataset.
* :func:`curves` — per-epoch records (learning curves, gradient flow, Figures 5 and 6);
  :func:`curve_band` — their mean ± std over seeds per epoch.
* :func:`gradient_flow_ratio` / :func:`gradient_flow_summary` — paper Figure 5: All-ReLU ÷ ReLU
  gradient flow per seed and epoch, and its summary over seeds.

**Seeds.** Every "± std" is the sample standard deviation over seeds (``ddof=1``), NaN for a
single seed. A difference between two configurations (All-ReLU − ReLU, a pruned network's loss)
is computed within each seed — both runs share the seed's data order, initial topology and
dropout stream — and only then averaged, so its ± std is the spread of the *paired* difference.
A seed where one of the two runs is missing is left out of that difference (``seeds`` counts the
pairs).

The paper's values are looked up by what a run *is* — its spec's dataset, model, activation and
pruning (:func:`variant`) — never by parsing the labels shown in the tables, so a LeakyReLU run
never sits beside ReLU's reported values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from swatlib.experiments.truly_sparse import ABSENT, RunResult
from swatlib.experiments.truly_sparse_reported import DATASET_NAMES, TABLE2, TABLE5, TABLE6

__all__ = [
    "absent_datasets",
    "curve_band",
    "curves",
    "gradient_flow_ratio",
    "gradient_flow_summary",
    "mean_std",
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

#: Key of :func:`table2`'s ``attrs`` mapping each row to its :func:`variant`.
_VARIANTS = "variants"


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, std, n)`` of the finite ``values``: std with ``ddof=1`` (NaN for fewer than two).

    NaN values (a run that did not happen) are left out and not counted.
    """
    v = np.asarray([float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    return (float(v.mean()) if n else math.nan, float(v.std(ddof=1)) if n > 1 else math.nan, n)


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


def table2_claims(outcomes: Iterable[RunResult], reported: dict = TABLE2) -> pd.DataFrame:
    """The paper's Table 2 claims as differences, ours beside the reported, per dataset that ran.

    From the runs of Table 2 (:func:`~swatlib.experiments.truly_sparse.table2_specs`):
    All-ReLU − ReLU (best accuracy, points, without and with IP), IP − no IP (points, per
    activation), SET-MLP All-ReLU − dense MLP ReLU (points), parameters at the end with IP as %
    of the start, and the SET-MLP's parameters as % of the dense MLP's.

    Each claim is computed **within each seed** (a difference pairs the two runs of that seed),
    then averaged: ``ours`` is the mean over the seeds where both runs finished, ``± std`` the
    sample standard deviation of the per-seed values (``ddof=1``; NaN for one seed), ``seeds``
    their number. ``reported`` is the same claim from the paper's Table 2 (means over its 5
    trials; the paper gives no spread). Where a variant ran with several slopes, the first run of
    each seed in ``outcomes`` stands for it.

    Returns
    -------
    DataFrame
        Indexed by ``dataset, claim``; columns ``ours``, ``± std``, ``seeds``, ``reported``.

    Raises
    ------
    TypeError
        If given a table (e.g. :func:`table2`'s) instead of the runs.
    """
    if isinstance(outcomes, pd.DataFrame):
        raise TypeError("table2_claims takes the runs (a list of RunResult), not a table: the claims are "
                        "computed per seed")
    df = summaries(outcomes)
    ok = df[df.status == "ok"]
    rows = []
    for dataset in dict.fromkeys(df.dataset):
        sub = ok[ok.dataset == dataset]
        if sub.empty:
            continue
        # one row per (variant, seed): the first run of each, as table2 takes the first label
        by_variant = {v: g.drop_duplicates("seed").set_index("seed")
                      for v, g in sub.groupby(sub.variant, sort=False)}

        def ours(model, activation, ip, column):
            group = by_variant.get((dataset, model, activation, ip))
            return pd.Series(dtype=float) if group is None else group[column].astype(float)

        def theirs(model, activation, ip, key):
            return _num(reported.get((dataset, model, activation, ip), {}).get(key))

        def difference(a, b):
            return (ours(*a, "best_test_acc") - ours(*b, "best_test_acc"),
                    theirs(*a, "accuracy") - theirs(*b, "accuracy"))

        def percent(a, a_column, b, b_column):  # summaries() and TABLE2 name the counts alike
            return (100 * ours(*a, a_column) / ours(*b, b_column),
                    100 * theirs(*a, a_column) / theirs(*b, b_column))

        relu, all_relu = ("set", "relu", False), ("set", "all_relu", False)
        relu_ip, all_relu_ip = ("set", "relu", True), ("set", "all_relu", True)
        dense = ("dense", "relu", False)
        claims = {
            "All-ReLU − ReLU, no IP (points)": difference(all_relu, relu),
            "All-ReLU − ReLU, with IP (points)": difference(all_relu_ip, relu_ip),
            "IP − no IP, ReLU (points)": difference(relu_ip, relu),
            "IP − no IP, All-ReLU (points)": difference(all_relu_ip, all_relu),
            "SET All-ReLU − dense ReLU (points)": difference(all_relu, dense),
        }
        for name, pruned in (("ReLU", relu_ip), ("All-ReLU", all_relu_ip)):
            claims[f"params at end with IP, {name} (% of start)"] = percent(pruned, "params_end",
                                                                           pruned, "params_start")
        claims["SET-MLP params (% of dense)"] = percent(all_relu, "params_start", dense, "params_start")
        for claim, (per_seed, paper) in claims.items():
            mean, std, n = mean_std(per_seed.dropna())
            rows.append({"dataset": dataset, "claim": claim, "ours": mean, "± std": std, "seeds": n,
                         "reported": paper})
    if not rows:
        return pd.DataFrame(columns=["ours", "± std", "seeds", "reported"])
    return pd.DataFrame(rows).set_index(["dataset", "claim"])


def _num(value) -> float:
    return math.nan if value is None else float(value)


def table5(outcomes: Iterable[RunResult], reported: dict = TABLE5) -> pd.DataFrame:
    """Paper Table 5: best test accuracy of SET-MLP on one dataset, ReLU and each All-ReLU slope.

    ``Δ vs ReLU`` (points) is computed within each seed — the slope's best accuracy minus that of
    the ReLU run of the same seed — then averaged over the seeds that have both; ``Δ ± std`` is the
    sample standard deviation of those per-seed differences (``ddof=1``; NaN for one seed and for
    the ReLU row itself).

    Returns
    -------
    DataFrame
        Indexed by ``activation`` ("ReLU", then "All-ReLU (α=…)" by increasing α); columns
        ``alpha``, ``seeds``, ``best acc %``, ``± std`` (of the best accuracy over seeds, ddof=1),
        ``final acc %``, ``Δ vs ReLU``, ``Δ ± std``, and ``reported acc %`` where the paper's α is
        certain (ReLU and All-ReLU α = 0.6; see
        :data:`~swatlib.experiments.truly_sparse_reported.TABLE5`).
    """
    df = summaries(outcomes)
    df = df[(df.status == "ok") & df.variant.map(lambda v: v[1] == "set" and not v[3])]
    cols = ["alpha", "seeds", "best acc %", "± std", "final acc %", "Δ vs ReLU", "Δ ± std", "reported acc %"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    relu_runs = df[df.variant.map(lambda v: v[2] == "relu")]
    relu = relu_runs.drop_duplicates("seed").set_index("seed").best_test_acc
    rows = []
    for (activation, alpha), group in df.groupby(["activation", df.alpha.fillna(-1.0)], sort=False):
        alpha = None if alpha < 0 else alpha
        rep = _table5_reported(group.variant.iloc[0][2], alpha, reported)
        best, std, n = mean_std(group.best_test_acc)
        if alpha is None and group.variant.iloc[0][2] == "relu":
            delta, delta_std = 0.0, math.nan
        else:
            per_seed = (group.drop_duplicates("seed").set_index("seed").best_test_acc - relu).dropna()
            delta, delta_std, _ = mean_std(per_seed)
        rows.append({"activation": activation, "alpha": alpha, "seeds": n, "best acc %": best, "± std": std,
                     "final acc %": group.final_test_acc.mean(), "Δ vs ReLU": delta, "Δ ± std": delta_std,
                     "reported acc %": rep})
    table = pd.DataFrame(rows)
    table = table.sort_values("alpha", na_position="first", key=lambda s: s.astype(float))
    return table.set_index("activation")[cols]


def _table5_reported(activation: str, alpha: float | None, reported: dict) -> float:
    if activation == "relu":
        return reported["relu"]
    if activation == "all_relu" and math.isclose(alpha, reported["best_alpha"]):
        return reported["best"]
    return math.nan


def table6(records: Sequence[dict[str, Any]] | Mapping[int, Sequence[dict[str, Any]]], dataset: str,
           reported: dict = TABLE6) -> pd.DataFrame:
    """Paper Table 6 from :func:`~swatlib.experiments.truly_sparse.post_training_pruning` records.

    ``records`` are one trained network's records, or ``{seed: records}`` for several. Every
    quantity is computed per seed against that seed's trained network (Δ accuracy, parameters
    left), then averaged; each ``± std`` column is the sample standard deviation over seeds
    (``ddof=1``; NaN for one seed). ``hidden neurons`` gives the mean per hidden layer, rounded.

    Returns
    -------
    DataFrame
        Indexed by ``threshold`` ("trained", then "5th percentile", ...); columns ``seeds``,
        ``test acc %``, ``± std``, ``Δ acc (points)``, ``Δ ± std``, ``params``,
        ``params % of trained``, ``params % ± std``, ``hidden neurons``, ``reported acc %``,
        ``reported params``, ``reported params % of trained``.
    """
    by_seed = records if isinstance(records, Mapping) else {0: records}
    per_seed: dict[Any, list[dict[str, Any]]] = {}
    for seed, recs in by_seed.items():
        base = next(r for r in recs if r["percentile"] is None)
        for r in recs:
            per_seed.setdefault(r["percentile"], []).append({
                "seed": seed, "test acc %": 100 * r["test_acc"],
                "Δ": 100 * (r["test_acc"] - base["test_acc"]), "params": r["params"],
                "params %": 100 * r["params"] / base["params"], "hidden": list(r["hidden_neurons"])})
    rep = reported.get(dataset, {})
    rows = []
    for p, runs in per_seed.items():
        if p is None:
            rep_acc, rep_params = rep.get("accuracy", math.nan), rep.get("params", math.nan)
        else:
            rep_acc, rep_params = rep.get("pruned", {}).get(int(p), (math.nan, math.nan))
        acc, acc_std, n = mean_std(r["test acc %"] for r in runs)
        delta, delta_std, _ = mean_std(r["Δ"] for r in runs)
        share, share_std, _ = mean_std(r["params %"] for r in runs)
        hidden = np.mean([r["hidden"] for r in runs], axis=0)
        rows.append({
            "threshold": "trained" if p is None else f"{p:g}th percentile",
            "seeds": n, "test acc %": acc, "± std": acc_std,
            "Δ acc (points)": delta, "Δ ± std": delta_std,
            "params": float(np.mean([r["params"] for r in runs])),
            "params % of trained": share, "params % ± std": share_std,
            "hidden neurons": "-".join(f"{h:.0f}" for h in hidden),
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
    split (the paper's panels a and b). Each seed's run is compared with the reference run of the
    same seed, then the ratios are averaged over seeds, with their sample standard deviation
    (``ddof=1``, NaN for one seed). Where the dense MLP made no error at all (it memorised the
    training split), the relative error is NaN — and so is its mean if that happened in any seed.
    ``reference`` is the ``(model, activation)`` of the reference run, as in :func:`variant`.

    Returns
    -------
    DataFrame
        Columns ``dataset, data, activation, IP, seeds, relative size, relative size ± std,
        relative train error, relative train error ± std, relative test error,
        relative test error ± std``; empty if no dataset has both its SET-MLP and reference runs.
    """
    quantities = ["relative size", "relative train error", "relative test error"]
    columns = ["dataset", "data", "activation", "IP", "seeds",
               *[c for q in quantities for c in (q, f"{q} ± std")]]
    df = summaries(outcomes)
    df = df[df.status == "ok"]
    per_seed = []
    for (dataset, seed), group in df.groupby(["dataset", "seed"], sort=False):
        ref = group[group.variant.map(lambda v: v[1:3] == tuple(reference))]
        if ref.empty:
            continue
        ref = ref.iloc[0]
        for _, row in group[group.variant.map(lambda v: v[1] == "set")].iterrows():
            size, train_err = _relative_or_nan(row.params_end, 100 - row.final_train_acc,
                                               ref.params_end, 100 - ref.final_train_acc)
            _, test_err = _relative_or_nan(row.params_end, 100 - row.final_test_acc,
                                           ref.params_end, 100 - ref.final_test_acc)
            per_seed.append({"dataset": dataset, "data": row.data, "activation": row.activation, "IP": row.IP,
                             "seed": seed, "relative size": size, "relative train error": train_err,
                             "relative test error": test_err})
    if not per_seed:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in pd.DataFrame(per_seed).groupby(["dataset", "data", "activation", "IP"], sort=False):
        row = dict(zip(["dataset", "data", "activation", "IP"], key), seeds=len(group))
        for q in quantities:
            values = group[q].astype(float)
            row[q] = values.mean(skipna=False)
            row[f"{q} ± std"] = values.std(ddof=1, skipna=False) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)[columns]


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


def curve_band(curves: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean and sample std (``ddof=1``) of ``value`` over seeds, per ``by`` group and epoch.

    From :func:`curves`' long format. Returns ``by``, ``epoch``, ``mean``, ``std`` (NaN where one
    seed ran) and ``seeds``, in the order the groups first appear.
    """
    keys = [*by, "epoch"]
    if curves.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "seeds"])
    grouped = curves.groupby(keys, sort=False)[value]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "seeds": grouped.count()})
    return out.reset_index()


def _flow_variant(v: tuple) -> bool:
    return v[1] == "set" and not v[3] and v[2] in ("relu", "all_relu")


def gradient_flow_ratio(curves: pd.DataFrame) -> pd.DataFrame:
    """Figure 5's ratio: All-ReLU ÷ ReLU gradient flow of the SET-MLPs without pruning, per seed.

    The two runs of a seed share its data order and initial topology, so the ratio is taken
    within each seed and epoch (seeds or epochs with only one of the two runs are left out).

    Returns
    -------
    DataFrame
        Columns ``dataset, data, seed, epoch, all_relu, relu`` (gradient flow) and ``ratio``.
    """
    columns = ["dataset", "data", "seed", "epoch", "all_relu", "relu", "ratio"]
    if curves.empty:
        return pd.DataFrame(columns=columns)
    sub = curves[curves.variant.map(_flow_variant)].copy()
    sub["act"] = sub.variant.map(lambda v: v[2])
    # one run per (dataset, seed, activation): the first, as elsewhere
    sub = sub.drop_duplicates(["dataset", "seed", "act", "epoch"])
    wide = sub.pivot_table(index=["dataset", "data", "seed", "epoch"], columns="act", values="gradient_flow",
                           sort=False)
    if not {"all_relu", "relu"} <= set(wide.columns):
        return pd.DataFrame(columns=columns)
    wide = wide.dropna(subset=["all_relu", "relu"]).reset_index()
    wide["ratio"] = wide["all_relu"] / wide["relu"]
    return wide[columns]


def gradient_flow_summary(ratio: pd.DataFrame) -> pd.DataFrame:
    """Figure 5 in numbers, from :func:`gradient_flow_ratio`: per dataset, over seeds.

    * ``epochs with All-ReLU > ReLU in every seed`` — epochs at which the ratio exceeds 1 in
      every seed (a conservative count: with one seed, the plain count);
    * ``epochs with All-ReLU > ReLU, mean over seeds`` and its ``± std`` — the count per seed;
    * ``median ratio All-ReLU / ReLU`` — each seed's median over epochs, averaged over seeds;
    * ``ratio, first epoch`` / ``ratio, last epoch`` — averaged over seeds;

    each ``± std`` the sample standard deviation over seeds (``ddof=1``; NaN for one seed).

    Returns
    -------
    DataFrame
        Indexed by ``dataset`` (its display name); columns ``seeds``, ``epochs`` and the above.
    """
    rows = []
    for dataset, sub in ratio.groupby("dataset", sort=False):
        wide = sub.pivot(index="epoch", columns="seed", values="ratio").sort_index()
        epochs = wide.dropna().index  # epochs every seed reached
        per_seed = {"count": [], "median": [], "first": [], "last": []}
        for seed in wide.columns:
            r = wide[seed].dropna()
            per_seed["count"].append(int((r > 1).sum()))
            per_seed["median"].append(float(np.median(r)))
            per_seed["first"].append(float(r.iloc[0]))
            per_seed["last"].append(float(r.iloc[-1]))
        row = {"dataset": DATASET_NAMES.get(dataset, dataset), "seeds": wide.shape[1], "epochs": len(epochs),
               "epochs with All-ReLU > ReLU in every seed": int((wide.loc[epochs] > 1).all(axis=1).sum())}
        for key, name in (("count", "epochs with All-ReLU > ReLU, mean over seeds"),
                          ("median", "median ratio All-ReLU / ReLU"), ("first", "ratio, first epoch"),
                          ("last", "ratio, last epoch")):
            mean, std, _ = mean_std(per_seed[key])
            row[name], row[f"{name} ± std"] = mean, std
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("dataset")


def absent_datasets(outcomes: Iterable[RunResult]) -> list[str]:
    """Datasets of ``outcomes`` that were not run because their files are absent."""
    return sorted({o.spec["dataset"] for o in outcomes if o.status == ABSENT})
