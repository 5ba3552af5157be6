"""WASAP-SGD and WASSP-SGD throughput against sequential training, with the cost of one message.

What is measured (side by side in one script, every variant on the same run spec):

* **Training samples per second** of :func:`swatlib.parallel.train` on Fashion-MNIST (the full
  60,000 training images by default) with the model of ``benchmarks/set_mlp.py`` (SET-MLP
  784-1000-1000-1000-10, ε = 20, batch 128, All-ReLU α = 0.6, dropout 0.3, the authors' momentum
  SGD, lr 0.01, ζ = 0.3) — or, with ``--dataset madelon-65536``, at the scale of the paper's Table 4:
  its smallest network, 65536-500000-500000-2 at ε = 10 (16.7 M connections), on the 7,000 training
  samples of the synthetic 65,536-feature set, with the paper's settings for it
  (``PAPER_SETTINGS["madelon-65536"]``: dropout 0.4, batch 128, lr 0.01) — for the same number of
  epochs: sequential with 1 and with 2 torch threads (the best of the two is the reference),
  WASAP-SGD and WASSP-SGD with K = 1 and K = 2 workers. The rate is the library's
  ``samples_per_second`` = epochs × training samples / ``train_seconds`` (start barrier to final
  network: process start-up, data loading and evaluation excluded). Phase 2
  (the last ``local_fraction`` of the epochs, trained locally without messages) is part of it; the
  phase-1 rate (up to the master's last phase-1 epoch end) is reported beside it. Variants run
  round-robin per seed; the median over the seeds is reported, with its ratio to the best sequential.
* **Accuracy**: the final test accuracy after the same number of epochs, mean ± standard deviation
  (ddof 1) over the seeds, and whether it is within seed noise of the sequential reference.
* **Where the time goes**: per worker the fraction of its wall time spent waiting (messages,
  all-reduce, the master), the master's share of the run's CPU time, the staleness histogram.
* **Cost per message**: two spawned processes on ``torch.distributed`` (gloo) pass a
  :class:`swatlib.parallel.messages.Message` the size of the model's gradient payload back and forth,
  (i) with every receive pre-posted (``irecv`` before the peer sends, as the library does) and
  (ii) with a blocking receive posted late (after the peer's send, as a busy receiver would).
* **Parallel capacity** (:func:`parallel_capacity`): one, then two one-thread copies of the sequential
  training step started together, no messages, alternating: how much faster two processes train
  here than one — the most any two-worker scheme can reach on this machine, whatever its messages.
* The machine (CPU model, cores, torch), and the load average before and after; a run whose 1-minute
  load average before it exceeds :data:`swatlib.machine.BUSY_LOAD` is marked "busy machine".
* ``--phase2-accuracy`` (instead of the timings, :func:`phase2_accuracy`): where WASAP-SGD's accuracy
  goes — the test accuracy at the end of phase 1, of each replica before averaging and of the average,
  beside sequential's after every epoch, in one process through :func:`swatlib.parallel.simulate`.

Goal (issue 10): WASAP-SGD with 2 workers ≥ 1.6 × the sequential throughput on an idle 2-core machine.

Run ``python benchmarks/wasap.py --help``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Only when run as a script: this (parent) process evaluates the snapshots between runs with one
    # thread; the library gives every spawned process OMP_NUM_THREADS=1 itself.
    os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from swatlib import machine, parallel  # noqa: E402
from swatlib.atomic import atomic_write_bytes  # noqa: E402
from swatlib.checks import check_choice, check_choices, check_int  # noqa: E402
from swatlib.data import DatasetNotFoundError  # noqa: E402
from swatlib.experiments import runs  # noqa: E402
from swatlib.experiments.truly_sparse import build_model, make_spec  # noqa: E402
from swatlib.parallel.messages import HEADER, LENGTH, Message, recv_tensor  # noqa: E402
from swatlib.parallel.roles import Master, Replica  # noqa: E402
from swatlib.parallel.training import Options, leave_without_finalising, make_plan  # noqa: E402

from set_mlp import ALPHA, BATCH, DROPOUT, EPSILON, LR, SIZES, ZETA  # noqa: E402  (the model of set_mlp.py)

DATASET = "fashion-mnist"
#: Datasets the benchmark trains on: Fashion-MNIST with the set_mlp.py model, and Table 4's smallest
#: network on its 65,536-feature set with the paper's settings (WASAP-SGD at scale, issue 11).
BENCHMARK_DATASETS = (DATASET, "madelon-65536")

#: 3 epochs with the paper's local_fraction 0.3: phase 1 = 2 epochs, phase 2 = round(0.9) = 1 epoch.
EPOCHS = 3
LOCAL_FRACTION = 0.3
SEEDS = (0,)
SEQUENTIAL_THREADS = (1, 2)
WORKERS = (1, 2)

#: Issue 10's goal: WASAP-SGD with 2 workers over the best sequential run, on an idle 2-core machine.
GOAL_VARIANT = "wasap-K2"
GOAL_RATIO = 1.6

#: Message micro-benchmark: round trips timed (after the warm-up) and the late receiver's delay.
MESSAGE_ROUNDS = 50
MESSAGE_WARMUP = 5
MESSAGE_DELAY = 0.005

#: Parallel-capacity probe: timed steps per copy (after a warm-up), alternating repeats of one and two copies.
CAPACITY_STEPS = 1000
CAPACITY_WARMUP = 5
CAPACITY_REPEATS = 5

_TAG = 10
#: Header fields 6–7 (int32), unused by :mod:`swatlib.parallel.messages`: the send time as one int64.
_STAMP = slice(6, 8)


# --------------------------------------------------------------------------- environment
# --------------------------------------------------------------------------- variants
def variants(threads: Sequence[int] = SEQUENTIAL_THREADS, workers: Sequence[int] = WORKERS) -> dict[str, dict]:
    """The variants compared, name → options of :func:`swatlib.parallel.train`."""
    out = {f"sequential-{t}t": {"algorithm": "sequential", "threads": t} for t in threads}
    for algorithm in ("wasap", "wassp"):
        out.update({f"{algorithm}-K{k}": {"algorithm": algorithm, "workers": k} for k in workers})
    return out


def benchmark_spec(seed: int, *, dataset: str = DATASET, epochs: int = EPOCHS, subset: int | None = None,
                   sizes: Sequence[int] | None = None, epsilon: float | None = None,
                   batch_size: int | None = None) -> dict:
    """The Truly Sparse run spec of the benchmark: on Fashion-MNIST the set_mlp.py model, on
    ``madelon-65536`` the paper's settings for Table 4's smallest network; ``sizes``, ``epsilon``
    and ``batch_size`` replace the model's when given."""
    check_choice(dataset, BENCHMARK_DATASETS, "dataset")
    own: dict[str, Any] = {"epochs": epochs, "subset": subset}
    if dataset == DATASET:
        own.update(sizes=list(SIZES), epsilon=EPSILON, batch_size=BATCH, alpha=ALPHA, dropout=DROPOUT, lr=LR,
                   zeta=ZETA)
    own.update({key: value for key, value in (("sizes", sizes), ("epsilon", epsilon), ("batch_size", batch_size))
                if value is not None})
    return make_spec(dataset, "set", "all_relu", False, seed=seed, profile="benchmark-wasap",
                     overrides={dataset: own})


