"""WASAP-SGD / WASSP-SGD (swatlib.parallel): equalities with the sequential loop and the simulator,
RetainValidUpdates against a dense masked reference, averaging, faults, torchrun, bad input.

Process-launching tests use a tiny SET-MLP on 600 Fashion-MNIST images; they check results, never time.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swatlib.experiments import runs
from swatlib.experiments.truly_sparse import build_model, make_spec
from swatlib.optim import make_optimizer
from swatlib.parallel import Options, average_replicas, simulate, train
from swatlib.parallel.roles import Master, shard, state_digest, stream_seed
from swatlib.parallel.training import _cause, _root_cause
from swatlib.topology import SET, evolvable_layers
from swatlib.train import fit

ROOT = Path(__file__).resolve().parents[1]
TINY = {"subset": [600, 200], "sizes": [784, 24, 24, 10], "epochs": 3, "lr": 0.05}


def tiny_spec(importance_pruning: bool = False, **overrides) -> dict:
    own = {**TINY, "ip_start": 1, "ip_every": 1, **overrides}
    return make_spec("fashion-mnist", "set", "all_relu", importance_pruning, seed=3, profile="test",
                     overrides={"fashion-mnist": own})


def scores(result: dict) -> list[tuple]:
    return [(r["epoch"], r["train_loss"], r["train_acc"], r["test_loss"], r["test_acc"], r["nnz"])
            for r in result["history"]]


@pytest.mark.slow
def test_one_worker_in_order_is_the_sequential_loop_bit_for_bit():
    spec = tiny_spec()
    result = train(spec, algorithm="wasap", workers=1, schedule="ordered", local_fraction=0.0, log=lambda s: None)
    # The same run through swatlib.train.fit, with the streams of worker 1 of 1.
    data = runs.load_dataset(spec["dataset"], spec["subset"])
    generator = torch.Generator().manual_seed(spec["seed"])
    model = build_model(spec, generator)
    optimizer = make_optimizer(spec["optimizer"], model.parameters(), lr=spec["lr"], momentum=spec["momentum"],
                               weight_decay=spec["weight_decay"])
    evolution = SET(evolvable_layers(model), zeta=spec["zeta"], regrow_init=spec["regrow_init"],
                    until=spec["epochs"] - 1, optimizer=optimizer, generator=generator)
    with torch.random.fork_rng():
        torch.manual_seed(stream_seed(spec["seed"], "dropout", 1))
        history = fit(model, shard(data, 1, 1), optimizer, epochs=spec["epochs"], batch_size=spec["batch_size"],
                      generator=torch.Generator().manual_seed(stream_seed(spec["seed"], "batches", 1)),
                      topology=[evolution], log=lambda s: None)
    assert result["final_digest"] == state_digest(model)
    assert scores(result) == [(r["epoch"], r["train_loss"], r["train_acc"], r["test_loss"], r["test_acc"],
                               r["nnz"]) for r in history]
    assert result["staleness"] == {"0": spec["epochs"] * result["updates_per_epoch"]}


@pytest.mark.slow
def test_two_workers_in_order_equal_the_simulator_with_pruning_phase_two_and_chunks():
    spec = tiny_spec(importance_pruning=True)
    simulated = simulate(spec, workers=2, local_fraction=0.34)
    real = train(spec, algorithm="wasap", workers=2, schedule="ordered", local_fraction=0.34, chunk=1000,
                 log=lambda s: None)
    assert real["final_digest"] == simulated["final_digest"]
    assert scores(real) == scores(simulated)
    assert real["staleness"] == simulated["staleness"]
    assert "replicas_before_averaging" not in real  # the simulator's extra: the replicas it still holds
    before = simulated["replicas_before_averaging"]
    assert [r["rank"] for r in before] == [1, 2] and all(0.0 <= r["test_acc"] <= 1.0 for r in before)
    assert before[0]["train_loss"] != before[1]["train_loss"]  # own shards, own SET: two different networks
    assert real["hidden_neurons"] < spec["sizes"][1:-1]  # pruning changed the shapes on the way
    assert [r["model"] for r in real["history"]] == ["master", "master", "average"]
    steady = {int(k): v for k, v in real["staleness"].items()}
    assert max(steady) == 1 and steady[1] > steady.get(0, 0)  # ordered: staleness K − 1 after the first round


@pytest.mark.slow
def test_wassp_keeps_the_replicas_identical_and_async_wasap_applies_every_update():
    spec = tiny_spec(importance_pruning=True, epochs=2)
    wassp = train(spec, algorithm="wassp", workers=2, local_fraction=0.0, log=lambda s: None)
    assert len(set(wassp["phase1_digests"])) == 1 and wassp["phase1_digests"][0]
    assert wassp["final_digest"] == wassp["phase1_digests"][0]  # the average of identical replicas
    wasap = train(spec, algorithm="wasap", workers=2, local_fraction=0.5, log=lambda s: None)
    updates = wasap["phase1_epochs"] * wasap["updates_per_epoch"]
    assert sum(wasap["staleness"].values()) == updates
    assert wasap["discarded"] == 1  # the other worker's gradient in flight when phase 1 ended
    roles = {r["role"] for r in wasap["roles"]}
    assert roles == {"master", "worker 1", "worker 2"}
    assert all(r["peak_rss_mib"] > 0 and r["bytes_sent"] > 0 for r in wasap["roles"])


def _set_removals(values: torch.Tensor, zeta: float) -> torch.Tensor:
    """Dense reimplementation of SET's prune step: which connections (by index) go."""
    removed = values == 0
    for sign in (1.0, -1.0):
        same = (values * sign > 0).nonzero().squeeze(1)
        count = math.floor(zeta * same.numel() + 1e-9)
        removed[same[torch.argsort(values[same] * sign)[:count]]] = True
    return removed


