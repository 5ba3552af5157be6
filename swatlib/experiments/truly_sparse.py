"""The runs behind notebooks ``10``–``14``: SET-MLP with ReLU / All-ReLU, Importance Pruning, dense MLP.

One function turns a *run spec* — a plain dict holding every hyper-parameter of one training run —
into a cached result (:func:`run`). Notebooks build specs with :func:`make_spec` from the paper's
settings (:data:`~swatlib.experiments.truly_sparse_reported.PAPER_SETTINGS`) plus the named
``overrides`` of their profile, so the ``paper`` profile is the paper by construction and a
smaller profile says exactly what it changed. Every notebook that needs "SET-MLP All-ReLU on
Fashion-MNIST, seed 0" builds the identical spec, so that run trains once and is shared by
Table 2, Table 5, Table 6 and Figures 4–6.

A cached run holds

* ``result`` (JSON): the per-epoch history of :func:`swatlib.train.fit` and a summary — best and
  final accuracy, parameters at the start and the end, hidden widths, seconds;
* ``tensors`` (SET-MLPs only): the final topology and weights (``model``: per layer int32
  ``rows``/``cols``, ``values``, ``bias``), from which :func:`restore_model` rebuilds the trained
  network (Table 6), and small topology ``snapshots`` (per input feature: number and total |w|
  of its connections; per hidden neuron: in- and out-degree), at initialisation and after
  every epoch's training (before SET evolution), for notebook ``14_topology``.

A dataset whose files are absent gives a :class:`RunResult` with status
``"not run: dataset absent"`` instead of an error, so tables can show the row. Table 2 shows each
run's training minutes beside the paper's; only the ``paper`` profile's are comparable with them (its
settings are the paper's), so only ``paper`` runs are *timed*: :func:`run_many` never trains them
beside others (:mod:`~swatlib.experiments.runs`). The smaller profiles' runs train in parallel with
``--jobs``, and their minutes say so in the notebook.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from swatlib.checks import check_choice, check_choices, check_seeds
from swatlib.experiments import runs
from swatlib.experiments.runs import ABSENT
from swatlib.experiments.truly_sparse_profiles import PROFILE_OVERRIDES
from swatlib.experiments.truly_sparse_reported import COMMON_SETTINGS, DATASET_NAMES, PAPER_SETTINGS
from swatlib.importance import prune_neurons
from swatlib.models import MLP, SparseMLP
from swatlib.optim import make_optimizer
from swatlib.sparse import SparseLinear
from swatlib.topology import SET, ImportancePruning, evolvable_layers, pruning_epochs
from swatlib.train import evaluate, fit

__all__ = [
    "ABSENT",
    "EXPERIMENT",
    "FAMILY",
    "MAX_SNAPSHOTS",
    "OVERRIDABLE",
    "RunResult",
    "build_model",
    "changes",
    "describe",
    "ip_events",
    "load_data",
    "make_spec",
    "post_training_pruning",
    "restore_model",
    "run",
    "run_many",
    "settings",
    "slope_specs",
    "snapshot_epochs",
    "table2_specs",
    "topology_snapshot",
    "variant_label",
]

#: Name (and format version) of these runs in the results cache.
EXPERIMENT = "truly_sparse/run-v1"

#: Settings a profile may override, per dataset (see :func:`settings`).
OVERRIDABLE = tuple(sorted(set(COMMON_SETTINGS) | set(PAPER_SETTINGS["fashion-mnist"])))

#: Keep at most about this many topology snapshots per run (every epoch for short runs).
MAX_SNAPSHOTS = 50

_ACTIVATION_NAMES = {"relu": "ReLU", "all_relu": "All-ReLU", "leaky_relu": "LeakyReLU", "srelu": "SReLU"}


def settings(dataset: str, overrides: str | dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The paper's settings for ``dataset`` with a profile's overrides for it applied.

    Parameters
    ----------
    dataset
        One of the keys of :data:`PAPER_SETTINGS`.
    overrides
        The name of a profile's overrides — a key of
        :data:`~swatlib.experiments.truly_sparse_profiles.PROFILE_OVERRIDES`: ``"paper"``,
        ``"quick"`` or ``"smoke"`` — or the overrides themselves, ``{dataset: {setting: value}}``;
        other datasets' entries are ignored. Valid settings are :data:`OVERRIDABLE` (e.g.
        ``subset``, ``epochs``, ``lr``, ``sizes``, ``ip_start``). ``None``: the paper's settings.

    Raises
    ------
    ValueError
        For an unknown dataset, overrides name or setting (the message lists the valid ones).
    """
    check_choice(dataset, PAPER_SETTINGS, "dataset")
    if isinstance(overrides, str):
        overrides = PROFILE_OVERRIDES[check_choice(overrides, PROFILE_OVERRIDES, "overrides")]
    own = dict((overrides or {}).get(dataset) or {})
    check_choices(own, OVERRIDABLE, f"the settings overridden for {dataset}")
    merged = {**PAPER_SETTINGS[dataset], **own}
    if merged["subset"] is not None and not isinstance(merged["subset"], int):
        merged["subset"] = [int(v) for v in merged["subset"]]
    merged["sizes"] = [int(v) for v in merged["sizes"]]
    for key in ("lr", "momentum", "weight_decay", "dropout", "zeta", "ip_percentile", "alpha", "epsilon"):
        merged[key] = float(merged[key])
    return merged


