"""The toy-BERT study's plumbing: targets, interpolation, the densifying-RigL idea, and a whole tiny
study on a tiny corpus in WordNet's format (no real corpus needed)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from swatlib.data import _files, wordnet
from swatlib.experiments import toy_bert as tb
from swatlib.sparse import SparseLinear
from swatlib.topology import Densify
from test_wordnet import GLOSSES, write_corpus


def history(losses, densities=None, every=100, flops_per_step=10.0):
    densities = densities or [1.0] * len(losses)
    return [{"step": i * every, "test_loss": loss, "flops": i * every * flops_per_step, "density": d}
            for i, (loss, d) in enumerate(zip(losses, densities))]


def test_crossing_interpolates_between_evaluations():
    h = history([8.0, 6.0, 5.0, 4.0])
    assert tb._crossing(h, 5.5, "step") == pytest.approx(150.0)
    assert tb._crossing(h, 5.5, "flops") == pytest.approx(1500.0)
    assert tb._crossing(h, 6.0, "step") == pytest.approx(100.0)
    assert tb._crossing(h, 3.0, "step") is None
    assert tb._crossing(h, 9.0, "step") == 0.0


def test_targets_are_the_dense_loss_at_fractions_of_its_steps():
    h = history([8.0, 7.0, 6.0, 5.0, 4.0])
    assert tb.targets_of(h) == {0.25: 7.0, 0.5: 6.0, 0.75: 5.0, 1.0: 4.0}


def test_average_density_weights_each_interval_by_the_steps_used():
    h = history([8.0, 7.0, 6.0, 5.0], densities=[1.0, 1.0, 0.5, 0.2])
    assert tb.average_density(h, 200) == pytest.approx(0.75)
    assert tb.average_density(h, 250) == pytest.approx((100 + 50 + 0.2 * 50) / 250)


def test_steps_to_targets_marks_unreached_targets():
    rows = tb.steps_to_targets(history([8.0, 7.0, 6.5]), {0.5: 7.0, 1.0: 6.0})
    assert rows[0]["steps"] == 100 and rows[0]["average_density"] == 1.0
    assert rows[1]["steps"] is None and rows[1]["flops"] is None


def test_densify_grows_linearly_with_zero_weights():
    layer = SparseLinear(20, 10, density=0.1, generator=torch.Generator().manual_seed(0))
    before = dict(zip(zip(*[t.tolist() for t in layer.connections()[:2]]), layer.connections()[2].tolist()))
    grow = Densify([layer], final_density=0.5, t_end=4, delta_t=2, generator=torch.Generator().manual_seed(1))
    counts = []
    for _ in range(6):
        grow.step()
        counts.append(layer.nnz)
    assert counts == [20, 60, 60, 100, 100, 100]
    rows, cols, values = layer.connections()
    now = dict(zip(zip(rows.tolist(), cols.tolist()), values.tolist()))
    assert all(now[key] == value for key, value in before.items())
    assert all(value == 0.0 for key, value in now.items() if key not in before)
    with pytest.raises(ValueError, match="final_density"):
        Densify([layer], final_density=1.5, t_end=4)
    with pytest.raises(ValueError, match="t_end"):
        Densify([layer], final_density=0.5, t_end=4, delta_t=5)


def test_densify_reaches_its_density_when_t_end_is_not_a_multiple_of_delta_t():
    layer = SparseLinear(20, 10, density=0.1, generator=torch.Generator().manual_seed(0))
    grow = Densify([layer], final_density=0.3, t_end=7, delta_t=2)
    for _ in range(9):
        grow.step()
    assert layer.nnz == 60


# ----------------------------------------------------------------------------- a whole tiny study
@pytest.fixture
def tiny_corpus(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("SWATLIB_DATA", str(data))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_files, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(wordnet, "SYSTEM_DIR", tmp_path / "none")
    # enough text for a few windows: the tiny glosses, repeated with numbered variants
    big = {name: [f"{g} {i}" for i in range(12) for g in glosses] for name, glosses in GLOSSES.items()}
    monkeypatch.setattr(wordnet, "SHA256", write_corpus(data / "wordnet", big))
    tb.prepare.cache_clear()
    yield
    tb.prepare.cache_clear()


def test_a_tiny_study_end_to_end(tiny_corpus):
    corpus = dict(vocab=48, seq=8, max_glosses=None, held_out_windows=8)
    model = dict(width=16, depth=1, heads=2, ffn=32)
    train = dict(steps=40, batch=4, lr=1.0e-2, weight_decay=0.01, warmup=5, eval_every=10, threads=1,
                 timing_warmup=1, timing_steps=2)
    variants = [dict(method=m, density=0.3, delta_t=10) for m in ("rigl", "set", "gmp")]
    variants += [dict(method="rigl-densify", initial_density=0.2, density=0.4, delta_t=10),
                 dict(method="swat", density=0.3)]
    specs = tb.build_specs(profile="test", seeds=[0], variants=variants, corpus=corpus, model=model, train=train,
                           cap=1.5, kind="masked", timing_variants=[dict(method="rigl", density=0.3, delta_t=10)])
    assert [s["kind"] for s in specs["variants"]] == ["masked"] * 4 + ["swat"]
    results = tb.run_all(specs, jobs=1, log=lambda _: None)
    dense = results["dense"][0].result["history"]
    assert [h["step"] for h in dense] == [0, 10, 20, 30, 40]
    assert dense[-1]["test_loss"] < dense[0]["test_loss"]
    assert all(b["flops"] > a["flops"] for a, b in zip(dense, dense[1:]))
    lowest = min(tb.targets_of(dense).values())
    for run in results["variants"]:   # each stops at the lowest target, or at the cap (1.5 × 40 steps)
        losses = [h["test_loss"] for h in run.result["history"]]
        assert run.spec["stop_loss"] == lowest
        assert all(loss > lowest for loss in losses[:-1])
        assert losses[-1] <= lowest or run.result["history"][-1]["step"] == 60
    gmp = next(r for r in results["variants"] if r.spec["method"] == "gmp").result
    densities = [h["density"] for h in gmp["history"]]   # it prunes, from dense (tests/test_toy_bert.py: to 0.3)
    assert densities[1] == 1.0 and all(b <= a for a, b in zip(densities, densities[1:]))
    assert all(d < 1.0 for d in gmp["final_densities"].values())
    # FLOPs per step of a sparse run are below the dense run's
    rigl = next(r for r in results["variants"] if r.spec["method"] == "rigl").result["history"]
    assert rigl[1]["flops"] < dense[1]["flops"]
    # SWAT: the same products as RigL's sparse steps, but AdamW over every weight and its Top-K selections
    swat = next(r for r in results["variants"] if r.spec["method"] == "swat").result
    assert swat["final_densities"] == {name: 0.3 for name in swat["final_densities"]}
    assert rigl[1]["flops"] < swat["history"][1]["flops"] < dense[1]["flops"]
    table = tb.net_time_table(results)
    assert set(table["variant"]) == {"dense", "rigl d=0.3", "set d=0.3", "gmp d=0.3", "rigl-densify d=0.2→0.4",
                                     "swat d=0.3"}
    dense_rows = table[table["variant"] == "dense"]
    assert (dense_rows["net_time_min"] == dense_rows["wall_time_dense_hw_min"]).all()
    reached = table[(table["variant"] == "rigl d=0.3") & (table["steps"] < math.inf)]
    assert (reached["net_time_min"] < reached["dense_equivalent_min"]).all()   # only a share of FLOPs shrinks
    assert results["timing"][1].result["seconds_per_step"] > 0


@given(losses=st.lists(st.floats(1.0, 9.0), min_size=2, max_size=30),
       densities=st.lists(st.floats(0.05, 1.0), min_size=30, max_size=30),
       targets=st.lists(st.floats(1.0, 9.0), min_size=1, max_size=4))
def test_stopping_at_the_lowest_target_changes_no_score(losses, densities, targets):
    """A variant stops at its first evaluation at or below the lowest target: every target's steps,
    FLOPs and average density are those of the run trained to the cap (targets in any order)."""
    full = history(losses, densities[:len(losses)])
    lowest = min(targets)
    stop = next((i for i, h in enumerate(full) if i > 0 and h["test_loss"] <= lowest), len(full) - 1)
    by_target = dict(enumerate(targets))
    assert tb.steps_to_targets(full[:stop + 1], by_target) == tb.steps_to_targets(full, by_target)


def test_ideas_are_compared_with_uniform_rigl_at_their_average_density():
    import pandas as pd

    rows = [("dense", 1.0, 100.0), ("rigl d=0.5", 0.5, 60.0), ("rigl d=0.2", 0.2, 30.0), ("rigl d=0.1", 0.1, 25.0),
            ("set d=0.2", 0.2, 27.0), ("gmp d=0.2", 0.35, 50.0), ("rigl d=0.2 ffn only", 0.8, 40.0),
            ("rigl-densify d=0.1→0.3", 0.15, math.inf)]
    table = pd.DataFrame([{"variant": v, "seed": seed, "target": 1.0, "average_density": d, "gflops": g}
                          for v, d, g in rows for seed in (0, 1)])
    out = tb.against_reference(table, 1.0).set_index("variant")
    assert list(out.index) == ["set d=0.2", "gmp d=0.2", "rigl d=0.2 ffn only", "rigl-densify d=0.1→0.3"]
    assert out.loc["set d=0.2", "over_reference"] == pytest.approx(27.0 / 30.0)
    assert out.loc["gmp d=0.2", "reference_gflops"] == pytest.approx(45.0)   # halfway between 30 and 60
    assert math.isnan(out.loc["rigl d=0.2 ffn only", "reference_gflops"])   # beyond the curve's densities
    assert math.isnan(out.loc["rigl-densify d=0.1→0.3", "over_reference"])   # never reached the target


@pytest.mark.parametrize("variant, match", [
    ({"method": "lottery", "density": 0.2}, "method"),
    ({"method": "rigl", "density": 0.0}, "density"),
    ({"method": "rigl-densify", "density": 0.2}, "initial_density"),
    ({"method": "rigl-densify", "density": 0.2, "initial_density": 0.5}, "initial_density"),
])
def test_build_specs_validates_variants(variant, match):
    with pytest.raises(ValueError, match=match):
        tb.build_specs(profile="test", seeds=[0], variants=[variant], corpus={}, model={}, train={"steps": 10, "eval_every": 5},
                       cap=1.0, kind="masked", timing_variants=[])


@pytest.mark.parametrize("arguments, match", [
    ({"seeds": []}, "seeds must list at least one seed"),
    ({"seeds": [0, -1]}, "each seed must be an integer >= 0, got -1"),
    ({"seeds": [1, 1]}, r"seeds must be distinct, got \[1, 1\]"),
    ({"kind": "swat"}, "kind must be one of masked, sparse, got 'swat'"),
    ({"cap": -1}, r"cap must be a finite number with cap × steps >= eval_every \(5\), got -1"),
    ({"cap": 0.4}, "cap must be a finite number"),
    ({"cap": float("inf")}, "cap must be a finite number"),
    ({"train": {"steps": 0, "eval_every": 5}}, "train: steps must be a positive integer, got 0"),
])
def test_build_specs_refuses_bad_study_settings_before_anything_trains(arguments, match):
    settings = dict(profile="test", seeds=[0], variants=[{"method": "rigl", "density": 0.2}], corpus={}, model={},
                    train={"steps": 10, "eval_every": 5}, cap=1.5, kind="masked", timing_variants=[])
    with pytest.raises(ValueError, match=match):
        tb.build_specs(**{**settings, **arguments})
