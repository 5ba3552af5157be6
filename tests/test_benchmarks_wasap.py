"""Smoke test of benchmarks/wasap.py on a tiny configuration: well-formed output (no timing thresholds).

Two launches in all (the tests marked slow share them): one WASAP-SGD run with K = 1 on a tiny
network and subset, and the cost-per-message micro-benchmark with a tiny buffer; the rest checks the
pure functions.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from swatlib.experiments.extreme_scale import ARCHITECTURES, PROTOCOL
from swatlib.parallel.training import Options, make_plan

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

TINY = dict(epochs=2, subset=256, sizes=(784, 32, 32, 10), epsilon=2.0, batch_size=32)
ROUNDS = 3
CAPACITY_STEPS = 4


@pytest.fixture(scope="module")
def bench():
    # Imported by name from benchmarks/ (not from a file location): the spawned processes of the
    # message micro-benchmark unpickle its functions by module name, with the parent's sys.path.
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("wasap")
    finally:
        sys.path.remove(str(BENCHMARKS))
        sys.modules.pop("wasap", None)


@pytest.fixture(scope="module")
def result(bench):
    lines: list[str] = []
    out = bench.run(seeds=[0], names=["wasap-K1"], message_rounds=ROUNDS, message_warmup=1,
                    capacity_steps=CAPACITY_STEPS, capacity_repeats=1, log=lines.append, **TINY)
    assert any("wasap-K1" in line for line in lines)
    return out


@pytest.mark.slow
def test_result_is_json_and_well_formed(result):
    out = json.loads(json.dumps(result))  # what --json writes
    assert out["config"]["n_train"] == 256 and out["config"]["epochs"] == 2
    assert out["config"]["phase2_epochs"] == 1  # round(0.3 * 2)
    assert len(out["load_average_before"]) == 3 and len(out["load_average_after"]) == 3
    assert out["busy_machine"] == (out["load_average_before"][0] > out["busy_threshold"])
    assert out["environment"]["logical_cpus"] >= 1 and out["environment"]["torch"]
    (run,) = out["runs"]
    assert run["variant"] == "wasap-K1" and run["algorithm"] == "wasap" and run["workers"] == 1
    assert run["samples_per_second"] > 0 and run["phase1_samples_per_second"] > 0
    assert 0.0 <= run["final_test_acc"] <= 1.0
    (wait,) = run["worker_wait_fraction"]
    assert 0.0 <= wait <= 1.0
    assert 0.0 < run["master_cpu_share"] <= 1.0
    # One worker waits for every reply: each of phase 1's updates saw exactly the latest values.
    assert run["staleness"] == {"0": 256 // 32} and run["mean_staleness"] == 0.0
    assert 0.0 < run["cpu_utilisation"] <= 1.0
    assert run["bytes_sent"] > 0 and set(run["peak_rss_mib"]) == {"master", "worker 1"}


@pytest.mark.slow
def test_without_sequential_there_is_no_ratio(result):
    assert result["best_sequential"] is None
    row = result["variants"]["wasap-K1"]
    assert row["over_best_sequential"] is None and row["acc_within_noise"] is None
    assert row["final_test_acc_std"] is None  # one seed
    assert result["goal"]["met"] is None and result["goal"]["target"] == 1.6


@pytest.mark.slow
def test_message_micro_benchmark(result):
    m = result["messages"]
    assert m["rounds"] == ROUNDS and m["floats"] > 0 and m["bytes"] == 4 * (8 + m["floats"])
    for mode in ("preposted", "late"):
        assert m[mode]["ms_per_message"] >= 0 and m[mode]["round_trip_ms"] > 0
        assert m[mode]["receives"] == 2 * ROUNDS
    assert m["preposted"]["late_receives"] == 0  # every receive was posted before the peer's send


@pytest.mark.slow
def test_parallel_capacity_probe(bench, result):
    c = result["capacity"]
    assert c["steps"] == CAPACITY_STEPS and c["repeats"] == 1
    (one,), (two,) = c["one_samples_per_second"], c["two_samples_per_second"]
    assert one > 0 and two > 0 and c["ratio"] == pytest.approx(two / one)
    assert result["goal"]["measured_ceiling"] is None  # no sequential run to scale it by
    assert "parallel capacity" in bench.report(result)


def test_capacity_goal_scales_by_the_sequential_runs(bench):
    summary = {"best_sequential": "sequential-2t", "variants": {
        "sequential-1t": {"samples_per_second": 100.0}, "sequential-2t": {"samples_per_second": 125.0},
        "wasap-K2": {"over_best_sequential": 1.1}}}
    g = bench.goal(summary, False, {"ratio": 1.5})
    assert g["ceiling"] == pytest.approx(1.6) and g["measured_ceiling"] == pytest.approx(1.2)
    assert g["met"] is False and bench.goal(summary, False)["measured_ceiling"] is None
    with pytest.raises(ValueError, match="capacity steps"):
        bench.parallel_capacity({}, steps=0)
    with pytest.raises(ValueError, match="capacity repeats"):
        bench.run(capacity_repeats=0, **TINY)  # before any run starts


@pytest.mark.slow
def test_report_marks_busy_machine_and_goal(bench, result):
    text = bench.report({**result, "busy_machine": True})
    assert "BUSY MACHINE" in text and "not measured" in text and "pre-posted" in text
    assert "BUSY MACHINE" not in bench.report({**result, "busy_machine": False})


def _record(variant, algorithm, rate, acc, seed, *, workers=0, wait=(), share=None):
    return {"variant": variant, "algorithm": algorithm, "workers": workers, "threads": 1, "seed": seed,
            "samples_per_second": rate, "phase1_samples_per_second": rate, "final_test_acc": acc,
            "worker_wait_fraction": list(wait), "master_cpu_share": share, "cpu_utilisation": 0.5,
            "mean_staleness": float(workers)}


def test_summarise_ratios_best_sequential_and_accuracy(bench):
    records = []
    for seed, (s1, s2, w) in enumerate([(100.0, 120.0, 180.0), (110.0, 130.0, 200.0), (90.0, 125.0, 210.0)]):
        records += [_record("sequential-1t", "sequential", s1, 0.80 + 0.01 * seed, seed),
                    _record("sequential-2t", "sequential", s2, 0.80 + 0.01 * seed, seed),
                    _record("wasap-K2", "wasap", w, 0.50 + 0.001 * seed, seed, workers=2, wait=(0.1, 0.3),
                            share=0.2)]
    out = bench.summarise(records)
    assert out["best_sequential"] == "sequential-2t"  # median 125 beats 100
    row = out["variants"]["wasap-K2"]
    assert row["samples_per_second"] == 200.0 and row["over_best_sequential"] == pytest.approx(200 / 125)
    assert row["final_test_acc_mean"] == pytest.approx(0.501)
    assert row["final_test_acc_std"] == pytest.approx(0.001)
    assert row["acc_within_noise"] is False
    assert out["variants"]["sequential-1t"]["acc_within_noise"] is True
    assert row["worker_wait_fraction"] == pytest.approx(0.2) and row["master_cpu_share"] == pytest.approx(0.2)
    assert row["mean_staleness"] == 2.0 and out["variants"]["sequential-1t"]["master_cpu_share"] is None
    assert bench.goal(out, busy=False) == {"variant": "wasap-K2", "target": 1.6, "measured": pytest.approx(1.6),
                                           "met": True, "busy_machine": False, "applies_to": "an idle 2-core machine",
                                           "ceiling": pytest.approx(2 * 100 / 125), "measured_ceiling": None}


def test_within_noise_needs_two_seeds(bench):
    assert bench.within_noise([0.8], [0.8, 0.81]) is None
    assert bench.within_noise([0.80, 0.82], [0.81, 0.83]) is True


def test_model_is_set_mlp_benchmarks_and_default_epochs_have_a_local_phase(bench):
    spec = importlib.util.spec_from_file_location("benchmarks_set_mlp", BENCHMARKS / "set_mlp.py")
    set_mlp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(set_mlp)
    run_spec = bench.benchmark_spec(0)
    assert tuple(run_spec["sizes"]) == set_mlp.SIZES and run_spec["epsilon"] == set_mlp.EPSILON
    assert run_spec["batch_size"] == set_mlp.BATCH and run_spec["alpha"] == set_mlp.ALPHA
    assert run_spec["dropout"] == set_mlp.DROPOUT and run_spec["lr"] == set_mlp.LR
    assert run_spec["zeta"] == set_mlp.ZETA and run_spec["subset"] is None
    plan = make_plan(run_spec, Options(algorithm="wasap", workers=2, local_fraction=bench.LOCAL_FRACTION), 60_000)
    assert (plan.phase1_epochs, plan.phase2_epochs) == (2, 1)


def test_at_scale_the_model_is_table_4s_smallest_with_the_papers_settings(bench):
    run_spec = bench.benchmark_spec(0, dataset="madelon-65536", epochs=1)
    sizes, epsilon = ARCHITECTURES["65536-0.5M-0.5M-2"]
    assert run_spec["dataset"] == "madelon-65536" and tuple(run_spec["sizes"]) == sizes
    assert run_spec["epsilon"] == epsilon and run_spec["epochs"] == 1
    assert {k: run_spec[k] for k in PROTOCOL if k not in ("train_fraction", "samples")} == {
        k: v for k, v in PROTOCOL.items() if k not in ("train_fraction", "samples")}
    assert bench.benchmark_spec(0, dataset="madelon-65536", sizes=(65536, 64, 2))["sizes"] == [65536, 64, 2]
    with pytest.raises(ValueError, match="dataset must be one of fashion-mnist, madelon-65536"):
        bench.benchmark_spec(0, dataset="madelon")


def test_unknown_variant_is_an_error_before_any_process(bench):
    with pytest.raises(ValueError, match="variants must be among sequential-1t, .*; unknown: 'wasap-K9'"):
        bench.run(names=["wasap-K9"], **TINY)
    with pytest.raises(ValueError, match="seeds"):
        bench.run(seeds=[], **TINY)
    with pytest.raises(ValueError, match="epochs"):
        bench.run(**{**TINY, "epochs": 0})
    with pytest.raises(ValueError, match="local_fraction"):
        bench.run(local_fraction=1.0, **TINY)


def test_cli_bad_input_is_one_line_and_status_2(bench, capsys):
    assert bench.main(["--variants", "nope", "--subset", "256"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: variants must be among ") and err.endswith("unknown: 'nope'") and "\n" not in err


@pytest.mark.slow
def test_phase2_accuracy_scores_every_point_of_the_run(bench):
    out = bench.phase2_accuracy(seeds=[0, 1], log=lambda line: None, **TINY)
    assert out["config"]["phase1_epochs"] == 1 and out["config"]["phase2_epochs"] == 1
    for record in out["runs"]:
        assert len(record["sequential"]) == TINY["epochs"] and len(record["replicas"]) == 2
        points = [*record["sequential"], record["phase1_end"], *record["replicas"], record["average"]]
        assert all(0.0 <= acc <= 1.0 for acc in points)
    assert {out[k] for k in ("phase1_within_noise", "replicas_within_noise", "average_within_noise")} <= {True, False}
    text = bench.phase2_report(out)
    assert "each replica before averaging" in text and "the average (the final network)" in text


def test_phase2_accuracy_needs_a_phase_2(bench, capsys):
    with pytest.raises(ValueError, match="no phase 2"):
        bench.phase2_accuracy(local_fraction=0.0, **TINY)
    assert bench.main(["--phase2-accuracy", "--local-fraction", "0", "--subset", "256"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: local_fraction 0 of 3 epochs leaves no phase 2") and "\n" not in err
