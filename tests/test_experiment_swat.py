"""The SWAT experiments (notebooks 30-32): cached runs, measured FLOPs, tables, memory."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from swatlib.cache import config_key
from swatlib.costmodel import MeasuredLedger, layer_table, nominal_ledger, plan
from swatlib.experiments import runs, swat
from swatlib.experiments import swat_tables as tables
from swatlib.experiments.swat_methods import REGISTRY
from swatlib.experiments.swat_settings import (BATCH_SIZE, FIRST_LAYER_DENSE, MOMENTUM, RIGL_ALPHA,
                                               RIGL_DELTA_T, RIGL_END, SET_ZETA, WEIGHT_DECAY)
from swatlib.models import MLP
from swatlib.train import fit

TINY = dict(model="cnn", width=2, subset=[192, 64], epochs=1, batch_size=64, lr=0.05,
            profile="test")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path / "cache"))


def test_run_trains_once_and_reports_accuracy_and_measured_flops(monkeypatch):
    spec = swat.make_spec("swat-u", 0.2, **TINY)
    first = swat.run(spec, log=lambda line: None)
    res = first.result
    assert len(res["history"]) == 1 and 0.0 <= first.test_acc <= 1.0
    flops = res["flops"]
    assert res["flops_basis"] == "measured" and res["steps"] == 3
    assert 0 < flops["measured"] < flops["dense_arithmetic"]
    assert flops["measured"] == pytest.approx(sum(flops["measured_phases"].values()))
    assert 0 < flops["nominal"] < flops["nominal_dense"]
    assert set(res["layer_densities"]) == {f"features.{i}" for i in (0, 3, 7, 10, 14, 17)} | {"fc"}
    # A second call is a cache hit: nothing trains.
    monkeypatch.setattr(swat, "fit", lambda *a, **k: pytest.fail("trained twice"))
    assert swat.run(spec).result == res


def test_dense_measured_arithmetic_equals_the_nominal_cost_of_the_same_net():
    res = swat.run(swat.make_spec("dense", **TINY), log=lambda line: None).result
    flops = res["flops"]
    # Every MAC of the dense step is recorded: the ledger's dense work is the cost model's.
    assert flops["dense_arithmetic"] == pytest.approx(flops["nominal_dense"], rel=0.01)
    assert flops["nominal"] == pytest.approx(flops["nominal_dense"], rel=1e-12)
    # Zero-skipping counts the natural ReLU zeros, so the measured cost is below it.
    assert flops["measured"] < flops["dense_arithmetic"]


def test_training_ledger_records_training_steps_only_and_matches_nominal_without_natural_zeros():
    """A dense MLP with LeakyReLU has no natural zeros: measured == nominal, evaluation unrecorded."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 12, generator=g)
    data = SimpleNamespace(x_train=x, y_train=x[:, :3].argmax(1), x_test=x[:40],
                           y_test=x[:40, :3].argmax(1))
    model = MLP([12, 16, 16, 3], activation="leaky_relu", alpha=0.1, dropout=0.0, generator=g)
    ledger = MeasuredLedger()
    fit(model, data, torch.optim.SGD(model.parameters(), lr=0.01), epochs=2, batch_size=50,
        generator=g, log=lambda line: None, ledger=swat._TrainingLedger(ledger, model))
    measured = ledger.ledger()
    assert measured.steps == 4 and measured.examples == 200
    table = layer_table(MLP([12, 16, 16, 3], activation="leaky_relu", alpha=0.1).to("meta"), (12,))
    nominal = nominal_ledger(table, plan(table, "dense", 1.0, batch_size=50), 50)
    assert measured.training_flops() == pytest.approx(nominal.training_flops(), rel=0.01)


def test_masked_baselines_use_the_nominal_cost_and_meprop_keeps_the_forward_dense():
    out = {m: swat.run(swat.make_spec(m, 0.2, rigl_delta_t=2, **TINY), log=lambda line: None)
           for m in ("set", "rigl", "meprop")}
    for method in ("set", "rigl"):
        res = out[method].result
        assert res["flops_basis"] == "nominal"
        assert res["flops"]["nominal"] < 0.6 * res["flops"]["nominal_dense"]
        assert max(res["layer_densities"].values()) <= 1.0
    meprop = out["meprop"].result["flops"]
    # dense forward (natural zeros only) against a 20 %-dense output gradient in dX
    assert meprop["measured_phases"]["forward"] > meprop["measured_phases"]["input_grad"]


