"""Smoke test of benchmarks/swat.py on a tiny CNN: it runs and reports every number (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "swat.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_swat", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(bench):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (8,), generator=generator)
    threads = torch.get_num_threads()
    out = bench.run(x, y, width=2, densities=(0.5, 0.1), repeats=2, steps=1, warmup=0)
    assert torch.get_num_threads() == threads  # the benchmark's single thread does not leak out
    return out


def test_json_has_every_variant_and_number(result):
    out = json.loads(json.dumps(result))  # JSON-serialisable, as --json prints it
    assert list(out["variants"]) == ["dense", "swat-0.5", "swat-0.1"]
    for v in out["variants"].values():
        assert v["step_s"] > 0 and v["forward_s"] > 0 and v["backward_update_s"] > 0
        assert len(v["step_s_all"]) == 2
        assert v["saved_bytes"] == v["saved_activation_bytes"] + v["saved_weight_bytes"] > 0
        assert v["flops_per_example"] > 0
        assert v["peak_step_bytes"] >= v["peak_forward_bytes"] > 0
    assert out["variants"]["dense"]["time_over_dense"] == 1.0
    assert out["variants"]["dense"]["peak_over_dense"] == 1.0
    assert len(out["environment"]["load_average"]["before"]) == 3
    assert out["environment"]["torch"] == torch.__version__ and out["threads"] == 1


def test_swat_saves_less_and_measures_fewer_flops_as_density_falls(result):
    v = result["variants"]
    assert v["swat-0.1"]["saved_weight_bytes"] < v["swat-0.5"]["saved_weight_bytes"] < v["dense"]["saved_weight_bytes"]
    assert v["swat-0.1"]["saved_activation_bytes"] < v["dense"]["saved_activation_bytes"]
    assert v["swat-0.1"]["flops_per_example"] < v["swat-0.5"]["flops_per_example"] < v["dense"]["flops_per_example"]
    assert v["dense"]["dense_flops_per_example"] == v["swat-0.1"]["dense_flops_per_example"]


def test_summary_names_the_machine_and_every_variant(bench, result):
    text = bench.summary(result)
    assert result["environment"]["torch"] in text
    assert all(name in text for name in result["variants"])


@pytest.mark.parametrize("arguments, match", [
    (dict(repeats=0), "repeats must be a positive integer, got 0"),
    (dict(steps=0), "steps must be a positive integer, got 0"),
    (dict(threads=0), "threads must be a positive integer, got 0"),
    (dict(warmup=-1), "warmup must be an integer >= 0, got -1"),
    (dict(densities=(0.5, 0.0)), r"densities must be in \(0, 1\]"),
])
def test_bad_arguments_are_refused_before_any_model_is_built(bench, arguments, match):
    x, y = torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        bench.run(x, y, **{"width": 2, "repeats": 1, "steps": 1, "warmup": 0, **arguments})


def test_cli_bad_batch_size_is_one_line_and_status_2(bench, capsys):
    assert bench.main(["--batch-size", "-5"]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch-size must be a positive integer, got -5"
