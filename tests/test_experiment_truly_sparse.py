"""Truly Sparse experiments (notebooks 10-14): specs and cache keys, tables, the absent-dataset path.

Nothing here trains more than a few steps of a tiny network; the table builders run on synthetic
histories.
"""

import math

import pytest

from swatlib.cache import config_key
from swatlib.data import DatasetNotFoundError
from swatlib.experiments import runs as experiment_runs
from swatlib.experiments import truly_sparse as ts
from swatlib.experiments import truly_sparse_tables as tables
from swatlib.experiments.truly_sparse_reported import DATASETS, PAPER_SETTINGS, TABLE2, TABLE5, TABLE6, VARIANTS

TINY = {"fashion-mnist": {"subset": [64, 32], "sizes": [784, 16, 16, 16, 10], "epochs": 2,
                          "ip_start": 1, "ip_every": 1}}


def _spec(**kw):
    args = dict(dataset="fashion-mnist", model="set", activation="all_relu", importance_pruning=False,
                seed=0, profile="test", overrides=TINY)
    args.update(kw)
    return ts.make_spec(args.pop("dataset"), args.pop("model"), args.pop("activation"),
                        args.pop("importance_pruning"), **args)


def _history(accs, *, nnz=100, hidden=(4, 4), flow=1.0):
    return [dict(epoch=i + 1, train_loss=1.0, train_acc=a + 0.05, test_loss=1.0, test_acc=a, seconds=6.0,
                 eval_seconds=1.0, topology_seconds=0.0, gradient_flow=flow * (i + 1), nnz=nnz,
                 hidden_neurons=list(hidden)) for i, a in enumerate(accs)]


def _outcome(spec, accs, *, params_start=1000, params_end=1000, final=None, final_train=None, flow=1.0):
    history = _history(accs, flow=flow)
    result = {"history": history, "dataset_name": "Synthetic", "n_train": 10, "n_test": 10,
              "params_start": params_start, "params_end": params_end,
              "final_test_acc": accs[-1] if final is None else final,
              "final_train_acc": (accs[-1] + 0.05) if final_train is None else final_train,
              "train_seconds": sum(h["seconds"] for h in history)}
    return ts.RunResult(spec, "ok", result, None)


# --------------------------------------------------------------------------- settings and specs
def test_paper_settings_are_table7_and_table2():
    fm = ts.settings("fashion-mnist")
    assert fm["sizes"] == [784, 1000, 1000, 1000, 10] and fm["epsilon"] == 20 and fm["lr"] == 0.01
    assert fm["batch_size"] == 128 and fm["init"] == "he_uniform" and fm["alpha"] == 0.6
    assert fm["epochs"] == 500 and fm["ip_start"] == 200 and fm["subset"] is None
    mad = ts.settings("madelon")
    assert (mad["sizes"], mad["epsilon"], mad["batch_size"], mad["init"], mad["alpha"]) == (
        [500, 400, 100, 400, 2], 10, 32, "normal", 0.5)
    assert ts.settings("leukemia")["run_dense"] is False


def test_overrides_apply_and_unknown_settings_are_named():
    s = ts.settings("fashion-mnist", {"fashion-mnist": {"epochs": 3, "lr": 0.05}, "madelon": {"epochs": 1}})
    assert s["epochs"] == 3 and s["lr"] == 0.05 and s["batch_size"] == 128
    with pytest.raises(ValueError, match="the settings overridden for fashion-mnist must be among .*epochs.*; unknown: 'epoch'"):
        ts.settings("fashion-mnist", {"fashion-mnist": {"epoch": 3}})
    with pytest.raises(ValueError, match="dataset must be one of .*, got 'mnist'"):
        ts.settings("mnist")


@pytest.mark.parametrize("change", [
    {"seed": 1}, {"profile": "other"}, {"activation": "relu"}, {"importance_pruning": True},
    {"model": "dense"}, {"alpha": 0.3}, {"dataset": "madelon"},
    *({"overrides": {"fashion-mnist": {**TINY["fashion-mnist"], key: value}}} for key, value in [
        ("subset", [64, 16]), ("sizes", [784, 16, 16, 10]), ("epsilon", 10), ("init", "xavier"),
        ("dropout", 0.2), ("optimizer", "torch"), ("lr", 0.02), ("weight_decay", 1e-4),
        ("momentum", 0.8), ("batch_size", 32), ("epochs", 3), ("zeta", 0.2), ("regrow_init", "zero"),
        ("ip_start", 2), ("ip_every", 2), ("ip_percentile", 10.0), ("ip_mode", "zero_incoming"),
    ]),
])
def test_cache_key_changes_with_every_hyper_parameter(change):
    base = {"importance_pruning": True}  # so that the ip_* settings are part of the spec
    if change.get("model") == "dense":
        changed = {**change, "importance_pruning": False}
    elif "importance_pruning" in change:
        base, changed = {"importance_pruning": False}, change
    else:
        changed = {**base, **change}
    assert config_key(_spec(**base)) != config_key(_spec(**changed))


