"""Smoke test of benchmarks/toy_bert.py: the smoke profile's model on a fake tiny corpus — it runs and
reports every variant and ratio (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from swatlib.experiments import toy_bert
from swatlib.reproduce import load_profile

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DENSITIES = (0.5, 0.1)
NAMES = ["dense", "sparse-0.5", "masked-0.5", "swat-0.5", "sparse-0.1", "masked-0.1", "swat-0.1"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_toy_bert", BENCHMARKS / "toy_bert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def specs(bench):
    return bench.variant_specs(load_profile("smoke")[bench.NOTEBOOK], DENSITIES, profile="smoke")


@pytest.fixture(scope="module")
def prepared(specs):
    """Random token windows and embedding of the smoke profile's sizes, instead of WordNet."""
    corpus, width = specs["dense"]["corpus"], specs["dense"]["model"]["width"]
    generator = torch.Generator().manual_seed(0)
    windows = torch.randint(3, corpus["vocab"], (80, corpus["seq"]), generator=generator)
    return toy_bert.Prepared(train=windows[:64], held_out=windows[64:], embedding=torch.randn(corpus["vocab"], width),
                             embedding_flops=0.0, embedding_seconds=0.0, unigram_entropy=0.0,
                             vocab_size=corpus["vocab"], glosses=(0, 0), tokens=(0, 0), source="random")


@pytest.fixture(scope="module")
def result(bench, specs, prepared):
    threads = torch.get_num_threads()
    out = bench.run(specs, prepared=prepared, repeats=2, steps=2, warmup=1)
    assert torch.get_num_threads() == threads  # the benchmark's thread count does not leak out
    return out


def test_variants_are_the_study_timing_specs(bench, specs):
    assert list(specs) == NAMES
    timing = toy_bert.build_specs(profile="smoke", variants=[], cap=1.0, kind="masked",
                                  timing_variants=[{"method": m, "density": d} for d in DENSITIES
                                                   for m in ("rigl", "swat")],
                                  **{k: load_profile("smoke")[bench.NOTEBOOK][k]
                                     for k in ("seeds", "corpus", "model", "train")})["timing"]
    assert specs["dense"] == timing[0] and specs["sparse-0.5"] == timing[1] and specs["sparse-0.1"] == timing[3]
    assert specs["masked-0.1"] == dict(timing[3], kind="masked")
    assert specs["swat-0.5"] == timing[2] and specs["swat-0.1"] == timing[4] and timing[4]["kind"] == "swat"
    assert {s["kind"] for n, s in specs.items() if n.startswith("sparse")} == {"sparse"}


def test_json_has_every_variant_and_ratio(result):
    out = json.loads(json.dumps(result))  # JSON-serialisable, as --json prints it
    assert list(out["variants"]) == NAMES
    for name, v in out["variants"].items():
        assert v["step_s"] > 0 and v["step_cpu_s"] > 0 and v["eval_s"] > 0 and len(v["step_s_all"]) == 2
        assert v["step_over_dense"] > 0 and v["cpu_over_dense"] > 0
        assert v["eval_over_dense"] > 0 and v["eval_cpu_over_dense"] > 0
        assert ("step_over_masked" in v) == ("cpu_over_masked" in v) == name.startswith("sparse-")
        assert v["kind"] == name.split("-")[0]
    dense = out["variants"]["dense"]
    assert dense["step_over_dense"] == dense["flops_over_dense"] == 1.0 and dense["density"] == 1.0
    for d in DENSITIES:
        sparse, masked = out["variants"][f"sparse-{d:g}"], out["variants"][f"masked-{d:g}"]
        assert sparse["density"] == pytest.approx(d, abs=0.02) and masked["density"] == sparse["density"]
        assert sparse["step_over_masked"] == pytest.approx(sparse["step_s"] / masked["step_s"])
        assert sparse["cpu_over_masked"] == pytest.approx(sparse["step_cpu_s"] / masked["step_cpu_s"])
        # same topology: the same ledger FLOPs, below dense (only the encoder linears shrink)
        assert sparse["flops_over_dense"] == masked["flops_over_dense"] < 1.0
        # SWAT: the same products, but AdamW over every weight and its Top-K selections
        swat = out["variants"][f"swat-{d:g}"]
        assert swat["density"] == d and sparse["flops_over_dense"] < swat["flops_over_dense"] < 1.0
    assert out["variants"]["sparse-0.1"]["flops_over_dense"] < out["variants"]["sparse-0.5"]["flops_over_dense"]
    load = out["environment"]["load_average"]
    assert len(load["before"]) == len(load["after"]) == 3
    assert out["busy_machine"] == (load["before"][0] > out["busy_threshold"])
    assert out["threads"] == 1 and out["profile"] == "smoke" and out["held_out_windows"] == 16


def test_summary_is_a_markdown_table_of_every_variant(bench, result):
    text = bench.summary(result)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(NAMES) and all(row.count("|") == 12 for row in rows)
    assert [row.split("|")[1].strip() for row in rows[1:]] == NAMES
    assert result["environment"]["torch"] in text
    assert ("BUSY MACHINE" in text) == result["busy_machine"]


def test_without_evaluation_the_eval_columns_are_empty(bench, specs, prepared):
    out = bench.run({n: specs[n] for n in NAMES[:3]}, prepared=prepared, repeats=1, steps=1, warmup=0,
                    evaluate=False)
    assert all(v["eval_s"] is None and v["eval_over_dense"] is None and v["eval_cpu_over_dense"] is None
               for v in out["variants"].values())
    assert "| — |" in bench.summary(out)


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "repeats"),
    (["--warmup", "-1"], "warmup"),
    (["--densities", "1.5"], "densities must be in (0, 1]"),
    (["--densities", "0.5", "0.5"], "densities must be distinct"),
])
def test_cli_bad_input_is_one_line_and_status_2(bench, capsys, argv, message):
    assert bench.main(argv) == 2  # before any corpus is loaded
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_cli_prints_the_table_and_writes_the_json(bench, prepared, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(toy_bert, "prepared_for", lambda spec: prepared)  # the fake corpus, not WordNet
    path = tmp_path / "toy_bert.json"
    argv = ["--profile", "smoke", "--densities", "0.2", "--repeats", "1", "--steps", "1", "--warmup", "0",
            "--no-eval", "--json", str(path)]
    assert bench.main(argv) == 0
    out = json.loads(path.read_text())
    assert list(out["variants"]) == ["dense", "sparse-0.2", "masked-0.2", "swat-0.2"] and out["repeats"] == 1
    assert "| sparse-0.2 | 0.20 |" in capsys.readouterr().out


def test_sparse_and_masked_twins_draw_the_same_batches_and_compute_the_same_loss(specs, prepared):
    sparse = toy_bert.build_run(specs["sparse-0.5"], prepared)
    masked = toy_bert.build_run(specs["masked-0.5"], prepared)
    batch = next(sparse[1].batches(8, sparse[5]))
    assert all(torch.equal(a, b) for a, b in zip(batch, next(masked[1].batches(8, masked[5]))))
    assert sparse[1].loss(sparse[0], batch).item() == pytest.approx(masked[1].loss(masked[0], batch).item(), rel=1e-5)