def make_spec(
    dataset: str,
    model: str,
    activation: str,
    importance_pruning: bool,
    *,
    seed: int,
    profile: str,
    overrides: dict[str, dict[str, Any]] | None = None,
    alpha: float | None = None,
) -> dict[str, Any]:
    """The full, canonical config of one training run (the results-cache key).

    Parameters
    ----------
    dataset
        ``fashion-mnist``, ``madelon``, ``cifar10``, ``higgs``, ``leukemia`` (Table 2), or
        ``madelon-65536`` (Table 4's smallest network, for WASAP-SGD at scale).
    model
        ``"set"`` (truly sparse SET-MLP) or ``"dense"`` (dense MLP of the same widths).
    activation
        ``"relu"`` or ``"all_relu"`` (also ``"leaky_relu"``).
    importance_pruning
        Prune neurons during training (SET-MLP only) on the dataset's ``ip_*`` schedule.
    seed, profile
        The trial's seed and the profile that asked for it (part of the key).
    overrides
        The profile's ``{dataset: {setting: value}}`` (see :func:`settings`).
    alpha
        All-ReLU / LeakyReLU slope; default the dataset's (paper Table 7). Ignored for ReLU.

    Raises
    ------
    ValueError
        On an unknown model, activation or setting, or pruning asked of a dense model.
    """
    check_choice(model, ("set", "dense"), "model")
    check_choice(activation, ("relu", "all_relu", "leaky_relu"), "activation")
    if model == "dense" and importance_pruning:
        raise ValueError("Importance Pruning applies to SET-MLPs only")
    s = settings(dataset, overrides)
    sparse = model == "set"
    ip = None
    if importance_pruning:
        ip = {"start_epoch": int(s["ip_start"]), "every": int(s["ip_every"]),
              "percentile": s["ip_percentile"], "mode": s["ip_mode"]}
    return {
        "experiment": EXPERIMENT,
        "dataset": dataset,
        "subset": s["subset"],
        "model": "set-mlp" if sparse else "dense-mlp",
        "sizes": s["sizes"],
        "activation": activation,
        "alpha": None if activation == "relu" else float(s["alpha"] if alpha is None else alpha),
        "epsilon": s["epsilon"] if sparse else None,
        "init": s["init"],
        "dropout": s["dropout"],
        "optimizer": s["optimizer"],
        "lr": s["lr"] if sparse or s["dense_lr"] is None else float(s["dense_lr"]),
        "momentum": s["momentum"],
        "weight_decay": s["weight_decay"],
        "batch_size": int(s["batch_size"]),
        "epochs": int(s["epochs"]),
        "zeta": s["zeta"] if sparse else None,
        "regrow_init": s["regrow_init"] if sparse else None,
        "importance_pruning": ip,
        "seed": int(seed),
        "profile": profile,
    }


def variant_label(spec: dict[str, Any], *, with_alpha: bool = True) -> str:
    """Human-readable name of a spec's model, e.g. ``"SET-MLP All-ReLU (α=0.6) + IP"``."""
    name = "SET-MLP" if spec["model"] == "set-mlp" else "Dense MLP"
    act = _ACTIVATION_NAMES.get(spec["activation"], spec["activation"])
    if with_alpha and spec["alpha"] is not None:
        act += f" (α={spec['alpha']:g})"
    return f"{name} {act}" + (" + IP" if spec["importance_pruning"] else "")