def test_same_settings_give_the_same_spec_however_spelt():
    # int vs float spellings from YAML, a list subset: one canonical spec, so one cache entry.
    a = _spec(overrides={"fashion-mnist": {**TINY["fashion-mnist"], "lr": 0.01, "epsilon": 20}})
    b = _spec(overrides={"fashion-mnist": {**TINY["fashion-mnist"], "lr": 1.0e-2, "epsilon": 20.0}})
    assert config_key(a) == config_key(b)
    # ReLU ignores alpha, so the slope sweep's ReLU run is Table 2's ReLU run.
    assert config_key(_spec(activation="relu")) == config_key(_spec(activation="relu", alpha=0.3))
    # The slope sweep's alpha = 0.6 run is Table 2's All-ReLU run.
    sweep = ts.slope_specs("fashion-mnist", [0.6], seeds=[0], profile="test", overrides=TINY)
    table2 = ts.table2_specs(["fashion-mnist"], seeds=[0], profile="test", overrides=TINY)
    assert {config_key(s) for s in sweep} <= {config_key(s) for s in table2}


def test_dense_specs_use_dense_lr_and_leukemia_has_no_dense_run():
    over = {"fashion-mnist": {**TINY["fashion-mnist"], "lr": 0.05, "dense_lr": 0.01}}
    assert _spec(overrides=over)["lr"] == 0.05
    assert _spec(model="dense", overrides=over)["lr"] == 0.01
    assert _spec(model="dense")["epsilon"] is None
    specs = ts.table2_specs(["leukemia"], seeds=[0, 1], profile="test")
    assert len(specs) == 8 and all(s["model"] == "set-mlp" for s in specs)
    with pytest.raises(ValueError, match="SET-MLPs only"):
        _spec(model="dense", importance_pruning=True)


def test_changes_lists_what_a_profile_shrank():
    rows = ts.changes(["fashion-mnist"], {"fashion-mnist": {"epochs": 20, "ip_start": 7, "ip_every": 3}})
    by = {r["setting"]: r for r in rows}
    assert by["epochs"]["paper"] == "500" and by["epochs"]["this profile"] == "20"
    assert by["IP events (derived)"]["paper"] == 31 and by["IP events (derived)"]["this profile"] == 5
    assert "lr" not in by
    assert ts.ip_events({"epochs": 20, "ip_start": 7, "ip_every": 3, "ip_percentile": 20.0}) == [7, 10, 13, 16, 19]


# --------------------------------------------------------------------------- running
def test_absent_dataset_is_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path))

    def missing(*args, **kwargs):
        raise DatasetNotFoundError("CIFAR-10 not found: run `python -m swatlib.data ensure cifar10`")

    monkeypatch.setattr(experiment_runs, "load", missing)
    experiment_runs._load.cache_clear()
    specs = ts.table2_specs(["cifar10"], seeds=[0], profile="test",
                            overrides={"cifar10": {"subset": [8, 4], "sizes": [3072, 8, 8, 8, 10], "epochs": 1}})
    lines = []
    runs = ts.run_many(specs, log=lines.append)
    experiment_runs._load.cache_clear()
    assert lines == ["cifar10: not run: dataset absent (CIFAR-10 not found)"]  # looked for once
    assert [r.status for r in runs] == [ts.ABSENT] * 6
    table = tables.table2(runs)
    assert (table.status == ts.ABSENT).all()
    assert table["best acc %"].isna().all()
    assert table.loc[("cifar10", "SET-MLP", "All-ReLU (α=0.75)", "no"), "reported acc %"] == 69.83
    assert tables.absent_datasets(runs) == ["cifar10"]