def _model_settings(seeds: Sequence[int], **model: Any) -> dict[str, Any]:
    """:func:`benchmark_spec`'s keyword arguments shared by every seed of a run, checked with the seeds."""
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. --seeds 0 1 2")
    check_int(model["epochs"], "epochs")
    return model


def _phase1_seconds(result: dict) -> float | None:
    """Wall seconds from the start to the master's last phase-1 epoch end (its snapshot)."""
    for record in result["history"]:
        if record["epoch"] == result["phase1_epochs"] and record["model"] == "master":
            return record["wall_seconds"]
    return None


def run_variant(spec: dict, name: str, options: dict, *, local_fraction: float = LOCAL_FRACTION,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``spec`` with one variant; the numbers the benchmark reports of that run."""
    load_before = list(os.getloadavg())
    result = parallel.train(spec, log=log, local_fraction=local_fraction, **options)
    roles = result["roles"]
    workers = [r for r in roles if r["role"].startswith("worker")]
    master = next((r for r in roles if r["role"] == "master"), None)
    total_cpu = sum(r["cpu_seconds"] for r in roles)
    phase1 = _phase1_seconds(result)
    return {
        "variant": name, "algorithm": result["algorithm"], "workers": result["workers"],
        "threads": result["options"]["threads"], "seed": spec["seed"],
        "samples_per_second": result["samples_per_second"], "train_seconds": result["train_seconds"],
        "phase1_epochs": result["phase1_epochs"], "phase2_epochs": result["phase2_epochs"],
        "phase1_seconds": phase1,
        "phase1_samples_per_second": None if not phase1 else result["phase1_epochs"] * result["n_train"] / phase1,
        "final_test_acc": result["final_test_acc"], "best_test_acc": result["best_test_acc"],
        "worker_wait_fraction": [r.get("wait_seconds", 0.0) / r["wall_seconds"] for r in workers],
        "master_cpu_share": None if master is None or not total_cpu else master["cpu_seconds"] / total_cpu,
        "master_cpu_utilisation": None if master is None else master["cpu_seconds"] / master["wall_seconds"],
        "cpu_utilisation": result["cpu_utilisation"], "staleness": result["staleness"],
        "mean_staleness": (sum(int(k) * v for k, v in result["staleness"].items())
                           / max(1, sum(result["staleness"].values()))),
        "bytes_sent": sum(r["bytes_sent"] for r in roles),
        "peak_rss_mib": {r["role"]: r["peak_rss_mib"] for r in roles},
        "n_train": result["n_train"], "load_before": load_before, "load_after": result["load_average"],
    }


# --------------------------------------------------------------------------- summary statistics
def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1; ``None`` from one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def within_noise(a: Sequence[float], b: Sequence[float]) -> bool | None:
    """Whether two samples' means differ by at most two standard errors of the difference.

    ``None`` when either sample has fewer than two values (no noise estimate).
    """
    if len(a) < 2 or len(b) < 2:
        return None
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return abs(statistics.fmean(a) - statistics.fmean(b)) <= 2.0 * se


def summarise(records: Sequence[dict]) -> dict[str, Any]:
    """Per variant (in first-seen order): medians over the seeds, ratios to the best sequential, accuracy."""
    names = list(dict.fromkeys(r["variant"] for r in records))
    by = {n: [r for r in records if r["variant"] == n] for n in names}
    out: dict[str, Any] = {}
    for name, rs in by.items():
        phase1 = [r["phase1_samples_per_second"] for r in rs if r["phase1_samples_per_second"]]
        acc_mean, acc_std = mean_std([r["final_test_acc"] for r in rs])
        waits = [w for r in rs for w in r["worker_wait_fraction"]]
        shares = [r["master_cpu_share"] for r in rs if r["master_cpu_share"] is not None]
        out[name] = {"algorithm": rs[0]["algorithm"], "workers": rs[0]["workers"], "threads": rs[0]["threads"],
                     "seeds": [r["seed"] for r in rs],
                     "samples_per_second": statistics.median(r["samples_per_second"] for r in rs),
                     "phase1_samples_per_second": statistics.median(phase1) if phase1 else None,
                     "final_test_acc_mean": acc_mean, "final_test_acc_std": acc_std,
                     "worker_wait_fraction": statistics.fmean(waits) if waits else None,
                     "master_cpu_share": statistics.fmean(shares) if shares else None,
                     "cpu_utilisation": statistics.median(r["cpu_utilisation"] for r in rs),
                     "mean_staleness": statistics.fmean(r["mean_staleness"] for r in rs)}
    sequential = [n for n in names if by[n][0]["algorithm"] == "sequential"]
    best = max(sequential, key=lambda n: out[n]["samples_per_second"]) if sequential else None
    for name, row in out.items():
        ref = out[best] if best else None
        row["over_best_sequential"] = None if ref is None else row["samples_per_second"] / ref["samples_per_second"]
        row["phase1_over_best_sequential"] = (None if ref is None or not row["phase1_samples_per_second"]
                                              or not ref["phase1_samples_per_second"]
                                              else row["phase1_samples_per_second"] / ref["phase1_samples_per_second"])
        row["acc_within_noise"] = None if best is None else within_noise(
            [r["final_test_acc"] for r in by[name]], [r["final_test_acc"] for r in by[best]])
    return {"best_sequential": best, "variants": out}


def goal(summary: dict, busy: bool, capacity: dict | None = None) -> dict[str, Any]:
    """Issue 10's goal, measured (``met`` is ``None`` when a variant it needs did not run), and its
    ceilings on this machine. Two one-thread processes doing at least the one-thread sequential run's
    work per sample (the same forward, backward and update, plus messages) train at most twice its
    samples per second: ``ceiling`` = ``2 × sequential-1t / best sequential``; and at most what two
    copies of that work manage side by side here: ``measured_ceiling`` = ``capacity ratio ×
    sequential-1t / best sequential`` (:func:`parallel_capacity`). None without the runs they need."""
    row = summary["variants"].get(GOAL_VARIANT)
    measured = None if row is None else row["over_best_sequential"]
    one_thread, best = summary["variants"].get("sequential-1t"), summary["variants"].get(summary["best_sequential"])
    one_over_best = (None if one_thread is None or best is None
                     else one_thread["samples_per_second"] / best["samples_per_second"])
    return {"variant": GOAL_VARIANT, "target": GOAL_RATIO, "measured": measured,
            "met": None if measured is None else measured >= GOAL_RATIO, "busy_machine": busy,
            "applies_to": "an idle 2-core machine", "ceiling": None if one_over_best is None else 2 * one_over_best,
            "measured_ceiling": (None if one_over_best is None or capacity is None
                                 else capacity["ratio"] * one_over_best)}


# --------------------------------------------------------------------------- cost per message
def _stamp(message: Message) -> None:
    """Write the send time (CLOCK_MONOTONIC ns, one clock for every process of this machine) into the header."""
    message.header[_STAMP].view(torch.int64)[0] = time.monotonic_ns()


def _stamped(message: Message) -> int:
    return int(message.header[_STAMP].view(torch.int64)[0])


def _ping_pong(rank: int, capacity: int, rounds: int, warmup: int, mode: str, delay: float) -> dict[str, list]:
    """Rank 1 sends a full message to rank 0, which sends it back; ``rounds + warmup`` times.

    ``mode="preposted"``: every receive is posted (``irecv``) before the peer can send (rank 0 posts
    the next one before it replies; rank 1 posts the reply's before it sends). ``mode="late"``: each
    side sleeps ``delay`` (rank 1: twice that) after its send and only then calls a blocking receive,
    so the peer's send was issued first. Each receive records the time from the moment both the
    send and the receive had been issued to the moment the receiver holds the message.
    """
    peer = 1 - rank
    inbox = [Message(capacity), Message(capacity)]
    out = Message(capacity)
    out.header[LENGTH] = capacity
    costs, late, trips = [], [], []

    def received(message: Message, posted: int) -> None:
        done, sent = time.monotonic_ns(), _stamped(message)
        costs.append((done - max(posted, sent)) / 1e9)
        late.append(posted > sent)

    current = 0
    pending, posted = None, 0
    if mode == "preposted" and rank == 0:
        pending, posted = inbox[0].post(peer, _TAG), time.monotonic_ns()
    for i in range(rounds + warmup):
        if rank == 1:
            start = time.perf_counter()
            if mode == "preposted":
                pending, posted = inbox[0].post(peer, _TAG), time.monotonic_ns()
                _stamp(out)
                out.send(peer, _TAG)
                pending.wait()
            else:
                _stamp(out)
                out.send(peer, _TAG)
                time.sleep(2 * delay)
                posted = time.monotonic_ns()
                recv_tensor(inbox[0].buffer, peer, _TAG)
            received(inbox[0], posted)
            trips.append(time.perf_counter() - start)
        else:
            if mode == "preposted":
                pending.wait()
                received(inbox[current], posted)
                if i + 1 < rounds + warmup:
                    pending, posted = inbox[1 - current].post(peer, _TAG), time.monotonic_ns()
                current = 1 - current
            else:
                time.sleep(delay)
                posted = time.monotonic_ns()
                recv_tensor(inbox[0].buffer, peer, _TAG)
                received(inbox[0], posted)
            _stamp(out)
            out.send(peer, _TAG)
    return {"costs": costs[warmup:], "late": late[warmup:], "round_trips": trips[warmup:]}


def _message_rank(rank: int, init_method: str, capacity: int, rounds: int, warmup: int, delay: float,
                  output: str) -> None:
    runs.enter_child(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2,
                            timeout=timedelta(minutes=5))
    try:
        mine = {}
        for mode in ("preposted", "late"):
            dist.barrier()
            mine[mode] = _ping_pong(rank, capacity, rounds, warmup, mode, delay)
        both = [None, None] if rank == 0 else None
        dist.gather_object(mine, both, dst=0)
        if rank == 0:
            atomic_write_bytes(output, pickle.dumps(both))
    finally:
        dist.destroy_process_group()
    leave_without_finalising()  # as swatlib.parallel's ranks do: an abort in finalisation would fail the probe


def message_floats(spec: dict) -> int:
    """Payload of a WASAP gradient message of ``spec``'s model: every value and bias, loss and flow."""
    return sum(p.numel() for p in build_model(spec, torch.Generator().manual_seed(0)).parameters()) + 2


def _spawn(rank_function: Callable, args: tuple, *, nprocs: int) -> Any:
    """Run ``rank_function(rank, rendezvous, *args, output)`` in ``nprocs`` spawned processes, one thread
    each; returns what rank 0 pickled to ``output``. They meet through a file in a private temporary
    directory, as swatlib.parallel's ranks do: no port to race for."""
    with tempfile.TemporaryDirectory(prefix="swatlib-wasap-bench-") as tmp:
        output = os.path.join(tmp, "rank0.pkl")
        rendezvous = "file://" + os.path.join(tmp, "rendezvous")
        with runs.child_start_conditions():
            context = mp.start_processes(rank_function, args=(rendezvous, *args, output), nprocs=nprocs,
                                         join=False, start_method="spawn")
        while not context.join():
            pass
        with open(output, "rb") as f:
            return pickle.load(f)


def message_cost(capacity: int, *, rounds: int = MESSAGE_ROUNDS, warmup: int = MESSAGE_WARMUP,
                 delay: float = MESSAGE_DELAY) -> dict[str, Any]:
    """ms per message of a ``capacity``-float message between two spawned gloo processes, both ways of receiving."""
    ranks = _spawn(_message_rank, (capacity, rounds, warmup, delay), nprocs=2)
    out: dict[str, Any] = {"floats": capacity, "bytes": 4 * (HEADER + capacity),
                           "rounds": rounds, "delay_seconds": delay}
    for mode in ("preposted", "late"):
        costs = ranks[0][mode]["costs"] + ranks[1][mode]["costs"]
        late = ranks[0][mode]["late"] + ranks[1][mode]["late"]
        trips = ranks[1][mode]["round_trips"]
        out[mode] = {"ms_per_message": 1e3 * statistics.median(costs),
                     "ms_per_message_mean": 1e3 * statistics.fmean(costs),
                     "late_receives": sum(late), "receives": len(late),
                     "round_trip_ms": 1e3 * statistics.median(trips)}
    return out


# --------------------------------------------------------------------------- what two processes can do here
def _capacity_rank(rank: int, init_method: str, world: int, spec: dict, steps: int, output: str) -> None:
    runs.enter_child(1)
    data = runs.load_dataset(spec["dataset"], spec["subset"])
    replica = Replica(spec, data, 1, 1)  # every copy the sequential run's streams: the same work
    master = Master(spec, updates_per_epoch=replica.batches_per_pass, model=replica.model, record=False)
    buffer = torch.empty(message_floats(spec))
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(minutes=5))
    try:
        for _ in range(CAPACITY_WARMUP):
            replica.compute(buffer)
        dist.barrier()  # the copies start together
        start = time.monotonic()  # one clock for every process of this machine
        for _ in range(steps):
            length = replica.compute(buffer)
            master.apply(buffer[:length], version=master.version, based_on=master.updates)
        times = [None] * world if rank == 0 else None
        dist.gather_object((start, time.monotonic()), times, dst=0)
        if rank == 0:
            atomic_write_bytes(output, pickle.dumps(times))
    finally:
        dist.destroy_process_group()
    leave_without_finalising()


def _check_capacity(steps: int, repeats: int) -> None:
    check_int(steps, "capacity steps")
    check_int(repeats, "capacity repeats")


def _copies_rate(spec: dict, copies: int, steps: int) -> float:
    """Training samples per second of ``copies`` one-thread copies of the sequential step run together."""
    times = _spawn(_capacity_rank, (copies, spec, steps), nprocs=copies)
    span = max(end for _, end in times) - min(start for start, _ in times)
    return copies * steps * spec["batch_size"] / span


def parallel_capacity(spec: dict, *, steps: int = CAPACITY_STEPS, repeats: int = CAPACITY_REPEATS) -> dict[str, Any]:
    """How much two processes can train here at once, with no messages at all.

    One copy, then two copies started together (a barrier), of the sequential training step (the
    library's :class:`~swatlib.parallel.roles.Replica` and :class:`~swatlib.parallel.roles.Master`, one
    thread each), alternating ``repeats`` times; the rate of two is all samples over the span from the
    first start to the last end. ``ratio`` (median of the repeats' two-over-one) bounds what any
    scheme of two one-thread trainers — WASAP-SGD's workers included, who also wait for messages and
    share the cores with a master — can reach over one on this machine.
    """
    _check_capacity(steps, repeats)
    single, double = [], []
    for _ in range(repeats):
        single.append(_copies_rate(spec, 1, steps))
        double.append(_copies_rate(spec, 2, steps))
    return {"steps": steps, "repeats": repeats, "one_samples_per_second": single,
            "two_samples_per_second": double,
            "ratio": statistics.median(two / one for one, two in zip(single, double))}


# --------------------------------------------------------------------------- the benchmark
def run(*, seeds: Sequence[int] = SEEDS, dataset: str = DATASET, epochs: int = EPOCHS, subset: int | None = None,
        local_fraction: float = LOCAL_FRACTION, sizes: Sequence[int] | None = None, epsilon: float | None = None,
        batch_size: int | None = None, names: Sequence[str] | None = None, threads: Sequence[int] = SEQUENTIAL_THREADS,
        workers: Sequence[int] = WORKERS, messages: bool = True, message_rounds: int = MESSAGE_ROUNDS,
        message_warmup: int = MESSAGE_WARMUP, capacity: bool = True, capacity_steps: int = CAPACITY_STEPS,
        capacity_repeats: int = CAPACITY_REPEATS, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict (``--json PATH`` writes exactly this).

    ``names`` picks variants of :func:`variants` (default: all of them); ``dataset``, ``sizes``,
    ``epsilon`` and ``batch_size`` go to :func:`benchmark_spec`.
    """
    table = variants(threads, workers)
    if names is not None:
        table = {n: table[n] for n in check_choices(names, table, "variants")}
    model = _model_settings(seeds, dataset=dataset, epochs=epochs, subset=subset, sizes=sizes, epsilon=epsilon,
                            batch_size=batch_size)
    if capacity:
        _check_capacity(capacity_steps, capacity_repeats)
    spec = benchmark_spec(seeds[0], **model)
    n_train = len(runs.load_dataset(dataset, subset).y_train)
    for options in table.values():  # every variant's options and phases checked before any process starts
        make_plan(spec, Options(local_fraction=local_fraction, **options), n_train)
    load_before = list(os.getloadavg())
    started = time.perf_counter()
    records = []
    for seed in seeds:
        spec = benchmark_spec(seed, **model)
        for name, options in table.items():
            log(f"seed {seed}, {name}: load average {os.getloadavg()[0]:.2f}")
            records.append(run_variant(spec, name, options, local_fraction=local_fraction, log=log))
    message = (message_cost(message_floats(spec), rounds=message_rounds, warmup=message_warmup)
               if messages else None)
    if capacity:
        log(f"parallel capacity: one and two copies of the sequential step, load average {os.getloadavg()[0]:.2f}")
    two_copies = parallel_capacity(spec, steps=capacity_steps, repeats=capacity_repeats) if capacity else None
    summary = summarise(records)
    busy = machine.is_busy(load_before)
    return {
        "environment": machine.describe(), "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()), "busy_threshold": machine.BUSY_LOAD, "busy_machine": busy,
        "wall_seconds": time.perf_counter() - started,
        "config": {"dataset": dataset, "subset": subset, "n_train": records[0]["n_train"], "epochs": epochs,
                   "local_fraction": local_fraction, "phase2_epochs": max(r["phase2_epochs"] for r in records),
                   "sizes": spec["sizes"], "epsilon": spec["epsilon"], "batch_size": spec["batch_size"],
                   "seeds": list(seeds)},
        "runs": records, **summary, "goal": goal(summary, busy, two_copies), "messages": message,
        "capacity": two_copies,
    }


# --------------------------------------------------------------------------- where phase 2's accuracy goes
def phase2_accuracy(*, seeds: Sequence[int] = SEEDS, dataset: str = DATASET, epochs: int = EPOCHS,
                    subset: int | None = None, local_fraction: float = LOCAL_FRACTION, workers: int = 2,
                    sizes: Sequence[int] | None = None, epsilon: float | None = None, batch_size: int | None = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Test accuracy along WASAP-SGD's phases beside sequential training of the same spec (no timing).

    Both run in this process through :func:`swatlib.parallel.simulate`: sequential as one worker in
    order (bit for bit the sequential loop), WASAP-SGD with ``workers`` in the ordered schedule
    (staleness exactly K − 1, the asynchronous runs' usual staleness at K = 2). Per seed: sequential's
    test accuracy after every epoch, the master's at the end of phase 1, each replica's at the end of
    its local phase, and the average's (the final network).
    """
    model = _model_settings(seeds, dataset=dataset, epochs=epochs, subset=subset, sizes=sizes, epsilon=epsilon,
                            batch_size=batch_size)
    spec = benchmark_spec(seeds[0], **model)
    plan = make_plan(spec, Options(workers=workers, local_fraction=local_fraction),
                     len(runs.load_dataset(dataset, subset).y_train))
    if not plan.phase2_epochs:
        raise ValueError(f"local_fraction {local_fraction:g} of {epochs} epochs leaves no phase 2 to look at")
    records = []
    for seed in seeds:
        spec = benchmark_spec(seed, **model)
        log(f"seed {seed}: sequential, then WASAP-SGD K = {workers} in order")
        sequential = parallel.simulate(spec, workers=1, local_fraction=0.0)
        wasap = parallel.simulate(spec, workers=workers, local_fraction=local_fraction)
        phase1 = next(r for r in wasap["history"] if r["epoch"] == plan.phase1_epochs and r["model"] == "master")
        records.append({"seed": seed, "sequential": [r["test_acc"] for r in sequential["history"]],
                        "phase1_end": phase1["test_acc"],
                        "replicas": [r["test_acc"] for r in wasap["replicas_before_averaging"]],
                        "average": wasap["final_test_acc"]})
    final = [r["sequential"][-1] for r in records]
    at_phase1 = [r["sequential"][plan.phase1_epochs - 1] for r in records]
    return {"config": {"dataset": dataset, "subset": subset, "epochs": epochs, "local_fraction": local_fraction,
                       "phase1_epochs": plan.phase1_epochs, "phase2_epochs": plan.phase2_epochs, "workers": workers,
                       "sizes": spec["sizes"], "epsilon": spec["epsilon"], "batch_size": spec["batch_size"],
                       "seeds": list(seeds)},
            "runs": records,
            "phase1_within_noise": within_noise([r["phase1_end"] for r in records], at_phase1),
            "replicas_within_noise": within_noise([statistics.fmean(r["replicas"]) for r in records], final),
            "average_within_noise": within_noise([r["average"] for r in records], final)}


def phase2_report(result: dict) -> str:
    """The table ``--phase2-accuracy`` prints: mean ± std over the seeds at each point of the run."""
    cfg, records = result["config"], result["runs"]
    p1 = cfg["phase1_epochs"]

    def cell(values: Sequence[float]) -> str:
        mean, std = mean_std(values)
        return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")

    noise = {None: "n/a (one seed)", True: "within noise", False: "OUTSIDE noise"}
    rows = [(f"sequential after epoch {e}", [r["sequential"][e - 1] for r in records], "")
            for e in range(1, cfg["epochs"] + 1)]
    rows += [(f"WASAP master at the end of phase 1 (epoch {p1})", [r["phase1_end"] for r in records],
              f"vs sequential after epoch {p1}: {noise[result['phase1_within_noise']]}"),
             (f"each replica before averaging (epoch {cfg['epochs']})", [a for r in records for a in r["replicas"]],
              f"their mean vs sequential's final: {noise[result['replicas_within_noise']]}"),
             ("the average (the final network)", [r["average"] for r in records],
              f"vs sequential's final: {noise[result['average_within_noise']]}")]
    lines = [f"Where WASAP-SGD's accuracy goes: {cfg['dataset']}, SET-MLP {'-'.join(map(str, cfg['sizes']))}, "
             f"{cfg['epochs']} epochs = {p1} in phase 1 + {cfg['phase2_epochs']} local, K = {cfg['workers']}, "
             f"ordered schedule (simulator), seeds {cfg['seeds']}; test accuracy, mean ± std (ddof 1)", ""]
    lines += [f"  {label:48s} {cell(values):>17s}   {comparison}".rstrip() for label, values, comparison in rows]
    return "\n".join(lines)


def _f(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``n/a`` right-aligned to the spec's width."""
    width = int("".join(itertools.takewhile(str.isdigit, spec)) or 0)
    return f"{'n/a':>{width}}" if value is None else format(value, spec)


def report(result: dict) -> str:
    """The human-readable table the script prints."""
    env, cfg = result["environment"], result["config"]
    load = " ".join(f"{v:.2f}" for v in result["load_average_before"])
    after = " ".join(f"{v:.2f}" for v in result["load_average_after"])
    lines = [
        f"WASAP-SGD throughput: {cfg['dataset']}, {cfg['n_train']:,} training samples, SET-MLP "
        f"{'-'.join(map(str, cfg['sizes']))}, eps={cfg['epsilon']:g}, batch {cfg['batch_size']}, "
        f"{cfg['epochs']} epochs (parallel runs: {cfg['epochs'] - cfg['phase2_epochs']} in phase 1 + "
        f"{cfg['phase2_epochs']} local, local_fraction {cfg['local_fraction']:g}), seeds {cfg['seeds']}",
        f"{env['cpu']}, {env['logical_cpus']} logical CPUs, torch {env['torch']}, Python {env['python']}",
        f"load average before: {load}; after: {after}"
        + (f"  ** BUSY MACHINE (1-min load before > {result['busy_threshold']:g}): not the idle-machine figure **"
           if result["busy_machine"] else ""),
        "",
        f"{'variant':14s} {'samples/s':>10s} {'x best seq':>10s} {'phase-1 s/s':>11s} {'x best seq':>10s} "
        f"{'final test acc':>17s} {'in noise':>8s} {'worker wait':>11s} {'master CPU':>10s} {'CPU used':>8s} "
        f"{'staleness':>9s}",
    ]
    for name, row in result["variants"].items():
        acc = f"{row['final_test_acc_mean']:.4f}" + (f" ± {row['final_test_acc_std']:.4f}"
                                                    if row["final_test_acc_std"] is not None else "")
        noise = {None: "n/a", True: "yes", False: "NO"}[row["acc_within_noise"]]
        lines.append(f"{name:14s} {row['samples_per_second']:10.0f} {_f(row['over_best_sequential'], '10.2f')} "
                     f"{_f(row['phase1_samples_per_second'], '11.0f')} "
                     f"{_f(row['phase1_over_best_sequential'], '10.2f')} {acc:>17s} {noise:>8s} "
                     f"{_f(row['worker_wait_fraction'], '11.1%')} {_f(row['master_cpu_share'], '10.1%')} "
                     f"{row['cpu_utilisation']:8.0%} {row['mean_staleness']:9.2f}")
    lines += ["", f"best sequential: {result['best_sequential']}; medians over the seeds",
              "final test acc: mean ± std (ddof 1) over the seeds; in noise: |difference of the means| <= 2 standard "
              "errors (needs >= 2 seeds)",
              "worker wait: mean fraction of a worker's wall time spent waiting; master CPU: the master's share of "
              "the run's CPU seconds",
              "CPU used: CPU seconds of all processes / (train seconds x logical CPUs); staleness: mean number of "
              "updates applied between a gradient's values and its application"]
    g = result["goal"]
    met = {None: "not measured", True: "met", False: "NOT met"}[g["met"]]
    if cfg["dataset"] == DATASET:  # the goal is issue 10's, on Fashion-MNIST
        lines.append(f"goal: {g['variant']} >= {g['target']:g} x best sequential on {g['applies_to']}: "
                     f"measured {_f(g['measured'], '.2f')} -> {met}" + (" (busy machine)" if g["busy_machine"] else ""))
    lines.append(f"ceiling here: 2 x sequential-1t / best sequential = {_f(g['ceiling'], '.2f')} (two one-thread "
                 "processes doing the sequential work per sample cannot do better)")
    c = result.get("capacity")
    if c:
        one, two = statistics.median(c["one_samples_per_second"]), statistics.median(c["two_samples_per_second"])
        ratios = [b / a for a, b in zip(c["one_samples_per_second"], c["two_samples_per_second"])]
        lines.append(f"parallel capacity: two one-thread copies of the sequential step side by side, no messages: "
                     f"{two:.0f} samples/s against one copy's {one:.0f} -> {c['ratio']:.2f}x (median of "
                     f"{c['repeats']} alternating repeats of {c['steps']} steps, each {min(ratios):.2f}-"
                     f"{max(ratios):.2f}x); measured ceiling = that x "
                     f"sequential-1t / best sequential = {_f(g['measured_ceiling'], '.2f')}")
    m = result.get("messages")
    if m:
        lines += ["", f"cost per message ({m['floats']:,} floats, {m['bytes'] / 2**20:.2f} MiB, gloo, 2 processes, "
                  f"median of {2 * m['rounds']} messages):"]
        for mode, label in (("preposted", "receive pre-posted (irecv)"), ("late", "blocking receive posted late")):
            row = m[mode]
            lines.append(f"  {label:30s} {row['ms_per_message']:7.3f} ms per message (mean "
                         f"{row['ms_per_message_mean']:.3f}; late receives {row['late_receives']}/{row['receives']}; "
                         f"round trip {row['round_trip_ms']:.2f} ms)")
    lines.append(f"benchmark wall time {result['wall_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=BENCHMARK_DATASETS, default=DATASET,
                        help="fashion-mnist (the set_mlp.py model, default) or madelon-65536 (Table 4's smallest "
                             "network, 16.7 M connections)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs of every run (default: {EPOCHS})")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="seeds (default: 0; the write-up uses 0 1 2)")
    parser.add_argument("--local-fraction", type=float, default=LOCAL_FRACTION,
                        help=f"fraction of the epochs in phase 2 (default: {LOCAL_FRACTION})")
    parser.add_argument("--subset", type=int, default=None, help="training samples (default: all)")
    parser.add_argument("--variants", nargs="+", default=None, help=f"default: {' '.join(variants())}")
    parser.add_argument("--no-messages", action="store_true", help="skip the cost-per-message micro-benchmark")
    parser.add_argument("--no-capacity", action="store_true",
                        help="skip the parallel-capacity probe (one and two copies of the sequential step)")
    parser.add_argument("--phase2-accuracy", action="store_true",
                        help="instead of the timings: test accuracy at the end of phase 1, of each replica before "
                             "averaging and of the average, beside sequential's after every epoch (in-process, "
                             "ordered schedule)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON to PATH (atomically)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.phase2_accuracy:
            result = phase2_accuracy(seeds=args.seeds, dataset=args.dataset, epochs=args.epochs, subset=args.subset,
                                     local_fraction=args.local_fraction, log=log)
        else:
            result = run(seeds=args.seeds, dataset=args.dataset, epochs=args.epochs, subset=args.subset,
                         local_fraction=args.local_fraction, names=args.variants, messages=not args.no_messages,
                         capacity=not args.no_capacity, log=log)
    except (ValueError, DatasetNotFoundError, parallel.ParallelRunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, parallel.ParallelRunError) else 2
    print(phase2_report(result) if args.phase2_accuracy else report(result))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