def test_cache_keys_differ_per_hyper_parameter():
    base = dict(TINY, seed=0)
    variants = [
        swat.make_spec("swat-u", 0.2, **base),
        swat.make_spec("swat-u", 0.3, **base),
        swat.make_spec("swat-erk", 0.2, **base),
        swat.make_spec("swat-m", 0.2, **base),
        swat.make_spec("meprop", 0.2, **base),
        swat.make_spec("set", 0.2, **base),
        swat.make_spec("rigl", 0.2, **base),
        swat.make_spec("rigl", 0.2, **dict(base, rigl_delta_t=7)),
        swat.make_spec("dense", **base),
        swat.make_spec("swat-u", 0.2, mode="fwd-weights", **base),
        swat.make_spec("swat-u", 0.2, mode="bwd-output-grad", **base),
        swat.make_spec("swat-u", 0.2, period=10, **base),
        swat.make_spec("swat-u", 0.2, **dict(base, seed=1)),
        swat.make_spec("swat-u", 0.2, **dict(base, width=4)),
        swat.make_spec("swat-u", 0.2, **dict(base, subset=[100, 64])),
        swat.make_spec("swat-u", 0.2, **dict(base, epochs=2)),
        swat.make_spec("swat-u", 0.2, **dict(base, lr=0.1)),
        swat.make_spec("swat-u", 0.2, **dict(base, batch_size=32)),
        swat.make_spec("swat-u", 0.2, **dict(base, profile="quick")),
        swat.make_spec("swat-u", 0.2, **dict(base, model="mlp")),
    ]
    keys = [config_key(spec) for spec in variants]
    assert len(set(keys)) == len(keys)
    # Settings that do not apply to a method do not split its cache entries.
    assert swat.make_spec("dense", 0.5, **base) == swat.make_spec("dense", **base)
    assert (swat.make_spec("set", 0.2, rigl_delta_t=7, **base)
            == swat.make_spec("set", 0.2, **base))
    # Notebook 30's SWAT runs are notebook 31's (same setup): 1 - 70/100 rounds to 0.3.
    assert swat.sensitivity_specs(["swat"], [70], [0], **TINY)[1] == swat.make_spec("swat-u", 0.3, **base)


@pytest.mark.parametrize("name", [m for m in swat.METHODS if m != "dense"])
def test_each_method_prepares_the_network_its_registry_entry_describes(name):
    spec = swat.make_spec(name, 0.2, rigl_delta_t=2, **TINY)
    model = swat.build_model(spec)
    topology = REGISTRY[name].prepare(spec, model, torch.optim.SGD(model.parameters(), lr=0.1), 3)
    densities = list(swat._layer_densities(model).values())
    assert len(densities) == 7 and min(densities) < 1.0
    if FIRST_LAYER_DENSE[name]:
        assert densities[0] == 1.0
    assert len(topology) == (1 if name in ("swat-m", "set", "rigl") else 0)  # what changes the topology
    assert spec["first_layer_dense"] == FIRST_LAYER_DENSE[name]
    assert swat.describe(spec).startswith(f"{REGISTRY[name].label} d=0.2")


def test_paper_choices_reach_the_specs_from_the_settings_module():
    rigl = swat.make_spec("rigl", 0.2, **TINY)["topology"]
    assert rigl == {"delta_t": RIGL_DELTA_T, "alpha": RIGL_ALPHA, "t_end_fraction": RIGL_END}
    assert swat.make_spec("set", 0.2, **TINY)["topology"]["zeta"] == SET_ZETA
    default = swat.make_spec("dense")
    assert default["batch_size"] == BATCH_SIZE and default["first_layer_dense"] is None
    assert default["optimizer"] == {"name": "sgd", "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
                                    "schedule": "cosine"}


@pytest.mark.parametrize("kwargs, word", [
    (dict(method="sgd"), "method"), (dict(method="set", mode="fwd-weights"), "mode"),
    (dict(method="swat-u", density=0.0), "density"), (dict(method="swat-u", period=0), "period"),
    (dict(method="dense", model="resnet"), "model"), (dict(method="dense", schedule="step"), "schedule"),
])
def test_bad_settings_name_themselves(kwargs, word):
    with pytest.raises(ValueError, match=word):
        swat.make_spec(**kwargs)


def _fake(method, density=1.0, mode="swat", period=1, seed=0, acc=0.5, measured=1.0,
          nominal=2.0, nominal_dense=4.0, nan=False):
    spec = swat.make_spec(method, density, mode=mode, period=period, seed=seed, **TINY)
    phases = {"forward": measured / 3, "input_grad": measured / 3, "weight_grad": measured / 3}
    flops = {"measured": measured, "measured_phases": phases, "dense_arithmetic": 10.0,
             "measured_with_extras": measured}
    if mode == "swat":
        flops.update(nominal=nominal, nominal_dense=nominal_dense, nominal_with_extras=nominal)
    history = [{"epoch": 1, "train_loss": math.nan if nan else 1.0, "test_acc": acc}]
    return swat.RunResult(spec, "ok", {
        "history": history, "test_acc": acc, "best_test_acc": acc, "train_acc": acc,
        "flops": flops, "flops_basis": REGISTRY[method].flops_basis, "train_seconds": 1.0})