def test_a_tiny_run_is_cached_restorable_and_post_prunable(tmp_path, monkeypatch):
    monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path))
    spec = _spec(importance_pruning=True)
    lines = []
    first = ts.run(spec, log=lines.append)
    assert first.ok and len(lines) == 2
    r = first.result
    assert r["hidden_end"] != r["hidden_start"] and r["params_end"] < r["params_start"]
    snaps = first.tensors["snapshots"]
    assert snaps["epochs"].tolist() == [0, 1, 2]
    assert snaps["input_degree"].shape == (3, 784)
    # snapshots are taken after each epoch's training, before that epoch's pruning
    assert snaps["input_degree"][1].sum() == snaps["input_degree"][0].sum()  # no pruning before epoch 1 ends
    assert snaps["input_degree"][-1].sum() >= first.tensors["model"]["layers"][0]["rows"].numel()
    assert [t.numel() for t in snaps["hidden_in_degree"][0]] == [16, 16, 16]
    again = ts.run(spec, log=lines.append)
    assert len(lines) == 2 and again.result["final_test_acc"] == r["final_test_acc"]  # a cache hit
    model = ts.restore_model(again)
    assert model.hidden_neurons == r["hidden_end"] and model.n_params == r["params_end"]
    records = ts.post_training_pruning(again, [10, 25])
    assert records[0]["percentile"] is None
    assert records[0]["test_acc"] == pytest.approx(r["final_test_acc"])
    assert records[0]["params"] > records[1]["params"] > records[2]["params"]
    assert ts.restore_model(again).n_params == r["params_end"]  # pruning worked on copies


def test_dense_runs_store_no_tensors(tmp_path, monkeypatch):
    monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path))
    out = ts.run(_spec(model="dense", overrides={"fashion-mnist": {**TINY["fashion-mnist"], "epochs": 1}}),
                 log=lambda line: None)
    assert out.ok and out.tensors is None and out.result["params_start"] == 784 * 16 + 16 * 16 * 2 + 160 + 58
    with pytest.raises(ValueError, match="no trained SET-MLP"):
        ts.restore_model(out)


def test_snapshot_epochs_are_capped():
    assert ts.snapshot_epochs(3) == [0, 1, 2, 3]
    chosen = ts.snapshot_epochs(500)
    assert chosen[0] == 0 and chosen[-1] == 500 and len(chosen) <= ts.MAX_SNAPSHOTS + 2


# --------------------------------------------------------------------------- tables
def _fm(**kw):
    return _spec(overrides=TINY, **kw)


def test_table2_best_final_mean_std_and_reported():
    runs = [
        _outcome(_fm(seed=0), [0.5, 0.8, 0.7], params_end=1000),
        _outcome(_fm(seed=1), [0.6, 0.9, 0.85], params_end=1000),
        _outcome(_fm(importance_pruning=True), [0.5, 0.7, 0.6], params_end=250, final=0.55),
    ]
    table = tables.table2(runs)
    row = table.loc[("fashion-mnist", "SET-MLP", "All-ReLU (α=0.6)", "no")]
    assert row["best acc %"] == pytest.approx(85.0)  # mean of the best epochs, 80 and 90
    assert row["± std"] == pytest.approx(math.sqrt(50))
    assert row["final acc %"] == pytest.approx(77.5)
    assert row["seeds"] == 2 and row["minutes"] == pytest.approx(0.3)
    assert row["reported acc %"] == 91.38 and row["reported params end"] == 126302
    ip = table.loc[("fashion-mnist", "SET-MLP", "All-ReLU (α=0.6)", "yes")]
    assert ip["final acc %"] == pytest.approx(55.0) and ip["params end"] == 250
    assert ip["reported params end"] == 25759
    # the four variants not run still show the paper's values
    missing = table[table.status.str.startswith("not run")]
    assert len(missing) == 4 and missing["best acc %"].isna().all()
    assert missing.loc[("fashion-mnist", "Dense MLP", "ReLU", "no"), "reported acc %"] == 90.85