def table2_specs(
    datasets: Iterable[str],
    *,
    seeds: Sequence[int],
    profile: str,
    overrides: dict[str, dict[str, Any]] | None = None,
    variants: Iterable[tuple[str, str, bool]] | None = None,
) -> list[dict[str, Any]]:
    """Specs of Table 2: every dataset × variant (default: the paper's six) × seed."""
    from swatlib.experiments.truly_sparse_reported import VARIANTS

    variants, seeds = list(VARIANTS if variants is None else variants), check_seeds(seeds)
    return [make_spec(d, m, a, ip, seed=seed, profile=profile, overrides=overrides)
            for d in datasets for (m, a, ip) in variants for seed in seeds
            if m != "dense" or settings(d, overrides)["run_dense"]]


def slope_specs(
    dataset: str,
    alphas: Iterable[float],
    *,
    seeds: Sequence[int],
    profile: str,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Specs of Table 5: SET-MLP with ReLU, then All-ReLU at each slope, without pruning."""
    seeds = check_seeds(seeds)
    specs = [make_spec(dataset, "set", "relu", False, seed=s, profile=profile, overrides=overrides)
             for s in seeds]
    return specs + [make_spec(dataset, "set", "all_relu", False, seed=s, profile=profile,
                              overrides=overrides, alpha=float(a))
                    for a in alphas for s in seeds]


def ip_events(setting: dict[str, Any]) -> list[int]:
    """Epochs at which Importance Pruning fires under ``setting`` (see :func:`settings`)."""
    return pruning_epochs(int(setting["ip_start"]), int(setting["ip_every"]), int(setting["epochs"]))


def changes(datasets: Iterable[str], overrides: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """What a profile changed from the paper: one record per (dataset, setting) that differs.

    Two derived rows per dataset make the pruning schedule concrete: the number of pruning events
    and the largest fraction of hidden neurons that can survive them, ``(1 − p/100)^events``
    (every event removes at least the p % least important neurons of each layer).
    """
    rows = []
    for dataset in datasets:
        paper, ours = settings(dataset), settings(dataset, overrides)
        for key in OVERRIDABLE:
            if paper[key] != ours[key]:
                rows.append({"dataset": dataset, "setting": key, "paper": _show(key, paper[key]),
                             "this profile": _show(key, ours[key])})
        for name, value in (("paper", paper), ("this profile", ours)):
            value["_events"] = len(ip_events(value))
            value["_survive"] = (1 - value["ip_percentile"] / 100) ** value["_events"]
        rows.append({"dataset": dataset, "setting": "IP events (derived)", "paper": paper["_events"],
                     "this profile": ours["_events"]})
        rows.append({"dataset": dataset, "setting": "neurons left after IP, at most (derived)",
                     "paper": f"{paper['_survive']:.2%}", "this profile": f"{ours['_survive']:.2%}"})
    return rows


def _show(key: str, value: Any) -> str:
    if value is None:
        return {"subset": "full splits", "dense_lr": "same as lr"}.get(key, "none")
    return str(value)


class RunResult(runs.RunResult):
    """One run: its spec, ``status`` (``"ok"`` or :data:`ABSENT`) and, if it ran, its cached output."""

    @property
    def label(self) -> str:
        """The spec's model in words (:func:`variant_label`)."""
        return variant_label(self.spec)


def describe(spec: dict[str, Any]) -> str:
    """One-line name of a run, e.g. ``"Fashion-MNIST SET-MLP All-ReLU (α=0.6) + IP seed 0"``."""
    return f"{DATASET_NAMES.get(spec['dataset'], spec['dataset'])} {variant_label(spec)} seed {spec['seed']}"


def load_data(spec: dict[str, Any]):
    """The dataset of ``spec`` (memoised within the process; raises ``DatasetNotFoundError``)."""
    return runs.load_dataset(spec["dataset"], spec["subset"])


def build_model(spec: dict[str, Any], generator: torch.Generator | None = None,
                sizes: Sequence[int] | None = None) -> torch.nn.Module:
    """The untrained network of ``spec`` (``sizes`` replaces the widths, e.g. after pruning)."""
    sizes = list(spec["sizes"] if sizes is None else sizes)
    alpha = 0.0 if spec["alpha"] is None else spec["alpha"]
    if spec["model"] == "set-mlp":
        return SparseMLP(sizes, epsilon=spec["epsilon"], activation=spec["activation"], alpha=alpha,
                         dropout=spec["dropout"], init=spec["init"], generator=generator)
    return MLP(sizes, activation=spec["activation"], alpha=alpha, dropout=spec["dropout"],
               init=spec["init"], generator=generator)


def snapshot_epochs(epochs: int, limit: int = MAX_SNAPSHOTS) -> list[int]:
    """Epochs whose topology is recorded: 0 (initialisation), every ``ceil(epochs/limit)``-th, the last."""
    step = max(1, math.ceil(epochs / limit))
    chosen = list(range(0, epochs + 1, step))
    if chosen[-1] != epochs:
        chosen.append(epochs)
    return chosen


@torch.no_grad()
def topology_snapshot(model: SparseMLP) -> dict[str, Any]:
    """Small summary of a SET-MLP's topology (no dense matrix).

    Returns
    -------
    dict
        ``input_degree`` (int32, connections of each input feature into the first layer),
        ``input_strength`` (float32, their total |w|), and per hidden layer ``hidden_in_degree`` /
        ``hidden_out_degree`` (int32 per neuron: connections arriving from the layer below /
        leaving to the layer above).
    """
    linears = list(model.linears)
    first = linears[0]
    _, cols, values = first.connections()
    input_degree = torch.bincount(cols, minlength=first.in_features).to(torch.int32)
    strength = torch.zeros(first.in_features, dtype=torch.float64).index_add_(
        0, cols, values.abs().to(torch.float64)).to(torch.float32)
    hidden_in, hidden_out = [], []
    for below, above in zip(linears[:-1], linears[1:]):
        rows_b, _, _ = below.connections()
        hidden_in.append(torch.bincount(rows_b, minlength=below.out_features).to(torch.int32))
        if isinstance(above, SparseLinear):
            _, cols_a, _ = above.connections()
            hidden_out.append(torch.bincount(cols_a, minlength=above.in_features).to(torch.int32))
        else:  # a dense output layer: every hidden neuron feeds every output
            hidden_out.append(torch.full((above.in_features,), above.out_features, dtype=torch.int32))
    return {"input_degree": input_degree, "input_strength": strength,
            "hidden_in_degree": hidden_in, "hidden_out_degree": hidden_out}


class _Recorder:
    """Snapshots the topology at chosen epochs (``fit`` calls it after each epoch's training)."""

    def __init__(self, model, epochs: Sequence[int]) -> None:
        self.model = model
        self.epochs = set(epochs)
        self.snapshots: dict[int, dict[str, Any]] = {}

    def __call__(self, epoch: int) -> None:
        if epoch in self.epochs:
            self.snapshots[epoch] = topology_snapshot(self.model)


@torch.no_grad()
def _model_tensors(model: SparseMLP) -> dict[str, Any]:
    layers = []
    for layer in model.linears:
        rows, cols, values = layer.connections()
        layers.append({"rows": rows.to(torch.int32), "cols": cols.to(torch.int32),
                       "values": values.clone(), "bias": layer.bias.detach().clone()})
    sizes = [model.linears[0].in_features] + [l.out_features for l in model.linears]
    return {"sizes": sizes, "layers": layers}


def _compute(spec: dict[str, Any], log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    data = load_data(spec)
    torch.manual_seed(spec["seed"])  # dropout masks come from the global generator
    generator = torch.Generator().manual_seed(spec["seed"])
    model = build_model(spec, generator)
    sparse = spec["model"] == "set-mlp"
    start = {"params": int(model.n_params), "nnz": int(model.nnz), "hidden": list(model.hidden_neurons)}
    optimizer = make_optimizer(spec["optimizer"], model.parameters(), lr=spec["lr"],
                               momentum=spec["momentum"], weight_decay=spec["weight_decay"])
    ip = spec["importance_pruning"]
    topology = []  # Importance Pruning before SET at the end of an epoch, as the authors do
    if ip:
        topology.append(ImportancePruning(model, start_epoch=ip["start_epoch"], every=ip["every"],
                                          percentile=ip["percentile"], mode=ip["mode"],
                                          optimizer=optimizer))
    if sparse:
        topology.append(SET(evolvable_layers(model), zeta=spec["zeta"], regrow_init=spec["regrow_init"],
                            until=spec["epochs"] - 1, optimizer=optimizer, generator=generator))
    recorder = _Recorder(model, snapshot_epochs(spec["epochs"]) if sparse else [])
    recorder(0)
    wall = time.perf_counter()
    history = fit(model, data, optimizer, epochs=spec["epochs"], batch_size=spec["batch_size"],
                  generator=generator, label=describe(spec), log=log, topology=topology, on_epoch_end=recorder)
    wall = time.perf_counter() - wall
    # The last pruning happens after the last evaluation: measure the network that is handed back.
    final_train_loss, final_train_acc = evaluate(model, data.x_train, data.y_train)
    final_test_loss, final_test_acc = evaluate(model, data.x_test, data.y_test)
    best = max(history, key=lambda r: r["test_acc"])
    result = {
        "history": history,
        "dataset_name": data.name,
        "dataset_source": data.source,
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "params_start": start["params"],
        "nnz_start": start["nnz"],
        "hidden_start": start["hidden"],
        "params_end": int(model.n_params),
        "nnz_end": int(model.nnz),
        "hidden_end": list(model.hidden_neurons),
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "final_test_acc": final_test_acc,
        "final_test_loss": final_test_loss,
        "final_train_acc": final_train_acc,
        "final_train_loss": final_train_loss,
        "train_seconds": sum(r["seconds"] + r["topology_seconds"] for r in history),
        "eval_seconds": sum(r["eval_seconds"] for r in history),
        "wall_seconds": wall,
        "threads": torch.get_num_threads(),
    }
    if not sparse:
        return result, None
    epochs = sorted(recorder.snapshots)
    snaps = [recorder.snapshots[e] for e in epochs]
    tensors = {
        "model": _model_tensors(model),
        "snapshots": {
            "epochs": torch.tensor(epochs, dtype=torch.int32),
            "input_degree": torch.stack([s["input_degree"] for s in snaps]),
            "input_strength": torch.stack([s["input_strength"] for s in snaps]),
            "hidden_in_degree": [s["hidden_in_degree"] for s in snaps],
            "hidden_out_degree": [s["hidden_out_degree"] for s in snaps],
        },
    }
    return result, tensors


def _reports_its_time(spec: dict[str, Any]) -> bool:
    """A ``paper`` run: Table 2 shows its training minutes beside the paper's (notebook 10)."""
    return spec["profile"] == "paper"


#: How these runs are computed and reported (:mod:`~swatlib.experiments.runs`): an absent dataset
#: is a result, and the ``paper`` profile's runs are timed.
FAMILY = runs.Family(compute=_compute, describe=describe, result_type=RunResult,
                     absent_is_a_result=True, is_timed=_reports_its_time)


def run(spec: dict[str, Any], *, log: Callable[[str], None] = print) -> RunResult:
    """Train ``spec`` (or fetch it from the results cache).

    Returns
    -------
    RunResult
        ``status="ok"`` with ``result`` and ``tensors``, or ``status=ABSENT`` with the loader's
        message if the dataset's files are missing (nothing is cached then).
    """
    return runs.run(FAMILY, spec, log=log)


def run_many(specs: Iterable[dict[str, Any]], *, log: Callable[[str], None] = print,
             jobs: int | str | None = None) -> list[RunResult]:
    """Every spec's result in order (:func:`swatlib.experiments.runs.run_many`); a dataset found
    absent once is not looked for again. The runs are timed, so they train in this process,
    one after the other, whatever ``jobs`` says."""
    return runs.run_many(FAMILY, specs, log=log, jobs=jobs)


def restore_model(outcome: RunResult) -> SparseMLP:
    """Rebuild the trained SET-MLP of a finished run from its cached tensors (eval mode)."""
    if not outcome.ok or outcome.tensors is None or "model" not in outcome.tensors:
        raise ValueError(f"{outcome.label}: no trained SET-MLP stored (status {outcome.status!r})")
    saved = outcome.tensors["model"]
    model = build_model(outcome.spec, torch.Generator().manual_seed(0), sizes=saved["sizes"])
    with torch.no_grad():
        for layer, state in zip(model.linears, saved["layers"]):
            layer.set_connections(state["rows"].to(torch.int64), state["cols"].to(torch.int64),
                                  state["values"].to(layer.values.dtype))
            layer.bias.copy_(state["bias"])
    return model.eval()


def post_training_pruning(outcome: RunResult, percentiles: Iterable[float]) -> list[dict[str, Any]]:
    """Paper Table 6: prune the trained network once at each percentile, no retraining.

    Each percentile starts from a fresh copy of the trained network (restored from the cache), so
    the rows are independent. The first record (``percentile`` None) is the unpruned network.

    Returns
    -------
    list of dict
        ``percentile, test_acc, train_acc, params, hidden_neurons, removed`` (neurons per layer).
    """
    data = load_data(outcome.spec)
    trained = restore_model(outcome)
    records = []
    for percentile in [None, *percentiles]:
        model = copy.deepcopy(trained)
        removed = [] if percentile is None else prune_neurons(model, float(percentile))
        _, test_acc = evaluate(model, data.x_test, data.y_test)
        _, train_acc = evaluate(model, data.x_train, data.y_train)
        records.append({"percentile": percentile, "test_acc": test_acc, "train_acc": train_acc,
                        "params": int(model.n_params), "hidden_neurons": list(model.hidden_neurons),
                        "removed": removed})
    return records
