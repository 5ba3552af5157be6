"""Smoke test of benchmarks/set_mlp.py on a tiny network: it runs and reports every key (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "set_mlp.py"

SIZES = (20, 16, 16, 4)
EPSILON = 2.0
MEMORY_SIZES = (64, 48, 48, 2)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_set_mlp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, SIZES[0], generator=generator)  # 3 batches, the last one partial
    y = torch.randint(0, SIZES[-1], (300,), generator=generator)
    return x, y


@pytest.fixture(scope="module")
def result(bench, data):
    x, y = data
    threads = torch.get_num_threads()
    out = bench.run(x, y, sizes=SIZES, epsilon=EPSILON, repeats=1, sparselab=None,
                    memory_sizes=MEMORY_SIZES, memory_epsilon=2.0, memory_extra_epsilons=())
    assert torch.get_num_threads() == threads  # the benchmark's single thread does not leak out
    return out


def test_json_has_every_key_and_sparselab_absent_is_null(result):
    out = json.loads(json.dumps(result))  # JSON-serialisable as --json prints it
    for key in ("swatlib_s", "swatlib_torch_s", "masked_s", "dense_s"):
        assert out[key] > 0
    assert out["sparselab_s"] is None
    assert out["swatlib_over_sparselab"] is None
    assert out["swatlib_over_masked"] > 0 and out["swatlib_over_dense"] > 0
    assert out["goals"]["swatlib_over_sparselab"]["met"] is None
    assert out["goals"]["swatlib_over_masked"]["met"] in (True, False)
    assert out["swatlib_over_swatlib_torch"] > 0
    assert set(out["runs"]) == {"swatlib", "swatlib_torch", "masked", "dense"}
    assert out["environment"]["sparselab"] is None and out["n_train"] == 300
    held = out["bytes_per_connection"]
    assert set(held) == set(out["runs"]) and out["swatlib_bytes_per_connection"] == held["swatlib"]
    # value + gradient + momentum at least; the masked twin also holds every absent weight
    assert 12 < held["swatlib"] < held["masked"]
    assert out["goals"]["swatlib_bytes_per_connection"]["met"] in (True, False)


def test_native_and_torch_kernels_train_the_same_model(result):
    """Same seed, same batches, same dropout bits: the two kernel sets differ only by rounding."""
    runs = result["runs"]
    assert runs["swatlib_torch"][0]["nnz"] == runs["swatlib"][0]["nnz"]
    assert runs["swatlib_torch"][0]["last_loss"] == pytest.approx(runs["swatlib"][0]["last_loss"], rel=1e-4)


def test_same_topology_size_and_evolution_keeps_nnz(result):
    runs = result["runs"]
    assert runs["swatlib"][0]["nnz"] == runs["masked"][0]["nnz"] < runs["dense"][0]["nnz"]
    for variant in ("swatlib", "swatlib_torch", "masked"):
        assert runs[variant][0]["nnz_after"] == runs[variant][0]["nnz"]


def test_memory_numbers(bench, result):
    memory = result["memory"]
    assert memory["sizes"] == list(MEMORY_SIZES) and memory["epsilon"] == 2.0
    assert memory["nnz"] > 0 and memory["peak_rss_bytes"] >= memory["baseline_rss_bytes"] > 0
    assert memory["peak_bytes_per_connection"] > 0
    assert memory["dense_weight_bytes"] == (64 * 48 + 48 * 48 + 48 * 2) * 4
    assert [p["epsilon"] for p in memory["points"]] == [2.0]
    assert memory["slope_bytes_per_connection"] is None  # one point: no slope


def test_fit_line(bench):
    slope, intercept = bench.fit_line([1, 2, 3], [110, 120, 130])
    assert slope == pytest.approx(10) and intercept == pytest.approx(100)
    assert bench.fit_line([5, 5], [1, 2]) == (None, None)


def test_summary_marks_sparselab_absent(bench, result):
    text = bench.summary(result)
    assert "sparselab" in text and "n/a" in text and "not measurable" in text


def test_unknown_or_missing_variant_is_an_error(bench):
    with pytest.raises(ValueError, match="variant"):
        bench.build("nope", SIZES, EPSILON, 0)
    with pytest.raises(ValueError, match="sparselab"):
        bench.build("sparselab", SIZES, EPSILON, 0, sparselab=None)


def test_cli_bad_repeats_is_one_line_and_status_2_before_loading_data(bench, capsys):
    assert bench.main(["--repeats", "0", "--no-memory"]) == 2
    assert capsys.readouterr().err.strip() == "error: repeats must be a positive integer, got 0"
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        bench.run_speed(torch.zeros(4, 784), torch.zeros(4, dtype=torch.long), repeats=0)


def test_sparselab_variant_if_installed(bench, data):
    sparselab = bench.import_sparselab()
    if sparselab is None:
        pytest.skip("sparselab is not importable (it is never a swatlib dependency)")
    x, y = data
    timing = bench.time_once("sparselab", x, y, sizes=SIZES, epsilon=EPSILON, batch_size=128, seed=0,
                             sparselab=sparselab)
    assert timing["seconds"] > 0 and timing["nnz"] > 0