def test_a_leaky_relu_run_never_gets_relu_or_all_relu_reported_values():
    runs = [_outcome(_fm(activation="relu"), [0.5, 0.80]),
            _outcome(_fm(activation="leaky_relu"), [0.5, 0.82]),  # α = 0.6, Fashion-MNIST's All-ReLU slope
            _outcome(_fm(), [0.5, 0.84])]
    table = tables.table2(runs)
    leaky = table.loc[("fashion-mnist", "SET-MLP", "LeakyReLU (α=0.6)", "no")]
    assert leaky[["reported acc %", "reported params start", "reported minutes"]].isna().all()
    assert table.loc[("fashion-mnist", "SET-MLP", "ReLU", "no"), "reported acc %"] == TABLE2[
        ("fashion-mnist", "set", "relu", False)]["accuracy"]
    claims = tables.table2_claims(runs).loc["fashion-mnist"]
    assert claims.loc["All-ReLU − ReLU, no IP (points)", "ours"] == pytest.approx(4.0)  # 84 − 80, not 84 − 82
    slopes = tables.table5(runs)
    assert math.isnan(slopes.loc["LeakyReLU (α=0.6)", "reported acc %"])
    assert slopes.loc["All-ReLU (α=0.6)", "reported acc %"] == TABLE5["best"]
    with pytest.raises(TypeError, match="takes the runs"):
        tables.table2_claims(table)


def test_claims_are_paired_by_seed_then_mean_and_sample_std():
    runs = [_outcome(_fm(activation="relu", seed=0), [0.5, 0.78]),
            _outcome(_fm(activation="relu", seed=1), [0.5, 0.85]),
            _outcome(_fm(activation="relu", seed=2), [0.5, 0.70]),  # no All-ReLU run of seed 2: not paired
            _outcome(_fm(seed=0), [0.5, 0.80]),
            _outcome(_fm(seed=1), [0.5, 0.86]),
            _outcome(_fm(importance_pruning=True, seed=0), [0.5, 0.79], params_end=250),
            _outcome(_fm(importance_pruning=True, seed=1), [0.5, 0.84], params_end=200)]
    claims = tables.table2_claims(runs).loc["fashion-mnist"]
    row = claims.loc["All-ReLU − ReLU, no IP (points)"]
    assert row["ours"] == pytest.approx(1.5) and row["seeds"] == 2  # (2 + 1) / 2, seed 2 left out
    assert row["± std"] == pytest.approx(math.sqrt(0.5))  # ddof=1
    assert row["reported"] == pytest.approx(91.38 - 90.48)
    ip = claims.loc["IP − no IP, All-ReLU (points)"]
    assert ip["ours"] == pytest.approx(-1.5) and ip["± std"] == pytest.approx(math.sqrt(0.5))
    ends = claims.loc["params at end with IP, All-ReLU (% of start)"]
    assert ends["ours"] == pytest.approx(22.5) and ends["± std"] == pytest.approx(math.sqrt(12.5))
    missing = claims.loc["SET All-ReLU − dense ReLU (points)"]  # no dense run
    assert math.isnan(missing["ours"]) and missing["seeds"] == 0
    one = tables.table2_claims(runs[:1] + runs[3:4]).loc[("fashion-mnist", "All-ReLU − ReLU, no IP (points)")]
    assert one["ours"] == pytest.approx(2.0) and math.isnan(one["± std"]) and one["seeds"] == 1


def test_table5_orders_slopes_and_marks_only_certain_reported_values():
    runs = [_outcome(_fm(activation="relu"), [0.5, 0.80]),
            _outcome(_fm(alpha=0.9), [0.5, 0.83]),
            _outcome(_fm(alpha=0.6), [0.5, 0.84]),
            _outcome(_fm(alpha=0.05), [0.5, 0.81])]
    table = tables.table5(runs)
    assert list(table.index) == ["ReLU", "All-ReLU (α=0.05)", "All-ReLU (α=0.6)", "All-ReLU (α=0.9)"]
    assert table["Δ vs ReLU"].round(6).tolist() == [0.0, 1.0, 4.0, 3.0]
    assert table["reported acc %"].iloc[0] == TABLE5["relu"]
    assert table.loc["All-ReLU (α=0.6)", "reported acc %"] == TABLE5["best"]
    assert math.isnan(table.loc["All-ReLU (α=0.9)", "reported acc %"])
    assert table["Δ ± std"].isna().all()  # one seed