def test_accuracy_vs_flops_is_relative_to_dense_in_the_same_accounting():
    results = [_fake("dense", acc=0.9, measured=8.0, nominal=10.0, nominal_dense=10.0),
               _fake("swat-u", 0.2, acc=0.8, measured=2.0, nominal=2.5, nominal_dense=10.0),
               _fake("set", 0.2, acc=0.7, measured=6.0, nominal=3.0, nominal_dense=10.0)]
    curve = tables.accuracy_vs_flops(results).set_index("method")
    assert curve.loc["dense", "flops_pct"] == pytest.approx(100)
    assert curve.loc["swat-u", "flops_pct"] == pytest.approx(25)  # measured / measured dense
    assert curve.loc["set", "flops_pct"] == pytest.approx(30)  # nominal / nominal dense
    assert curve.loc["swat-u", "test_acc"] == pytest.approx(80)
    assert math.isnan(curve.loc["swat-u", "test_acc_std"])  # one seed: no spread, not zero
    shown = tables.flops_table(tables.accuracy_vs_flops(results))
    assert shown.loc[("SET (masked)", 80.0), "basis"] == "nominal"
    # a second seed: FLOPs relative to that seed's own dense run, then mean and sample std
    results += [_fake("dense", seed=1, acc=0.9, measured=10.0, nominal=10.0, nominal_dense=10.0),
                _fake("swat-u", 0.2, seed=1, acc=0.7, measured=3.5, nominal=2.5, nominal_dense=10.0)]
    curve = tables.accuracy_vs_flops(results).set_index("method")
    assert curve.loc["swat-u", "flops_pct"] == pytest.approx(30)  # (25 + 35) / 2
    assert curve.loc["swat-u", "flops_pct_std"] == pytest.approx(math.sqrt(50))
    assert curve.loc["swat-u", "test_acc_std"] == pytest.approx(math.sqrt(50))
    shown = tables.flops_table(tables.accuracy_vs_flops(results))
    assert {"± std", "% of dense FLOPs ± std"} <= set(shown.columns)


def test_sensitivity_and_period_tables():
    results = [_fake("dense", acc=0.9), _fake("dense", seed=1, acc=0.8, nan=True)]
    for mode, acc in (("fwd-weights", 0.85), ("fwd-activations", 0.4), ("swat", 0.88)):
        results += [_fake("swat-u", 0.1, mode=mode, acc=acc), _fake("swat-u", 0.5, mode=mode, acc=acc + 0.02)]
    results += [_fake("swat-u", 0.1, period=10, acc=0.6, measured=2e6),
                _fake("swat-u", 0.1, period=10, seed=1, acc=0.7, measured=3e6)]
    results += [_fake("swat-u", 0.1, mode="fwd-activations", seed=1, acc=0.2)]
    table = tables.sensitivity_table(results)
    assert list(table.columns) == ["0", "0 ± std", "50", "50 ± std", "90", "90 ± std", "seeds"]
    assert table.loc[swat.MODE_LABELS["fwd-activations"], "90"] == pytest.approx(30)  # mean of 40 and 20
    assert table.loc[swat.MODE_LABELS["fwd-activations"], "90 ± std"] == pytest.approx(14.14, abs=0.01)  # ddof=1
    assert math.isnan(table.loc[swat.MODE_LABELS["fwd-weights"], "90 ± std"])  # one seed
    assert table.loc[swat.MODE_LABELS["fwd-weights"], "0"] == pytest.approx(85)  # dense, mean of seeds
    assert table.loc[swat.MODE_LABELS["fwd-weights"], "0 ± std"] == pytest.approx(7.07, abs=0.01)
    assert table.loc[swat.MODE_LABELS["fwd-weights"], "seeds"] == 1
    assert swat.MODE_LABELS["bwd-output-grad"] not in table.index
    long = tables.sensitivity(results)
    assert long.variant.iloc[0] == "dense" and long.diverged.iloc[0] == 1
    cell = long[(long["mode"] == "fwd-activations") & (long.sparsity == 90)].iloc[0]
    assert cell["seeds"] == 2 and cell["test acc %"] == pytest.approx(30)
    periods = tables.period_table(results).set_index(["density", "period"])
    assert periods.loc[(0.1, 10), "test acc %"] == pytest.approx(65)
    assert periods.loc[(0.1, 10), "± std"] == pytest.approx(7.071, abs=1e-3)  # ddof=1
    assert math.isnan(periods.loc[(0.1, 1), "± std"])
    assert periods.loc[(0.1, 10), "runs"] == 2 and periods.loc[(0.1, 1), "runs"] == 1
    assert periods.loc[(0.1, 10), "MFLOPs measured"] == pytest.approx(2.5)
    assert periods.loc[(0.1, 10), "MFLOPs ± std"] == pytest.approx(0.707, abs=1e-3)
    assert tables.summary(results).diverged.sum() == 1


