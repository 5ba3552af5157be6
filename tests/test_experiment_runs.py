"""The run plumbing every notebook family shares (swatlib.experiments.runs): the cache, ``jobs``,
worker processes, failures and Ctrl-C.

The toy computations below are module-level so that the spawned workers can import them by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import swatlib
from swatlib.cache import ResultsCache
from swatlib.data import DatasetNotFoundError
from swatlib.experiments import runs, swat
from swatlib.experiments import truly_sparse as ts


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(runs.JOBS_VARIABLE, raising=False)


def double(spec, log):
    """A toy run: says what it does, and where and how it ran."""
    if spec["dataset"] == "missing":
        raise DatasetNotFoundError("Missing-set not found: run `python -m swatlib.data ensure missing`")
    if spec["value"] == 3:
        raise ValueError("three is not allowed")
    if spec["value"] == 4:
        os._exit(4)
    log(f"doubling {spec['value']}")
    return {"double": 2 * spec["value"], "pid": os.getpid(), "threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"), "finished_ns": time.monotonic_ns()}


def _timed_from_ten(spec):
    return spec["value"] >= 10


DOUBLE = runs.Family(compute=double, describe=lambda spec: f"value {spec['value']}")


def _specs(*values, dataset="toy"):
    return [{"experiment": "test/runs", "dataset": dataset, "value": v} for v in values]


@pytest.fixture
def started(monkeypatch):
    """The workers ``run_many`` starts, recorded."""
    workers = []
    start = runs._start_worker

    def recording(context, compute, into):
        start(context, compute, into)
        workers.append(into[-1])

    monkeypatch.setattr(runs, "_start_worker", recording)
    return workers


def _no_worker_may_start(monkeypatch):
    monkeypatch.setattr(runs, "_start_worker", lambda *args: pytest.fail("a worker was started"))


# --------------------------------------------------------------------------- jobs
def test_jobs_come_from_the_argument_the_environment_or_default_to_one(monkeypatch):
    assert runs.resolve_jobs(None) == 1
    assert runs.resolve_jobs(3) == 3
    monkeypatch.setenv(runs.JOBS_VARIABLE, "2")
    assert runs.resolve_jobs(None) == 2 and runs.resolve_jobs(1) == 1
    monkeypatch.setenv(runs.JOBS_VARIABLE, "auto")
    assert runs.resolve_jobs(None) == len(os.sched_getaffinity(0))
    monkeypatch.setenv(runs.JOBS_VARIABLE, "many")
    with pytest.raises(ValueError, match="SWATLIB_JOBS must be a positive integer or 'auto', got 'many'"):
        runs.resolve_jobs(None)
    for bad in (0, -1, True, 1.5, "0"):
        with pytest.raises(ValueError, match="jobs must be a positive integer"):
            runs.resolve_jobs(bad)


# --------------------------------------------------------------------------- one process
def test_one_job_runs_in_this_process_in_spec_order_each_distinct_spec_once():
    lines = []
    out = runs.run_many(DOUBLE, _specs(2, 1, 2), log=lines.append, jobs=1)
    assert [r.result["double"] for r in out] == [4, 2, 4]
    assert {r.result["pid"] for r in out} == {os.getpid()}
    assert lines == ["doubling 2", "doubling 1"] and out[0] is out[2]


# --------------------------------------------------------------------------- workers
@pytest.mark.slow
def test_workers_train_each_uncached_spec_once_and_answer_in_spec_order(monkeypatch, started):
    cached = runs.run(DOUBLE, _specs(5)[0], log=lambda line: None)  # trained here beforehand
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    lines = []
    out = runs.run_many(DOUBLE, _specs(1, 5, 2, 1, 2), log=lines.append, jobs=4)
    assert [r.result["double"] for r in out] == [2, 10, 4, 2, 4]
    assert out[0] is out[3] and out[2] is out[4]
    assert out[1].result == cached.result  # answered from the cache, not retrained
    assert len(started) == 2  # two uncached runs: two workers, not four
    pooled = [out[0].result, out[2].result]
    assert {r["pid"] for r in pooled} == {w.process.pid for w in started} and os.getpid() not in {r["pid"] for r in pooled}
    assert all(r["threads"] == 1 and r["omp"] == "1" for r in pooled)
    assert os.environ["OMP_NUM_THREADS"] == "7"  # restored after the workers started
    assert sorted(lines) == ["doubling 1", "doubling 2"]  # each worker's log reaches the caller
    assert not any(w.process.is_alive() for w in started)
    again = runs.run_many(DOUBLE, _specs(1, 2), jobs=2, log=lines.append)  # all cached now: no worker
    assert [r.result for r in again] == pooled and len(started) == 2 and len(lines) == 2


def test_cached_specs_are_answered_without_starting_workers(monkeypatch):
    runs.run_many(DOUBLE, _specs(1, 2), log=lambda line: None, jobs=1)
    _no_worker_may_start(monkeypatch)
    out = runs.run_many(DOUBLE, _specs(2, 1), log=lambda line: None, jobs=2)
    assert [r.result["double"] for r in out] == [4, 2]


@pytest.mark.slow
def test_timed_runs_train_alone_here_after_the_pool():
    family = dataclasses.replace(DOUBLE, is_timed=_timed_from_ten)
    out = runs.run_many(family, _specs(10, 1, 2, 11), log=lambda line: None, jobs=2)
    timed, pooled = [out[0].result, out[3].result], [out[1].result, out[2].result]
    assert {r["pid"] for r in timed} == {os.getpid()} and os.getpid() not in {r["pid"] for r in pooled}
    assert min(r["finished_ns"] for r in timed) > max(r["finished_ns"] for r in pooled)
    assert timed[0]["finished_ns"] < timed[1]["finished_ns"]  # in spec order


@pytest.mark.slow
def test_the_paper_profiles_truly_sparse_runs_are_timed_so_they_never_go_to_workers(monkeypatch):
    overrides = {"fashion-mnist": {"subset": [64, 32], "sizes": [784, 8, 10], "epochs": 1}}
    spec = ts.make_spec("fashion-mnist", "dense", "relu", False, seed=0, profile="paper", overrides=overrides)
    assert ts.FAMILY.is_timed(spec)
    assert not ts.FAMILY.is_timed({**spec, "profile": "quick"})   # quick's minutes are not the paper's
    _no_worker_may_start(monkeypatch)
    assert ts.run_many([spec, spec], log=lambda line: None, jobs=2)[0].ok


@pytest.mark.slow
def test_a_failing_run_fails_the_call_with_the_workers_traceback(started):
    with pytest.raises(RuntimeError, match="(?s)value 3 failed in a worker process:.*Traceback.*"
                                           "ValueError: three is not allowed"):
        runs.run_many(DOUBLE, _specs(1, 3), log=lambda line: None, jobs=2)
    assert ResultsCache().load(_specs(3)[0]) is None
    assert started and not any(w.process.is_alive() for w in started)


@pytest.mark.slow
def test_a_worker_that_dies_fails_the_call_with_its_exit_code(started):
    with pytest.raises(RuntimeError, match=r"training value 4 died \(exit code 4\)"):
        runs.run_many(DOUBLE, _specs(4, 1), log=lambda line: None, jobs=2)
    assert not any(w.process.is_alive() for w in started)


@pytest.mark.slow
def test_an_absent_dataset_found_by_a_worker_is_a_result_or_the_loaders_error():
    family = dataclasses.replace(DOUBLE, absent_is_a_result=True)
    lines = []
    out = runs.run_many(family, _specs(1, 2, dataset="missing") + _specs(1), log=lines.append, jobs=2)
    assert [r.status for r in out] == [runs.ABSENT, runs.ABSENT, "ok"]
    assert "run `python -m swatlib.data ensure missing`" in out[0].message
    assert lines == ["missing: not run: dataset absent (Missing-set not found)", "doubling 1"]
    with pytest.raises(DatasetNotFoundError, match="Missing-set not found"):
        runs.run_many(DOUBLE, _specs(1, 2, dataset="missing"), log=lambda line: None, jobs=2)


# --------------------------------------------------------------------------- determinism
_TIMING = {"seconds", "eval_seconds", "topology_seconds", "train_seconds", "wall_seconds"}


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in _TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _same_tensors(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.mark.slow
def test_a_run_trained_in_a_worker_is_bit_identical_to_the_run_trained_here(tmp_path, monkeypatch):
    tiny = dict(model="cnn", width=2, subset=[192, 64], epochs=1, batch_size=64, profile="test")
    swat_specs = [swat.make_spec("swat-m", 0.3, **tiny), swat.make_spec("rigl", 0.3, rigl_delta_t=2, **tiny)]
    ts_spec = ts.make_spec("fashion-mnist", "set", "all_relu", True, seed=0, profile="test", overrides={
        "fashion-mnist": {"subset": [64, 32], "sizes": [784, 16, 16, 10], "epochs": 2, "ip_start": 1, "ip_every": 1}})
    parallel_ts = dataclasses.replace(ts.FAMILY, is_timed=lambda spec: False)  # allowed into the pool here
    outcomes = {}
    for where, jobs in (("here", 1), ("workers", 2)):
        monkeypatch.setenv("SWATLIB_CACHE", str(tmp_path / where))
        outcomes[where] = (swat.run_many(swat_specs, log=lambda line: None, jobs=jobs)
                           + runs.run_many(parallel_ts, [ts_spec], log=lambda line: None, jobs=jobs))
    for here, there in zip(outcomes["here"], outcomes["workers"]):
        assert json.dumps(_without_timing(here.result), sort_keys=True) == \
            json.dumps(_without_timing(there.result), sort_keys=True)
    assert _same_tensors(outcomes["here"][-1].tensors, outcomes["workers"][-1].tensors)


# --------------------------------------------------------------------------- Ctrl-C
_INTERRUPTED = '''
import os
import time
from pathlib import Path

from swatlib.experiments import runs


def compute(spec, log):
    (Path(os.environ["MARKS"]) / f"{spec['name']} {os.getpid()}").write_text("")
    while spec["slow"]:  # until stopped
        time.sleep(0.01)
    return {"name": spec["name"]}


if __name__ == "__main__":
    family = runs.Family(compute=compute, describe=lambda spec: spec["name"])
    specs = [{"dataset": "toy", "name": name, "slow": name != "quick"} for name in ("quick", "slow-1", "slow-2")]
    runs.run_many(family, specs, jobs=2)
'''


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("to_the_group", [True, False], ids=["sigint-to-process-group", "sigint-to-parent"])
def test_ctrl_c_stops_every_worker_and_leaves_no_entry_for_unfinished_runs(tmp_path, to_the_group):
    script, marks, cache = tmp_path / "interrupted.py", tmp_path / "marks", tmp_path / "cache"
    script.write_text(textwrap.dedent(_INTERRUPTED))
    marks.mkdir()
    env = {**os.environ, "SWATLIB_CACHE": str(cache), "MARKS": str(marks),
           "PYTHONPATH": str(Path(swatlib.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a guard against hanging, not a performance bound
        while {m.name.split()[0] for m in marks.iterdir()} != {"quick", "slow-1", "slow-2"}:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"the runs did not all start: {proc.communicate()}")
            time.sleep(0.05)
        (os.killpg if to_the_group else os.kill)(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)  # the slow runs never end by themselves
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    workers = {int(m.name.split()[1]) for m in marks.iterdir()}
    assert len(workers) == 2 and not any(_running(pid) for pid in workers)
    store = ResultsCache(cache)
    assert store.load({"dataset": "toy", "name": "quick", "slow": False}) is not None
    for name in ("slow-1", "slow-2"):
        assert store.load({"dataset": "toy", "name": name, "slow": True}) is None
    assert not list(cache.rglob("*.tmp"))