def test_table5_delta_is_paired_by_seed():
    runs = [_outcome(_fm(activation="relu", seed=0), [0.80]), _outcome(_fm(activation="relu", seed=1), [0.90]),
            _outcome(_fm(alpha=0.3, seed=0), [0.82]), _outcome(_fm(alpha=0.3, seed=1), [0.91])]
    table = tables.table5(runs)
    row = table.loc["All-ReLU (α=0.3)"]
    assert row["Δ vs ReLU"] == pytest.approx(1.5) and row["Δ ± std"] == pytest.approx(math.sqrt(0.5))
    # unpaired, the spread of the accuracies themselves is much larger
    assert row["± std"] == pytest.approx(math.sqrt(40.5))
    assert table.loc["ReLU", "Δ vs ReLU"] == 0.0 and math.isnan(table.loc["ReLU", "Δ ± std"])


def test_table6_arithmetic_and_reported_columns():
    records = [
        {"percentile": None, "test_acc": 0.80, "params": 1000, "hidden_neurons": [10, 10]},
        {"percentile": 5, "test_acc": 0.79, "params": 950, "hidden_neurons": [9, 9]},
        {"percentile": 25, "test_acc": 0.70, "params": 750, "hidden_neurons": [7, 7]},
    ]
    table = tables.table6(records, "fashion-mnist")
    assert list(table.index) == ["trained", "5th percentile", "25th percentile"]
    assert table["Δ acc (points)"].round(6).tolist() == [0.0, -1.0, -10.0]
    assert table["params % of trained"].tolist() == [100.0, 95.0, 75.0]
    assert table.loc["25th percentile", "reported acc %"] == 85.97
    assert table.loc["5th percentile", "reported params % of trained"] == pytest.approx(100 * 120894 / 125901)
    assert table.loc["trained", "hidden neurons"] == "10-10"
    assert table["± std"].isna().all() and (table.seeds == 1).all()


def test_table6_per_seed_then_mean_and_std():
    def records(acc, acc25, params25, hidden25):
        return [{"percentile": None, "test_acc": acc, "params": 1000, "hidden_neurons": [10, 10]},
                {"percentile": 25, "test_acc": acc25, "params": params25, "hidden_neurons": hidden25}]

    table = tables.table6({0: records(0.80, 0.78, 750, [7, 8]), 1: records(0.90, 0.87, 700, [8, 8])},
                          "fashion-mnist")
    row = table.loc["25th percentile"]
    assert row["seeds"] == 2 and row["test acc %"] == pytest.approx(82.5)
    assert row["Δ acc (points)"] == pytest.approx(-2.5) and row["Δ ± std"] == pytest.approx(math.sqrt(0.5))
    assert row["params % of trained"] == pytest.approx(72.5)
    assert row["params % ± std"] == pytest.approx(math.sqrt(12.5))
    assert row["hidden neurons"] == "8-8"  # mean per layer, rounded (7.5 rounds to even)
    assert table.loc["trained", "Δ acc (points)"] == 0.0


def test_relative_size_and_error():
    assert tables.relative(25, 12.0, 100, 10.0) == (0.25, 1.2)
    with pytest.raises(ValueError):
        tables.relative(25, 12.0, 100, 0.0)
    runs = [
        _outcome(_spec(model="dense", activation="relu"), [0.9], params_end=2000, final=0.90, final_train=0.95),
        _outcome(_fm(), [0.88], params_end=100, final=0.88, final_train=0.90),
        _outcome(_fm(importance_pruning=True), [0.85], params_end=20, final=0.85, final_train=1.0),
    ]
    df = tables.relative_size_error(runs).set_index("IP")
    assert df.loc["no", "relative size"] == pytest.approx(0.05)
    assert df.loc["no", "relative test error"] == pytest.approx(12 / 10)
    assert df.loc["no", "relative train error"] == pytest.approx(10 / 5)
    assert df.loc["yes", "relative test error"] == pytest.approx(1.5)
    assert df.loc["yes", "relative train error"] == 0.0
    # a dense MLP with zero training error leaves the relative training error undefined
    runs[0] = _outcome(_spec(model="dense", activation="relu"), [0.9], params_end=2000, final=0.9, final_train=1.0)
    assert tables.relative_size_error(runs)["relative train error"].isna().all()


def test_relative_size_error_pairs_each_seed_with_its_dense_run():
    runs = [_outcome(_spec(model="dense", activation="relu", seed=s), [0.9], params_end=2000, final=f, final_train=0.95)
            for s, f in ((0, 0.90), (1, 0.80))]
    runs += [_outcome(_fm(seed=0), [0.88], params_end=100, final=0.88), _outcome(_fm(seed=1), [0.76], params_end=100,
                                                                                 final=0.76)]
    row = tables.relative_size_error(runs).iloc[0]
    assert row["seeds"] == 2
    assert row["relative test error"] == pytest.approx((12 / 10 + 24 / 20) / 2)  # 1.2 in both seeds
    assert row["relative test error ± std"] == pytest.approx(0.0)


