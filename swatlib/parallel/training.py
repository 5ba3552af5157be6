"""WASAP-SGD, WASSP-SGD and their sequential baseline: one training function, processes and a simulator.

:func:`train` runs one of :data:`ALGORITHMS` on a Truly Sparse run spec (a SET-MLP,
:func:`swatlib.experiments.truly_sparse.make_spec`) and returns a JSON-able result: the per-epoch
history (the records of :func:`swatlib.train.fit`, scored after training from snapshots so that
evaluation never stalls the timed processes), per-role timings, waiting time, bytes sent, the
staleness histogram and the peak RSS of every role.

Processes: rank 0 is the master (parameter server), ranks 1…K the workers, all on
``torch.distributed`` with the gloo backend — started here with ``torch.multiprocessing`` (spawn
start method only, one torch thread and ``OMP_NUM_THREADS=1`` each), or by ``torchrun`` across
machines (``python -m swatlib.parallel`` notices it). ``"sequential"`` is one process training alone.

* **WASAP-SGD phase 1 (asynchronous).** A worker computes the gradient of a mini-batch of its
  shard, pushes it, pulls the master's current values, repeats. The master applies each gradient
  on arrival with the run's optimizer (no barrier) — from whichever worker sent first
  (``schedule="async"``) or from worker ``t mod K`` (``"ordered"``: staleness exactly K − 1,
  deterministic) — and after every master epoch (as many updates as batches in one pass over the
  data) runs Importance Pruning (when due) and SET, bumps the topology version and sends the new
  connections to each worker with its next reply. Gradients computed on an older topology go
  through RetainValidUpdates (:class:`~swatlib.parallel.roles.Master`). When the phase's updates
  are done, the gradients still in flight are discarded and every worker is told to stop.
* **WASSP-SGD phase 1 (synchronous).** Every step, the workers all-reduce their gradients and each
  applies the mean to its own replica with the same optimizer and an identically seeded SET, so
  the replicas stay equal; the learning rate follows Goyal et al.'s linear scaling with a gradual
  warm-up, from ``lr`` to ``lr·K`` over the first ``warmup_epochs`` epochs.
* **Phase 2 (local)**, the last ``local_fraction`` of the epochs: each worker trains its replica
  alone on its shard with its own seeded SET and a fresh optimizer (``phase2="overwrite"``: the
  authors' published code, which resets the replica to the master's weights every
  ``overwrite_every`` steps), then the master averages the K replicas
  (:func:`~swatlib.parallel.roles.average_replicas`).

:func:`simulate` runs WASAP-SGD's ordered schedule in one process with the same objects; with real
processes the ordered schedule gives the identical result, bit for bit.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import multiprocessing.connection
import os
import pickle
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from swatlib import machine
from swatlib.atomic import atomic_write_bytes
from swatlib.checks import check_choice, check_int, check_number
from swatlib.experiments import runs
from swatlib.parallel import messages
from swatlib.parallel.messages import (BASED_ON, LENGTH, STOP, TAG_GRADIENT, TAG_REPLICA, TAG_REPLY,
                                       TAG_TOPOLOGY, TOPOLOGY, VERSION, Message, recv_tensor, send_tensor)
from swatlib.parallel.roles import (AVERAGING, RETAIN, Master, Replica, average_replicas, load_topology,
                                    model_from_snapshot, pack_topology, read_values, snapshot,
                                    state_digest, unpack_topology, write_values)
from swatlib.train import Classification

__all__ = ["ALGORITHMS", "PHASE2", "SCHEDULES", "Options", "ParallelRunError", "simulate", "train"]

#: Training algorithms of :func:`train`.
ALGORITHMS = ("wasap", "wassp", "sequential")

#: Phase-1 schedules of WASAP-SGD.
SCHEDULES = ("async", "ordered")

#: Phase-2 behaviours: the paper's local training, or the authors' overwrite by the master.
PHASE2 = ("local", "overwrite")

#: ``prctl`` option: the signal a process receives when its parent dies.

#: Seconds the processes of a failed run get to exit on their own before they are terminated.
_GRACE_SECONDS = 2.0


class ParallelRunError(RuntimeError):
    """A process of a parallel run failed; the message names its role, rank and cause."""


@dataclasses.dataclass(frozen=True)
class Options:
    """How a run is parallelised (the model and its training come from the run spec).

    Parameters
    ----------
    algorithm
        One of :data:`ALGORITHMS`.
    workers
        K ≥ 1 (``"sequential"``: ignored, one process).
    local_fraction
        Fraction of the epochs trained locally in phase 2, in [0, 1) (paper: 0.3).
    schedule
        WASAP-SGD's phase 1: ``"async"`` or ``"ordered"``.
    retain
        RetainValidUpdates: ``"map"`` or ``"position"`` (:mod:`swatlib.parallel.roles`).
    averaging
        ``"mean"`` or ``"sum"`` (:func:`~swatlib.parallel.roles.average_replicas`).
    phase2
        ``"local"`` or ``"overwrite"`` (module docstring).
    overwrite_every
        Steps between two overwrites under ``phase2="overwrite"``.
    warmup_epochs
        WASSP-SGD's learning-rate warm-up (authors: 5).
    threads
        Torch threads per process (1 for the parallel algorithms; the sequential baseline may use more).
    chunk
        Largest number of elements per transfer (:mod:`swatlib.parallel.messages`).
    """

    algorithm: str = "wasap"
    workers: int = 2
    local_fraction: float = 0.3
    schedule: str = "async"
    retain: str = "map"
    averaging: str = "mean"
    phase2: str = "local"
    overwrite_every: int = 10
    warmup_epochs: int = 5
    threads: int = 1
    chunk: int = messages.DEFAULT_CHUNK

    def __post_init__(self) -> None:
        for name, valid in (("algorithm", ALGORITHMS), ("schedule", SCHEDULES), ("retain", RETAIN),
                            ("averaging", AVERAGING), ("phase2", PHASE2)):
            check_choice(getattr(self, name), valid, name)
        for name, low in (("workers", 1), ("overwrite_every", 1), ("warmup_epochs", 0), ("threads", 1),
                          ("chunk", messages.HEADER)):
            check_int(getattr(self, name), name, low)
        check_number(self.local_fraction, "local_fraction", 0, 1, open_high=True)
        if self.algorithm != "sequential" and self.threads != 1:
            raise ValueError("threads must be 1 for the parallel algorithms (one thread per process)")

    @property
    def world(self) -> int:
        """Processes of the run: the master and K workers, or one for ``"sequential"``."""
        return 1 if self.algorithm == "sequential" else self.workers + 1

    def record(self) -> dict[str, Any]:
        """The options as a plain dict (part of a run's cache key)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Epoch counts of the phases and updates per epoch, fixed before any process starts."""

    phase1_epochs: int
    phase2_epochs: int
    updates_per_epoch: int
    workers: int
    n_train: int


def make_plan(spec: dict[str, Any], options: Options, n_train: int) -> Plan:
    """The phases of ``spec`` under ``options`` for a training split of ``n_train`` samples.

    Raises
    ------
    ValueError
        If the spec is not a SET-MLP with a parameter-free activation, or a shard would hold fewer
        samples than one mini-batch.
    """
    if spec.get("model") != "set-mlp":
        raise ValueError(f"parallel training needs a SET-MLP spec (model 'set-mlp'), got {spec.get('model')!r}")
    if spec["activation"] == "srelu":
        raise ValueError("activation 'srelu' has per-neuron parameters, which the parallel algorithms do not carry")
    workers = 1 if options.algorithm == "sequential" else options.workers
    batch = spec["batch_size"]
    if n_train // workers < batch:
        raise ValueError(f"workers={workers} leaves shards of {n_train // workers} samples, fewer than one "
                         f"batch ({batch}); use at most {max(1, n_train // batch)} workers")
    epochs = check_int(spec["epochs"], "epochs")
    phase2 = 0 if options.algorithm == "sequential" else round(options.local_fraction * epochs)
    if phase2 >= epochs:
        raise ValueError(f"local_fraction={options.local_fraction} leaves no epoch for phase 1 of {epochs}")
    per_worker = math.ceil((n_train // workers) / batch)
    updates = per_worker if options.algorithm != "wasap" else per_worker * workers
    return Plan(epochs - phase2, phase2, updates, workers, n_train)


# --------------------------------------------------------------------------- rank bookkeeping
class _Clock:
    """Per-role timings: wall and CPU since the start barrier, named intervals, bytes and messages."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.seconds: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def measure(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def report(self, role: str, rank: int, message_objects=(), **extra: Any) -> dict[str, Any]:
        sent = sum(m.bytes_sent for m in message_objects) + extra.pop("extra_bytes_sent", 0)
        received = sum(m.bytes_received for m in message_objects)
        return {"role": role, "rank": rank, "wall_seconds": time.perf_counter() - self.start,
                "cpu_seconds": time.process_time() - self.cpu_start,
                "peak_rss_mib": machine.peak_resident_bytes() / 2**20,
                "bytes_sent": sent, "bytes_received": received, **{f"{k}_seconds": v for k, v in self.seconds.items()},
                **extra}


def _capacity(model: torch.nn.Module) -> int:
    """Largest payload of the run: every parameter's gradient, then loss and gradient flow."""
    return sum(p.numel() for p in model.parameters()) + 2


# --------------------------------------------------------------------------- WASAP phase 1
class _Server:
    """The master's side of WASAP-SGD phase 1, whatever carries the messages."""

    def __init__(self, master: Master, workers: int, total_updates: int, schedule: str) -> None:
        self.master = master
        self.workers = workers
        self.total = total_updates
        self.schedule = schedule
        self.received = 0
        self.stopped = 0
        self.discarded = 0
        self.replica_version = dict.fromkeys(range(1, workers + 1), 0)
        self._packed: tuple[int, torch.Tensor] | None = None

    @property
    def done(self) -> bool:
        return self.stopped == self.workers

    def source(self, n: int) -> int | None:
        """Sender of message number ``n`` (0-based): any (async) or worker ``1 + n mod K`` (ordered)."""
        return None if self.schedule == "async" else 1 + n % self.workers

    def next_stops(self) -> bool:
        """Whether the reply to the message being handled tells its worker to stop."""
        return self.master.updates + 1 >= self.total

    def handle(self, src: int, message: Message, reply: Message) -> torch.Tensor | None:
        """Apply (or, after the phase's last update, discard) one gradient; fill ``reply``.

        Returns the packed topology to send after the reply when the worker's is out of date.
        """
        master, header = self.master, message.header
        stop = self.next_stops()
        if master.updates < self.total:
            master.apply(message.payload[:message.length], version=int(header[VERSION]),
                         based_on=int(header[BASED_ON]))
        else:
            self.discarded += 1
        reply.header.zero_()
        reply.header[LENGTH] = master.pack_values(reply.payload)
        reply.header[VERSION] = master.version
        reply.header[BASED_ON] = master.updates
        reply.header[STOP] = int(stop)
        topology = None
        if self.replica_version[src] != master.version:
            if self._packed is None or self._packed[0] != master.version:
                self._packed = (master.version, pack_topology(master.model))
            topology = self._packed[1]
            reply.header[TOPOLOGY] = topology.numel()
        self.replica_version[src] = master.version
        master.forget_before(min(self.replica_version.values()))
        self.stopped += int(stop)
        return topology


def _take_reply(replica: Replica, reply: Message, topology: torch.Tensor | None) -> bool:
    """A worker takes the master's reply (new connections first, then values); True if told to stop."""
    if topology is not None:
        load_topology(replica.model, unpack_topology(topology))
    replica.load_values(reply.payload[:reply.length])
    replica.version = int(reply.header[VERSION])
    replica.based_on = int(reply.header[BASED_ON])
    return bool(reply.header[STOP])


def _write_gradient(replica: Replica, out: Message) -> None:
    out.header.zero_()
    out.header[LENGTH] = replica.compute(out.payload)
    out.header[VERSION] = replica.version
    out.header[BASED_ON] = replica.based_on


def _wasap_master(spec, options: Options, plan: Plan, start: Callable[[], _Clock]) -> dict[str, Any]:
    master = Master(spec, updates_per_epoch=plan.updates_per_epoch, retain=options.retain)
    server = _Server(master, options.workers, plan.phase1_epochs * plan.updates_per_epoch, options.schedule)
    capacity = _capacity(master.model)
    inbox = [Message(capacity, options.chunk), Message(capacity, options.chunk)]
    # One reply buffer per worker, sent without waiting: the master goes on to the next gradient while
    # the socket drains, and a buffer is reused only after its worker has answered (its send is done).
    replies = [Message(capacity, options.chunk) for _ in range(options.workers)]
    in_flight: list[list] = [[] for _ in range(options.workers)]
    topology_bytes = 0
    clock = start()
    master.clock_start = clock.start
    pending = inbox[0].post(server.source(0), TAG_GRADIENT)
    current = 0
    while not server.done:
        with clock.measure("wait"):
            src = pending.wait()
        server.received += 1
        still_running = options.workers - server.stopped - int(server.next_stops())
        if still_running > 0:  # post the next receive before the work on this message
            pending = inbox[1 - current].post(server.source(server.received), TAG_GRADIENT)
        reply = replies[src - 1]
        with clock.measure("send"):
            for work, _ in in_flight[src - 1]:
                work.wait()
        with clock.measure("apply"):
            topology = server.handle(src, inbox[current], reply)
        with clock.measure("send"):
            in_flight[src - 1] = [(work, None) for work in reply.isend(src, TAG_REPLY)]
            if topology is not None:  # kept referenced until its sends complete
                in_flight[src - 1] += [(dist.isend(topology[i:i + options.chunk], src, tag=TAG_TOPOLOGY), topology)
                                       for i in range(0, topology.numel(), options.chunk)]
                topology_bytes += 8 * topology.numel()
        current = 1 - current
    for sends in in_flight:
        for work, _ in sends:
            work.wait()
    phase1_seconds = time.perf_counter() - clock.start
    final, averaged = master.model, None
    if plan.phase2_epochs:
        averaged = _collect_and_average(master.model, options, clock)
        final = averaged
    return {"final_state": snapshot(final) if averaged is None else averaged,
            "snapshots": master.snapshots, "staleness": dict(master.staleness),
            "updates": master.updates, "discarded": server.discarded, "phase1_seconds": phase1_seconds,
            "train_seconds": time.perf_counter() - clock.start,
            "stats": clock.report("master", 0, [*inbox, *replies], extra_bytes_sent=topology_bytes,
                                  topology_seconds=master.topology_seconds, messages=server.received)}


def _wasap_worker(rank: int, spec, options: Options, plan: Plan, start: Callable[[], _Clock], data) -> dict[str, Any]:
    replica = Replica(spec, data, rank, options.workers)
    capacity = _capacity(replica.model)
    out, reply = Message(capacity, options.chunk), Message(capacity, options.chunk)
    steps = 0
    clock = start()
    while True:
        pending = reply.post(0, TAG_REPLY)  # before the push, so that the reply finds it waiting
        with clock.measure("compute"):
            _write_gradient(replica, out)
        with clock.measure("wait"):
            out.send(0, TAG_GRADIENT)
            pending.wait()
            topology = None
            if int(reply.header[TOPOLOGY]):
                topology = torch.empty(int(reply.header[TOPOLOGY]), dtype=torch.int64)
                recv_tensor(topology, 0, TAG_TOPOLOGY, options.chunk)
        steps += 1
        with clock.measure("compute"):
            if _take_reply(replica, reply, topology):
                break
    return _phase2_and_report(replica, rank, options, plan, clock, [out, reply], steps=steps)


# --------------------------------------------------------------------------- WASSP phase 1
def _warmup(lr: float, workers: int, warmup_updates: int) -> Callable[[int], float]:
    """Goyal et al.: linear from ``lr`` to ``lr·K`` over ``warmup_updates`` updates, then ``lr·K``."""
    def lr_at(update: int) -> float:
        progress = 1.0 if warmup_updates == 0 else min(1.0, update / warmup_updates)
        return lr * (1.0 + (workers - 1) * progress)
    return lr_at


def _wassp_worker(rank: int, spec, options: Options, plan: Plan, start: Callable[[], _Clock], data,
                  group) -> dict[str, Any]:
    replica = Replica(spec, data, rank, options.workers)
    master = Master(spec, updates_per_epoch=plan.updates_per_epoch, model=replica.model, record=rank == 1,
                    lr_at=_warmup(spec["lr"], options.workers, options.warmup_epochs * plan.updates_per_epoch))
    buffer = Message(_capacity(replica.model), options.chunk)
    reduced_bytes = 0
    clock = start()
    master.clock_start = clock.start
    for _ in range(plan.phase1_epochs * plan.updates_per_epoch):
        with clock.measure("compute"):
            length = replica.compute(buffer.payload)
        with clock.measure("wait"):
            dist.all_reduce(buffer.payload[:length], group=group)
        reduced_bytes += 4 * length
        with clock.measure("compute"):
            buffer.payload[:length].div_(options.workers)
            master.apply(buffer.payload[:length], version=master.version, based_on=master.updates)
    result = _phase2_and_report(replica, rank, options, plan, clock, [buffer], steps=master.updates,
                                digest=state_digest(replica.model), extra_bytes_sent=reduced_bytes)
    result["snapshots"] = master.snapshots + result["snapshots"]
    result["staleness"] = dict(master.staleness)
    return result


def _wassp_master(spec, options: Options, plan: Plan, start: Callable[[], _Clock]) -> dict[str, Any]:
    model = Master(spec, updates_per_epoch=plan.updates_per_epoch, record=False).model
    clock = start()
    averaged = _collect_and_average(model, options, clock)
    return {"final_state": averaged, "snapshots": [], "train_seconds": time.perf_counter() - clock.start,
            "stats": clock.report("master", 0)}


# --------------------------------------------------------------------------- phase 2 and averaging
def _phase2_and_report(replica: Replica, rank: int, options: Options, plan: Plan, clock: _Clock,
                       message_objects, *, steps: int, digest: str | None = None,
                       extra_bytes_sent: int = 0) -> dict[str, Any]:
    """Phase 2 on a worker (when there is one), the replica sent to the master, the worker's report."""
    snapshots: list[dict[str, Any]] = []
    if plan.phase2_epochs:
        def record(local_epoch: int) -> None:
            if rank == 1 and local_epoch < plan.phase2_epochs:  # the last epoch is the averaged model's
                snapshots.append({"epoch": plan.phase1_epochs + local_epoch,
                                  "wall": time.perf_counter() - clock.start, "state": snapshot(replica.model)})
        with clock.measure("local"):
            replica.train_locally(plan.phase2_epochs, phase2=options.phase2,
                                  overwrite_every=options.overwrite_every, record=record)
    if plan.phase2_epochs or options.algorithm == "wassp":  # WASSP's master has no model of its own
        with clock.measure("wait"):
            extra_bytes_sent += _send_replica(replica.model, options)
    return {"snapshots": snapshots, "phase1_digest": digest,
            "stats": clock.report(f"worker {rank}", rank, message_objects, extra_bytes_sent=extra_bytes_sent,
                                  steps=steps)}


def _send_replica(model: torch.nn.Module, options: Options) -> int:
    topology = pack_topology(model)
    send_tensor(torch.tensor([topology.numel()], dtype=torch.int64), 0, TAG_REPLICA)
    send_tensor(topology, 0, TAG_TOPOLOGY, options.chunk)
    values = torch.empty(_capacity(model))
    values = values[:write_values(model, values)]
    send_tensor(values, 0, TAG_REPLICA + 2, options.chunk)
    return 8 * (1 + topology.numel()) + 4 * values.numel()


def _collect_and_average(template: torch.nn.Module, options: Options, clock: _Clock) -> dict[str, Any]:
    """Receive the K replicas (in rank order) into copies of ``template``'s shape and average them."""
    states = []
    for rank in range(1, options.workers + 1):
        size = torch.empty(1, dtype=torch.int64)
        with clock.measure("wait"):  # for the worker's phase 2 to end
            recv_tensor(size, rank, TAG_REPLICA)
        topology = torch.empty(int(size), dtype=torch.int64)
        recv_tensor(topology, rank, TAG_TOPOLOGY, options.chunk)
        load_topology(template, unpack_topology(topology))
        values = torch.empty(sum(p.numel() for p in template.parameters()))
        recv_tensor(values, rank, TAG_REPLICA + 2, options.chunk)
        read_values(template, values)
        states.append(snapshot(template))
    with clock.measure("average"):
        return average_replicas(states, options.averaging)


# --------------------------------------------------------------------------- sequential
def _sequential(spec, options: Options, plan: Plan, start: Callable[[], _Clock], data) -> dict[str, Any]:
    """One process: worker 1 of 1's streams, updates applied in place (the baseline of Table 3)."""
    replica = Replica(spec, data, 1, 1)
    master = Master(spec, updates_per_epoch=plan.updates_per_epoch, model=replica.model)
    buffer = torch.empty(_capacity(replica.model))
    clock = start()
    master.clock_start = clock.start
    for _ in range(plan.phase1_epochs * plan.updates_per_epoch):
        with clock.measure("compute"):
            length = replica.compute(buffer)
            master.apply(buffer[:length], version=master.version, based_on=master.updates)
    return {"final_state": snapshot(master.model), "snapshots": master.snapshots, "staleness": dict(master.staleness),
            "updates": master.updates, "train_seconds": time.perf_counter() - clock.start,
            "stats": clock.report("sequential", 0, topology_seconds=master.topology_seconds)}


# --------------------------------------------------------------------------- one rank
def _run_rank(rank: int, spec, options: Options, plan: Plan) -> dict[str, Any]:
    """Everything rank ``rank`` does once the process group exists; returns its report."""
    master_only = rank == 0 and options.algorithm != "sequential"
    data = None if master_only else runs.load_dataset(spec["dataset"], spec["subset"])
    group = None
    if options.algorithm == "wassp":  # every rank takes part in creating the workers' group
        group = dist.new_group(ranks=list(range(1, options.workers + 1)))

    # Building the first optimizer of a process imports torch._dynamo (seconds); a WASAP worker builds
    # its first one in phase 2, inside the timed part, so every rank pays for the import here instead.
    import torch._dynamo  # noqa: F401

    def start() -> _Clock:  # every role calls it when set up: the timed part starts together
        dist.barrier()
        return _Clock()

    if options.algorithm == "sequential":
        return _sequential(spec, options, plan, start, data)
    if options.algorithm == "wasap":
        if rank == 0:
            return _wasap_master(spec, options, plan, start)
        return _wasap_worker(rank, spec, options, plan, start, data)
    if rank == 0:
        return _wassp_master(spec, options, plan, start)
    return _wassp_worker(rank, spec, options, plan, start, data, group)


def run_rank(rank: int, world: int, spec, options: Options, plan: Plan, init_method: str) -> list[dict] | None:
    """Join the process group, play rank ``rank``'s role, gather every report on rank 0 (None elsewhere)."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(hours=6))
    try:
        report = _run_rank(rank, spec, options, plan)
        reports = [None] * world if rank == 0 else None
        dist.gather_object(report, reports, dst=0)
        return reports
    finally:
        dist.destroy_process_group()


def leave_without_finalising(code: int = 0) -> None:
    """End a rank's process now, skipping the interpreter's finalisation.

    After ``destroy_process_group`` a rank sometimes aborted while Python shut down (C++ "terminate called
    without an active exception", SIGABRT; about one full Fashion-MNIST run in 50 here, and
    ``PYTHONFAULTHANDLER`` showed no Python frame left on the stack). Everything the rank owes is written
    by then, so it flushes its output and leaves.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _spawned(rank: int, world: int, spec, options: Options, plan: Plan, init_method: str, output: str) -> None:
    runs.die_with_parent()
    runs.enter_child(options.threads)
    reports = run_rank(rank, world, spec, options, plan, init_method)
    if rank == 0:
        atomic_write_bytes(output, pickle.dumps(reports))
    leave_without_finalising()


# --------------------------------------------------------------------------- the parent
def _role(rank: int, options: Options) -> str:
    if options.algorithm == "sequential":
        return "the sequential process (rank 0)"
    return "the master (rank 0)" if rank == 0 else f"worker {rank} (rank {rank})"


def _cause(context, index: int) -> tuple[int, str]:
    """(priority, words) for a failed process, the root cause first: killed from outside (SIGKILL:
    the out-of-memory killer, a user), then an error of its own, then a crash by another signal (a
    C++ abort is usually a rank reacting to a peer that failed), then a lost connection (the echo of
    a peer's failure)."""
    code = context.processes[index].exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        if name == "SIGKILL":
            return 0, "was killed by SIGKILL (out of memory?)"
        return 2, f"was killed by {name}"
    path = context.error_files[index]
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, "rb") as f:
            trace = pickle.load(f)
        last = [line for line in trace.strip().splitlines() if line.strip()][-1].strip()
        secondary = "Connection closed by peer" in last or "Connection reset" in last or "timed out" in last
        return (3 if secondary else 1), f"raised {last}"
    return 1, f"exited with status {code}"


def _root_cause(context, failed) -> tuple[int, str]:
    """The failed process whose :func:`_cause` ranks first (the lowest rank among equals), and its words."""
    causes = {i: _cause(context, i) for i in failed}
    index = min(failed, key=lambda i: (causes[i][0], i))
    return index, causes[index][1]


def _launch(spec, options: Options, plan: Plan) -> list[dict]:
    """Start the ranks (spawn), wait, and turn any failure into one :class:`ParallelRunError`."""
    world = options.world
    with tempfile.TemporaryDirectory(prefix="swatlib-parallel-") as tmp:
        output = os.path.join(tmp, "reports.pkl")
        # Rendezvous through a file in this run's private directory, not a TCP port: a port found free
        # and released here could be taken by another process before rank 0 binds it (seconds later,
        # after torch has imported), and on a shared machine another job's process could reach it.
        init_method = "file://" + os.path.join(tmp, "rendezvous")
        with runs.child_start_conditions():
            context = mp.start_processes(_spawned, args=(world, spec, options, plan, init_method, output),
                                         nprocs=world, join=False, start_method="spawn")
        try:
            _wait(context, options)
        except BaseException:
            _stop_all(context)
            raise
        with open(output, "rb") as f:
            return pickle.load(f)


def _wait(context, options: Options) -> None:
    sentinels = {p.sentinel: i for i, p in enumerate(context.processes)}
    while sentinels:
        ready = multiprocessing.connection.wait(list(sentinels), timeout=1.0)
        failed = []
        for sentinel in ready:
            index = sentinels.pop(sentinel)
            context.processes[index].join()
            if context.processes[index].exitcode != 0:
                failed.append(index)
        if failed:
            deadline = time.monotonic() + _GRACE_SECONDS  # let the others notice and exit
            for p in context.processes:
                p.join(max(0.0, deadline - time.monotonic()))
            failed += [i for i, p in enumerate(context.processes)
                       if i not in failed and p.exitcode not in (0, None)]
            _stop_all(context)
            index, words = _root_cause(context, failed)
            raise ParallelRunError(f"{_role(index, options)} {words}; the run was stopped")


def _stop_all(context) -> None:
    """Terminate every process still alive (SIGTERM, then SIGKILL) and reap them all."""
    for p in context.processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 5.0
    for p in context.processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def assemble(spec, options: Options, plan: Plan, reports: list[dict], data) -> dict[str, Any]:
    """The result of a run from its ranks' reports: history scored from the snapshots, summary, stats."""
    master = reports[0]
    snapshots = sorted([s for r in reports for s in r.get("snapshots", [])], key=lambda s: s["epoch"])
    history = []
    for snap in snapshots:
        model = model_from_snapshot(spec, snap["state"])
        record = {"epoch": snap["epoch"], **Classification(data).evaluate(model),
                  "wall_seconds": snap["wall"], "nnz": int(model.nnz), "hidden_neurons": list(model.hidden_neurons),
                  "model": "master" if snap["epoch"] <= plan.phase1_epochs else "worker 1's replica"}
        if "gradient_flow" in snap:
            record["gradient_flow"] = snap["gradient_flow"]
        history.append(record)
    final = model_from_snapshot(spec, master["final_state"])
    final_metrics = Classification(data).evaluate(final)
    if plan.phase2_epochs:  # the last epoch's network is the average of the replicas
        history.append({"epoch": spec["epochs"], **final_metrics, "wall_seconds": master["train_seconds"],
                        "nnz": int(final.nnz), "hidden_neurons": list(final.hidden_neurons), "model": "average"})
    roles = [r["stats"] for r in reports]
    staleness = collections.Counter()
    for r in reports[:2] if options.algorithm == "wassp" else reports[:1]:
        staleness.update({int(k): v for k, v in (r.get("staleness") or {}).items()})
    train_seconds = master["train_seconds"]
    best = max(history, key=lambda r: r["test_acc"])
    return {
        "algorithm": options.algorithm, "workers": plan.workers if options.algorithm != "sequential" else 0,
        "options": options.record(), "epochs": spec["epochs"], "phase1_epochs": plan.phase1_epochs,
        "phase2_epochs": plan.phase2_epochs, "updates_per_epoch": plan.updates_per_epoch,
        "history": history, "best_test_acc": best["test_acc"], "best_epoch": best["epoch"],
        "final_test_acc": final_metrics["test_acc"], "final_test_loss": final_metrics["test_loss"],
        "final_train_acc": final_metrics["train_acc"], "nnz": int(final.nnz),
        "hidden_neurons": list(final.hidden_neurons), "train_seconds": train_seconds,
        "samples_per_second": spec["epochs"] * plan.n_train / train_seconds,
        "cpu_utilisation": sum(r["cpu_seconds"] for r in roles) / (train_seconds * (os.cpu_count() or 1)),
        "roles": roles, "staleness": {str(k): staleness[k] for k in sorted(staleness)},
        "discarded": master.get("discarded", 0),
        "phase1_digests": [r.get("phase1_digest") for r in reports[1:]], "final_digest": state_digest(final),
        "n_train": plan.n_train, "load_average": list(os.getloadavg()),
    }


def train(spec: dict[str, Any], *, log: Callable[[str], None] = print, **options: Any) -> dict[str, Any]:
    """Train a Truly Sparse run spec with WASAP-SGD, WASSP-SGD or sequentially (module docstring).

    Parameters
    ----------
    spec
        A SET-MLP spec of :func:`swatlib.experiments.truly_sparse.make_spec` (dataset, sizes, ε, lr,
        epochs, Importance Pruning, seed, …).
    log
        Receives a line when the run starts and ends.
    **options
        The fields of :class:`Options` (``algorithm``, ``workers``, ``local_fraction``, ``schedule``,
        ``retain``, ``averaging``, ``phase2``, …).

    Returns
    -------
    dict
        JSON-able: ``history`` (per epoch: the scores of :func:`swatlib.train.fit`, ``wall_seconds``
        since the start, ``nnz``, ``hidden_neurons``, which ``model`` was scored), ``best_test_acc``,
        ``final_test_acc``, ``train_seconds`` (start barrier to final network, no evaluation),
        ``samples_per_second``, ``cpu_utilisation``, ``roles`` (per process: wall, CPU, wait, compute
        and send seconds, bytes, peak RSS), ``staleness`` (updates applied between a gradient's
        values and its application → count), ``nnz``.

    Raises
    ------
    ValueError
        On an invalid option or spec, before any process starts.
    ParallelRunError
        If a process fails: every other process is stopped, the message names the role and cause.
    """
    parsed = Options(**options)
    data = runs.load_dataset(spec["dataset"], spec["subset"])
    plan = make_plan(spec, parsed, len(data.y_train))
    log(f"{parsed.algorithm}: {parsed.world} process(es), {plan.phase1_epochs} + {plan.phase2_epochs} epochs, "
        f"{plan.updates_per_epoch} updates per epoch")
    reports = _launch(spec, parsed, plan)
    result = assemble(spec, parsed, plan, reports, data)
    log(f"{parsed.algorithm}: best test accuracy {result['best_test_acc']:.4f} in {result['train_seconds']:.1f} s")
    return result


def simulate(spec: dict[str, Any], *, workers: int, local_fraction: float = 0.3, retain: str = "map",
             averaging: str = "mean", phase2: str = "local", overwrite_every: int = 10) -> dict[str, Any]:
    """WASAP-SGD's ordered schedule in this process, with the objects the processes use.

    Returns the same result as :func:`train` with ``schedule="ordered"`` (timings aside), plus, when
    there is a phase 2, ``replicas_before_averaging``: each replica's scores (``rank``, train and test
    loss and accuracy, ``nnz``) at the end of its local phase, next to the average's in ``history``:
    what averaging gains or costs.
    """
    options = Options(algorithm="wasap", workers=workers, local_fraction=local_fraction, schedule="ordered",
                      retain=retain, averaging=averaging, phase2=phase2, overwrite_every=overwrite_every)
    data = runs.load_dataset(spec["dataset"], spec["subset"])
    plan = make_plan(spec, options, len(data.y_train))
    clock = _Clock()
    master = Master(spec, updates_per_epoch=plan.updates_per_epoch, retain=retain)
    server = _Server(master, workers, plan.phase1_epochs * plan.updates_per_epoch, "ordered")
    replicas = [Replica(spec, data, rank, workers) for rank in range(1, workers + 1)]
    capacity = _capacity(master.model)
    outbox = [Message(capacity) for _ in replicas]
    reply = Message(capacity)
    for replica, out in zip(replicas, outbox):
        _write_gradient(replica, out)
    while not server.done:
        src = server.source(server.received)
        server.received += 1
        topology = server.handle(src, outbox[src - 1], reply)
        if not _take_reply(replicas[src - 1], reply, topology):
            _write_gradient(replicas[src - 1], outbox[src - 1])
    reports = [{"snapshots": master.snapshots, "staleness": dict(master.staleness), "discarded": server.discarded}]
    for replica in replicas:
        snapshots: list[dict[str, Any]] = []
        if plan.phase2_epochs:
            def record(local_epoch: int, replica=replica, snapshots=snapshots) -> None:
                if replica.rank == 1 and local_epoch < plan.phase2_epochs:
                    snapshots.append({"epoch": plan.phase1_epochs + local_epoch, "wall": 0.0,
                                      "state": snapshot(replica.model)})
            replica.train_locally(plan.phase2_epochs, phase2=phase2, overwrite_every=overwrite_every, record=record)
        reports.append({"snapshots": snapshots, "stats": clock.report(f"worker {replica.rank}", replica.rank)})
    if plan.phase2_epochs:
        reports[0]["final_state"] = average_replicas([snapshot(r.model) for r in replicas], averaging)
    else:
        reports[0]["final_state"] = snapshot(master.model)
    reports[0]["train_seconds"] = time.perf_counter() - clock.start
    reports[0]["stats"] = clock.report("simulator", 0)
    result = assemble(spec, options, plan, reports, data)
    if plan.phase2_epochs:
        result["replicas_before_averaging"] = [
            {"rank": replica.rank, **Classification(data).evaluate(replica.model), "nnz": int(replica.model.nnz)}
            for replica in replicas]
    return result