def test_reported_values_come_from_the_published_table():
    resnet = tables.reported_accuracy("ResNet-50").set_index("method")
    assert resnet.loc["SWAT-U", "accuracy"] == 75.2 and resnet.loc["dense", "accuracy"] == 76.8
    assert resnet.loc["SWAT-U", "flops_pct"] == pytest.approx(20.0)
    assert tables.reported_memory_ranges() == {"activation": (23.0, 50.0), "weight": (50.0, 90.0)}


def test_memory_measured_next_to_the_model():
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    memory = tables.memory_comparison([0.5, 0.1], width=4, x=x)
    assert len(memory) == 2 * 3 * 3
    assert (memory[memory.density == 1.0][["activation_reduction", "weight_reduction"]] == 0).all().all()
    for bn in (True, False):
        sub = memory[(memory.batchnorm == bn) & (memory.density == 0.1)].set_index("source")
        # Weights follow the density in measurement and model alike (bitmap index included).
        assert sub.loc["measured", "weight_reduction"] == pytest.approx(
            sub.loc["model (bitmap)", "weight_reduction"], abs=2.0)
        # Under swatify every layer saves what the cost model counts (compressed conv inputs, BN inputs,
        # 1-bit ReLU masks, 1-byte max-pool argmax), so the bytes agree; the measured reduction is the
        # larger one, as the stock dense network also keeps its max-pools' inputs and int64 argmax.
        assert sub.loc["measured", "activation_bytes"] == pytest.approx(
            sub.loc["model (bitmap)", "activation_bytes"], rel=0.1)
        assert sub.loc["measured", "activation_reduction"] > sub.loc["model (bitmap)", "activation_reduction"]
    per = tables.saved_by_layer(4, True, 0.2, x)
    kinds = per.groupby("module").stored.agg(set)
    assert kinds["SWATConv2d"] >= {"compressed"} and kinds["BatchNorm2d"] == {"dense"}
    assert kinds["MaskReLU"] == {"mask"} and kinds["MaskMaxPool2d"] == {"index"}
    breakdown = tables.layer_breakdown(per)
    assert breakdown.total.sum() == per.bytes.sum()


def test_the_same_networks_train_on_cifar10_when_its_files_are_present(tmp_path, monkeypatch):
    import pickle

    import numpy as np

    from swatlib.data import cifar10

    directory = tmp_path / "data" / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in cifar10.FILES:  # tiny synthetic batches in the real pickle format
        batch = {b"labels": [int(v) for v in rng.integers(0, 10, 16)],
                 b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8)}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    monkeypatch.setenv("SWATLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = swat.make_spec("swat-u", 0.5, **{**TINY, "subset": [48, 16], "batch_size": 16},
                          dataset="cifar10")
    assert spec["dataset"] == "cifar10" and config_key(spec) != config_key(
        swat.make_spec("swat-u", 0.5, **{**TINY, "subset": [48, 16], "batch_size": 16}))
    try:
        result = swat.run(spec, log=lambda line: None)
    finally:
        runs._load.cache_clear()
    assert result.result["steps"] == 3 and 0.0 <= result.test_acc <= 1.0
    assert "CIFAR-10 48 train / 16 test" in swat.describe_setup(spec)
    with pytest.raises(ValueError, match="dataset"):
        swat.make_spec("dense", dataset="mnist")
    with pytest.raises(ValueError, match="3072"):
        swat.make_spec("dense", model="mlp", sizes=[784, 10], dataset="cifar10")


@pytest.mark.parametrize("batch_size", [0, -3, 2.0])
def test_memory_measurements_refuse_a_bad_batch_size_before_loading_data(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        tables.measurement_batch(batch_size)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        swat.peak_memory(["conv4"], [0.5], batch_size=batch_size)


def test_spec_builders_refuse_empty_or_repeated_seeds():
    with pytest.raises(ValueError, match="seeds must list at least one seed"):
        swat.method_specs(["dense"], [0.2], [], **TINY)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        swat.period_specs([1], 0.2, [3, 3], **TINY)
    with pytest.raises(ValueError, match=r"sparsities must be in \[0, 100\)"):
        swat.sensitivity_specs(["swat"], [100], [0], **TINY)