def test_reported_relative_size_error_from_table2():
    df = tables.reported_relative_size_error(["fashion-mnist", "leukemia"])
    assert set(df.dataset) == {"fashion-mnist"}  # Leukemia has no dense accuracy
    row = df[(df.activation == "All-ReLU") & (df.IP == "yes")].iloc[0]
    assert row["relative size"] == pytest.approx(25759 / 2797010)
    assert row["relative test error"] == pytest.approx((100 - 90.12) / (100 - 90.85))


def test_curves_long_format():
    runs = [_outcome(_fm(), [0.5, 0.6], flow=2.0), ts.RunResult(_fm(seed=3), ts.ABSENT)]
    df = tables.curves(runs)
    assert len(df) == 2 and df.test_acc.tolist() == [50.0, 60.0] and df.gradient_flow.tolist() == [2.0, 4.0]
    assert df.label.iloc[0] == "SET-MLP All-ReLU (α=0.6)" and df.hidden_neurons.iloc[0] == 8


def test_curve_band_is_mean_and_sample_std_over_seeds():
    runs = [_outcome(_fm(seed=s), accs) for s, accs in ((0, [0.5, 0.6]), (1, [0.7, 0.8]))]
    band = tables.curve_band(tables.curves(runs), ["label"], "test_acc")
    assert band["mean"].tolist() == pytest.approx([60.0, 70.0])
    assert band["std"].tolist() == pytest.approx([math.sqrt(200)] * 2) and band.seeds.tolist() == [2, 2]


def test_gradient_flow_ratio_is_per_seed_and_the_count_holds_in_every_seed():
    # seed 0: All-ReLU flows 2x ReLU in both epochs; seed 1: 2x, then 0.5x
    runs = [_outcome(_fm(activation="relu", seed=0), [0.5, 0.6], flow=1.0),
            _outcome(_fm(seed=0), [0.5, 0.6], flow=2.0),
            _outcome(_fm(activation="relu", seed=1), [0.5, 0.6], flow=1.0),
            _outcome(_fm(seed=1), [0.5, 0.6], flow=2.0),
            _outcome(_fm(importance_pruning=True, seed=0), [0.5, 0.6], flow=9.0)]  # pruned runs are not Figure 5's
    runs[3].result["history"][1]["gradient_flow"] = 1.0  # relu's epoch 2 is 2.0: ratio 0.5
    ratio = tables.gradient_flow_ratio(tables.curves(runs))
    assert len(ratio) == 4 and ratio.ratio.tolist() == pytest.approx([2.0, 2.0, 2.0, 0.5])
    summary = tables.gradient_flow_summary(ratio).loc["Fashion-MNIST"]
    assert summary["seeds"] == 2 and summary["epochs"] == 2
    assert summary["epochs with All-ReLU > ReLU in every seed"] == 1
    assert summary["epochs with All-ReLU > ReLU, mean over seeds"] == pytest.approx(1.5)
    assert summary["epochs with All-ReLU > ReLU, mean over seeds ± std"] == pytest.approx(math.sqrt(0.5))
    assert summary["median ratio All-ReLU / ReLU"] == pytest.approx((2.0 + 1.25) / 2)
    assert summary["ratio, last epoch"] == pytest.approx(1.25)
    assert tables.gradient_flow_summary(tables.gradient_flow_ratio(tables.curves(runs[:1]))).empty


# --------------------------------------------------------------------------- reported data
def test_reported_tables_are_complete():
    assert set(DATASETS) == set(PAPER_SETTINGS) - {"madelon-65536"}  # Table 4's dataset is in no other table
    for dataset in DATASETS:
        for variant in VARIANTS:
            assert (dataset, *variant) in TABLE2
        assert sorted(TABLE6[dataset]["pruned"]) == [5, 10, 15, 20, 25]
    assert len(TABLE5["sweep"]) == 9 and max(TABLE5["sweep"]) == TABLE5["best"]
    assert TABLE2[("fashion-mnist", "dense", "relu", False)]["params_start"] == 784 * 1000 + 1000 * 1000 * 2 + 10000 + 3010

