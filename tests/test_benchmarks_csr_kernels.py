"""Smoke test of benchmarks/csr_kernels.py on tiny layers: it runs and reports every key (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from swatlib.sparse import native

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "csr_kernels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_csr_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reports_every_kernel_of_every_layer(bench):
    threads = torch.get_num_threads()
    result = json.loads(json.dumps(bench.run([(30, 20), (20, 20)], epsilon=2.0, batch=9, calls=2, repeats=1)))
    assert torch.get_num_threads() == threads
    assert [(layer["n_in"], layer["n_out"]) for layer in result["layers"]] == [(30, 20), (20, 20)]
    for layer in result["layers"]:
        for kernel in ("forward", "grad_input", "grad_weight", "dropout"):
            assert layer[kernel]["torch"] > 0
            assert (layer[kernel]["native_over_torch"] is not None) == native.available()
        assert layer["dropout"]["former_rand_like"] > 0
    assert "grad_weight" in bench.summary(result)


@pytest.mark.parametrize("arguments, message", [
    (["--calls", "0"], "error: calls must be a positive integer, got 0"),
    (["--repeats", "-1"], "error: repeats must be a positive integer, got -1"),
])
def test_bad_arguments_are_one_line_and_status_2_before_any_timing(bench, capsys, arguments, message):
    assert bench.main(arguments) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == message and captured.out == ""
