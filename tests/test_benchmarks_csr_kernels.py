"""Smoke test of benchmarks/csr_kernels.py on tiny layers: it runs and reports every key (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from swatlib.sparse import native

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "csr_kernels.py"


def test_reports_every_kernel_of_every_layer():
    spec = importlib.util.spec_from_file_location("benchmarks_csr_kernels", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
