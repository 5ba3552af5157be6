"""Smoke test of benchmarks/wide_layer.py on a tiny layer: both processes run and every key is reported
(no timing thresholds)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "wide_layer.py"


def _bench():
    spec = importlib.util.spec_from_file_location("benchmarks_wide_layer", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_reports_every_kernel_with_and_without_huge_pages():
    bench = _bench()
    result = json.loads(json.dumps(bench.run(300, epsilon=2.0, micro_batches=[3, 16], repeats=1)))
    assert [run["huge_pages"] for run in result["runs"]] == [False, True]
    for run in result["runs"]:
        assert [row["batch"] for row in run["rows"]] == [3, 16]
        for row in run["rows"]:
            assert all(row["ms"][name] > 0 for name in bench.KERNELS)
    assert [row["batch"] for row in result["off_over_on"]] == [3, 16]
    assert "off / on" in bench.summary(result)


@pytest.mark.parametrize("arguments, message", [
    (["--micro-batches", "16,x"], "error: --micro-batches must be comma-separated positive integers, got '16,x'"),
    (["--micro-batches", "16,0"], "error: micro_batches must be a positive integer, got 0"),
    (["--width", "0"], "error: width must be a positive integer, got 0"),
    (["--epsilon", "0"], "error: epsilon must be a finite number > 0, got 0.0"),
    (["--repeats", "0"], "error: repeats must be a positive integer, got 0"),
])
def test_bad_arguments_are_a_one_line_error_before_any_process(arguments, message):
    completed = subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip() == message
