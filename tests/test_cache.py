"""The results cache: keys, atomic writes, locking, corruption, force."""

import json
import multiprocessing
import os
import time

import pytest
import torch

from swatlib.atomic import atomic_path
from swatlib.cache import ResultsCache, canonical_json, config_key

CONFIG = {"dataset": "fashion-mnist", "model": "mlp", "densities": [0.2, 0.1], "seed": 0, "epochs": 2}


@pytest.fixture
def cache(tmp_path):
    lines = []
    c = ResultsCache(tmp_path / "cache", log=lines.append)
    c.lines = lines
    return c


def test_key_depends_on_every_field_and_code_version():
    base = config_key(CONFIG)
    assert config_key(dict(reversed(list(CONFIG.items())))) == base  # order does not matter
    for field, value in [("seed", 1), ("epochs", 3), ("densities", [0.2, 0.05]), ("profile", "smoke")]:
        assert config_key({**CONFIG, field: value}) != base
    assert config_key(CONFIG, code_version="other") != base


def test_unhashable_config_is_rejected():
    with pytest.raises(TypeError):
        canonical_json({"weights": torch.zeros(2)})
    with pytest.raises(ValueError):
        canonical_json({"lr": float("nan")})


def test_miss_then_hit_computes_once(cache):
    calls = []

    def compute():
        calls.append(1)
        return {"acc": 0.9, "curve": (1, 2)}, {"w": torch.arange(4.0)}

    first = cache.get_or_compute(CONFIG, compute)
    second = cache.get_or_compute(CONFIG, compute)
    assert len(calls) == 1
    assert first.result == second.result == {"acc": 0.9, "curve": [1, 2]}
    assert torch.equal(second.tensors["w"], torch.arange(4.0))
    doc = json.loads(cache._json_path(first.key).read_text())  # readable JSON
    assert doc["config"] == CONFIG and doc["result"]["acc"] == 0.9


def test_corrupt_entry_is_reported_and_recomputed(cache):
    entry = cache.get_or_compute(CONFIG, lambda: {"acc": 1})
    path = cache._json_path(entry.key)
    path.write_text(path.read_text()[:20])  # truncated
    again = cache.get_or_compute(CONFIG, lambda: {"acc": 2})
    assert again.result == {"acc": 2}
    assert len(cache.lines) == 1 and "corrupt" in cache.lines[0] and "\n" not in cache.lines[0]


def test_tampered_tensor_file_is_detected(cache):
    entry = cache.get_or_compute(CONFIG, lambda: ({"acc": 1}, {"w": torch.ones(3)}))
    tensor_path = cache._tensor_path(entry.key)
    tensor_path.write_bytes(tensor_path.read_bytes()[:-5])
    again = cache.get_or_compute(CONFIG, lambda: ({"acc": 3}, {"w": torch.zeros(3)}))
    assert again.result == {"acc": 3} and "checksum" in cache.lines[0]


def test_failed_or_interrupted_compute_leaves_no_entry(cache):
    def crash():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(CONFIG, crash)
    assert cache.load(CONFIG) is None


def test_interrupted_write_leaves_nothing_half_written(cache, monkeypatch):
    import swatlib.cache as mod

    def interrupted_write(target, data):
        with atomic_path(target) as tmp:
            tmp.write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(mod, "atomic_write_bytes", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        cache.store(CONFIG, {"acc": 1})
    assert cache.load(CONFIG) is None
    assert [p for p in cache.root.rglob("*") if p.is_file() and not p.name.endswith(".lock")] == []


def test_force_argument_and_force_before_environment(cache, monkeypatch):
    cache.get_or_compute(CONFIG, lambda: {"v": 1})
    assert cache.get_or_compute(CONFIG, lambda: {"v": 2}, force=True).result == {"v": 2}
    monkeypatch.setenv("SWATLIB_FORCE_BEFORE", repr(time.time() + 1))
    assert cache.get_or_compute(CONFIG, lambda: {"v": 3}).result == {"v": 3}
    monkeypatch.setenv("SWATLIB_FORCE_BEFORE", repr(time.time() - 3600))
    assert cache.get_or_compute(CONFIG, lambda: {"v": 4}).result == {"v": 3}


def test_environment_variable_overrides_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path / "elsewhere"))
    assert ResultsCache().root == tmp_path / "elsewhere"


def _slow_compute(root, counter):
    c = ResultsCache(root)

    def compute():
        with open(counter, "a") as fh:
            fh.write("x")
        time.sleep(0.5)
        return {"pid": os.getpid()}

    return c.get_or_compute(CONFIG, compute).result


def test_two_processes_never_train_the_same_config_twice(tmp_path):
    counter = tmp_path / "calls"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_slow_compute, [(tmp_path / "c", counter)] * 2)
    assert counter.read_text() == "x"
    assert results[0] == results[1]