@pytest.mark.parametrize("retain", ["map", "position"])
def test_retain_valid_updates_against_a_dense_masked_reference(retain):
    spec = make_spec("fashion-mnist", "set", "all_relu", False, seed=1, profile="test",
                     overrides={"fashion-mnist": {"sizes": [20, 16, 16, 4], "epsilon": 6.0, "zeta": 0.5, "lr": 1.0,
                                                  "momentum": 0.0, "weight_decay": 0.0, "epochs": 5}})
    master = Master(spec, updates_per_epoch=2, retain=retain, record=False)
    layers = list(master.model.linears)
    old = [(l.in_features, l.connections()) for l in layers]
    stale = torch.randn(sum(master.sizes[0]) + 2, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # the second update ends epoch 1: SET runs, version 1
        master.apply(torch.zeros_like(stale), version=0, based_on=0)
    assert master.version == 1
    before = [p.detach().clone() for p in master.params]
    master.apply(stale, version=0, based_on=0)
    applied = [b - p.detach() for b, p in zip(before, master.params)]  # lr 1, no momentum: −Δ = gradient
    differs = False
    offset = 0
    for index, layer in enumerate(layers):
        n_in, (rows, cols, values) = old[index]
        dense_grad = torch.zeros(layer.out_features, n_in)
        dense_grad[rows, cols] = stale[offset:offset + values.numel()]
        kept = torch.zeros(layer.out_features, n_in, dtype=torch.bool)
        evolved = index < len(layers) - 1
        survivors = ~_set_removals(values, spec["zeta"]) if evolved else torch.ones(values.numel(), dtype=torch.bool)
        kept[rows[survivors], cols[survivors]] = True
        new_rows, new_cols, _ = layer.connections()
        by_position = dense_grad[new_rows, new_cols]
        by_map = (dense_grad * kept)[new_rows, new_cols]
        expected = by_map if retain == "map" else by_position
        torch.testing.assert_close(applied[2 * index], expected, rtol=0, atol=1e-6)
        differs |= bool((by_position != by_map).any())
        offset += values.numel()
        torch.testing.assert_close(applied[2 * index + 1], stale[offset:offset + layer.out_features], rtol=0, atol=1e-6)
        offset += layer.out_features
    assert differs  # some connection was removed and regrown at its old position: the options disagree


def test_a_stale_bias_gradient_follows_the_neurons_importance_pruning_kept():
    spec = make_spec("fashion-mnist", "set", "all_relu", True, seed=1, profile="test",
                     overrides={"fashion-mnist": {"sizes": [20, 16, 16, 4], "epsilon": 6.0, "lr": 1.0, "momentum": 0.0,
                                                  "weight_decay": 0.0, "epochs": 5, "ip_start": 1, "ip_every": 1}})
    master = Master(spec, updates_per_epoch=2, record=False)
    sizes = master.sizes[0]
    stale = torch.randn(sum(sizes) + 2, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # the second update ends epoch 1: pruning, then SET
        master.apply(torch.zeros_like(stale), version=0, based_on=0)
    pruning = master.topology[0]
    assert sum(pruning.removed) > 0
    before = [p.detach().clone() for p in master.params]
    master.apply(stale, version=0, based_on=0)
    old_bias = torch.split(stale[:sum(sizes)], sizes)[1]  # the first hidden layer's bias
    keep = torch.ones(sizes[1], dtype=torch.bool)
    keep[pruning.dropped[0]] = False
    torch.testing.assert_close(before[1] - master.params[1].detach(), old_bias[keep], rtol=0, atol=1e-6)


def _replica(n_out: int, n_in: int, entries: dict[tuple[int, int], float]) -> dict:
    keys = sorted(entries)
    return {"linears.0._extra_state": {"out_features": n_out, "in_features": n_in, "init": "he_uniform"},
            "linears.0.row_indices": torch.tensor([r for r, _ in keys], dtype=torch.int64),
            "linears.0.col_indices": torch.tensor([c for _, c in keys], dtype=torch.int64),
            "linears.0.values": torch.tensor([entries[k] for k in keys]),
            "linears.0.bias": torch.zeros(n_out)}


@pytest.mark.parametrize("rule, expected", [
    ("mean", {(0, 0): 2.0, (0, 1): -2.0, (1, 1): 0.6}),
    ("sum", {(0, 0): 2.0, (0, 1): -1.0, (1, 1): 0.6}),
])
def test_averaging_rules_on_hand_made_replicas(rule, expected):
    a = _replica(2, 2, {(0, 0): 1.0, (0, 1): -2.0, (1, 1): 0.5})
    b = _replica(2, 2, {(0, 0): 3.0, (1, 0): -0.1, (1, 1): 0.7})
    b["linears.0.bias"] = torch.tensor([1.0, -1.0])
    out = average_replicas([a, b], rule)
    # The union has 4 connections, the target 3: the negative closest to zero goes ((1, 0)).
    got = {(int(r), int(c)): float(v) for r, c, v in zip(out["linears.0.row_indices"], out["linears.0.col_indices"],
                                                         out["linears.0.values"])}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value)
    assert out["linears.0.bias"].tolist() == [0.5, -0.5]


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 4), st.integers(1, 12), st.integers(0, 2**31 - 1), st.sampled_from(["mean", "sum"]))
def test_averaging_keeps_exactly_the_target_from_the_union(k, nnz, seed, rule):
    g = torch.Generator().manual_seed(seed)
    n_out, n_in = 4, 5
    replicas = []
    for _ in range(k):
        keys = torch.randperm(n_out * n_in, generator=g)[:nnz].tolist()
        replicas.append(_replica(n_out, n_in, {(key // n_in, key % n_in): float(torch.randn(1, generator=g))
                                               for key in keys}))
    out = average_replicas(replicas, rule)
    kept = list(zip(out["linears.0.row_indices"].tolist(), out["linears.0.col_indices"].tolist()))
    assert len(kept) == len(set(kept)) == nnz
    for (row, col), value in zip(kept, out["linears.0.values"].tolist()):
        at = [(r["linears.0.row_indices"] == row) & (r["linears.0.col_indices"] == col) for r in replicas]
        held = [float(r["linears.0.values"][here]) for r, here in zip(replicas, at) if bool(here.any())]
        assert held, "a kept connection must come from the union"
        assert value == pytest.approx(sum(held) / (len(held) if rule == "mean" else k), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("options, message", [
    ({"workers": 0}, "workers must be a positive integer"),
    ({"algorithm": "hogwild"}, "algorithm must be one of"),
    ({"schedule": "random"}, "schedule must be one of"),
    ({"local_fraction": 1.0}, "local_fraction must be in [0, 1), got 1.0"),
    ({"workers": 5}, "fewer than one batch"),
])
def test_bad_input_fails_in_one_line_before_any_process_starts(options, message):
    import multiprocessing

    spec = tiny_spec(subset=[500, 100])
    with pytest.raises(ValueError) as error:
        train(spec, log=lambda s: None, **options)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not multiprocessing.active_children()


def test_options_are_plain_data():
    assert Options(algorithm="wassp", workers=3).record()["workers"] == 3


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and b"resource_tracker" not in cmdline:
                found.append((int(fields[19]), int(entry.name)))
    return [p for _, p in sorted(found)]  # by start time: rank 0, 1, 2


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


CLI = [sys.executable, "-m", "swatlib.parallel", "--dataset", "fashion-mnist", "--sizes", "784", "24", "24", "10"]


def _long_cli_run(**popen_options) -> tuple[subprocess.Popen, list[int]]:
    """A WASAP-SGD run of the CLI with two workers, some seconds into training; its pids by rank."""
    cli = subprocess.Popen([*CLI, "--subset", "3000", "--epochs", "200", "--workers", "2"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_options)
    deadline = time.monotonic() + 120
    ranks: list[int] = []
    while len(ranks) < 3 and time.monotonic() < deadline and cli.poll() is None:
        time.sleep(0.5)
        ranks = _children(cli.pid)
    if len(ranks) < 3:
        cli.kill()
        pytest.fail("the three ranks did not start")
    time.sleep(5)  # into training
    return cli, ranks


def _failed_ranks(tmp_path, outcomes):
    """A stand-in for torch.multiprocessing's context: (exit code, last traceback line or None) per rank."""
    files, directory = [], Path(tempfile.mkdtemp(dir=tmp_path))
    for rank, (_, last) in enumerate(outcomes):
        path = directory / f"error{rank}"
        if last is not None:
            path.write_bytes(pickle.dumps(f"Traceback (most recent call last):\n  ...\n{last}\n"))
        files.append(str(path))
    return SimpleNamespace(processes=[SimpleNamespace(exitcode=code) for code, _ in outcomes], error_files=files)


def test_the_error_names_the_root_cause_not_its_echoes(tmp_path):
    closed = "RuntimeError: [gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"

    def first(outcomes):
        return _root_cause(_failed_ranks(tmp_path, outcomes), range(len(outcomes)))[0]

    # a rank that raised an error of its own, a worker that aborted in C++ afterwards, one that lost its peer
    assert first([(1, "ValueError: bad spec"), (-signal.SIGABRT, None), (1, closed)]) == 0
    assert first([(1, closed), (-signal.SIGABRT, None), (1, "MemoryError")]) == 2
    # killed from outside (the out-of-memory killer) comes before everything it caused
    assert first([(1, "ValueError: bad spec"), (1, closed), (-signal.SIGKILL, None)]) == 2
    # an abort is named when it is all there is, before lost connections
    assert first([(1, closed), (-signal.SIGABRT, None)]) == 1
    context = _failed_ranks(tmp_path, [(-signal.SIGKILL, None), (-signal.SIGSEGV, None), (1, None)])
    assert [_cause(context, i)[1] for i in range(3)] == [
        "was killed by SIGKILL (out of memory?)", "was killed by SIGSEGV", "exited with status 1"]


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_with_its_rank_and_no_orphans():
    cli, ranks = _long_cli_run()
    try:
        os.kill(ranks[2], signal.SIGKILL)
        killed = time.monotonic()
        _, err = cli.communicate(timeout=60)
        assert time.monotonic() - killed < 30
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == ["error: worker 2 (rank 2) was killed by SIGKILL (out of memory?); the run was stopped"]
    assert not any(_alive(pid) for pid in ranks)


@pytest.mark.slow
def test_ctrl_c_stops_every_process_and_exits_130():
    cli, ranks = _long_cli_run(start_new_session=True)
    try:
        os.killpg(cli.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130
    assert "interrupted" in err
    assert not any(_alive(pid) for pid in ranks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_give_the_spawn_result():
    port = _free_port()
    args = ["--algorithm", "wasap", "--workers", "1", "--schedule", "ordered", "--subset", "600", "--epochs", "3",
            "--seed", "3", "--json"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    nodes = [subprocess.Popen([torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                               "--master-addr", "127.0.0.1", "--master-port", str(port),
                               "-m", "swatlib.parallel", *CLI[3:], *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
             for node in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    result = json.loads(outputs[0][0].strip().splitlines()[-1])
    for key in ("algorithm", "workers", "epochs", "best_test_acc", "final_test_acc", "train_seconds",
                "samples_per_second", "nnz"):
        assert key in result
    spec = make_spec("fashion-mnist", "set", "all_relu", False, seed=3, profile="cli",
                     overrides={"fashion-mnist": {"subset": 600, "epochs": 3, "sizes": [784, 24, 24, 10]}})
    spawned = train(spec, algorithm="wasap", workers=1, schedule="ordered", log=lambda s: None)
    assert result["final_digest"] == spawned["final_digest"]
    assert scores(result) == scores(spawned)


def _fake(spec: dict, seconds: float, acc: float, status: str = "ok") -> runs.RunResult:
    if status != "ok":
        return runs.RunResult(spec, status)
    roles = [{"role": "master", "peak_rss_mib": 100.0}, {"role": "worker 1", "peak_rss_mib": 200.0}]
    return runs.RunResult(spec, "ok", result={"train_seconds": seconds, "best_test_acc": acc, "workers": 2,
                                              "cpu_utilisation": 0.5, "roles": roles})


def test_table3_pairs_the_speed_up_by_seed_and_keeps_absent_rows():
    from swatlib.experiments import parallel as par

    specs = par.table3_specs(["fashion-mnist", "higgs"], workers=2, seeds=[0, 1], profile="test", overrides="smoke",
                             pruning=[False])
    seconds = {("sequential", 0): 100.0, ("sequential", 1): 120.0, ("wassp", 0): 80.0, ("wassp", 1): 60.0,
               ("wasap", 0): 50.0, ("wasap", 1): 40.0}
    outcomes = [_fake(s, seconds[(s["parallel"]["algorithm"], s["seed"])], 0.9) if s["dataset"] == "fashion-mnist"
                else _fake(s, 0, 0, status=par.ABSENT) for s in specs]
    table = par.table3(outcomes).set_index(["dataset", "method"])
    assert table.loc[("Fashion-MNIST", "WASAP-SGD"), "speed-up"] == pytest.approx((100 / 50 + 120 / 40) / 2)
    assert table.loc[("Fashion-MNIST", "Sequential"), "speed-up"] == pytest.approx(1.0)
    assert table.loc[("Fashion-MNIST", "WASAP-SGD"), "reported speed-up"] == pytest.approx(137.5 / 87.25)
    assert table.loc[("Higgs", "WASAP-SGD"), "status"] == par.ABSENT
    assert table.loc[("Higgs", "WASAP-SGD"), "reported acc %"] == 74.47


def test_the_simulator_runs_only_ordered_wasap():
    from swatlib.experiments import parallel as par

    with pytest.raises(ValueError, match="ordered schedule only"):
        par.make_spec("fashion-mnist", False, seed=0, profile="test", overrides="smoke", runner="simulator",
                      algorithm="wasap", workers=2)
