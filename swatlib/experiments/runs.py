"""One plumbing for every notebook family: run spec → results cache → :class:`RunResult`.

A *run spec* is a plain dict holding every hyper-parameter of one training run, its ``dataset``
among them; it is the key of the results cache (:mod:`swatlib.cache`). Each family (:mod:`~swatlib.experiments.truly_sparse`,
:mod:`~swatlib.experiments.swat`) describes itself once as a :class:`Family` — its ``compute``
function and its policies — and hands specs to :func:`run` or :func:`run_many`, which fetch
cached results and train the others.

Parallel runs
-------------
A training run is a pure function of its spec and the cache is content-addressed, so independent
runs can train side by side. ``run_many(..., jobs=N)`` with ``N > 1``:

* answers cached specs in this process, trains every distinct uncached spec once, in at most
  ``N`` worker processes (never more than there are such specs) started with the ``spawn``
  method, each with one torch thread and ``OMP_NUM_THREADS=1`` set before it imports torch;
* runs a family's *timed* runs (:attr:`Family.is_timed`: their reported results include measured
  time, which must not share the machine) afterwards, alone, in this process;
* lets each worker store its run through the cache's lock (so every result is written once,
  atomically) and passes the run's log lines to ``log`` when the run finishes: a notebook stores
  what its own process prints, not what its children print;
* fails with the worker's traceback in the message if a run raises, and with the exit code if a
  worker dies;
* on Ctrl-C (``KeyboardInterrupt`` here, or SIGINT to the whole process group) terminates every
  worker and waits for it before re-raising: workers ignore SIGINT and leave on SIGTERM through
  ``SystemExit``, so an interrupted cache write removes its temporary file, and an unfinished run
  leaves no cache entry.

``jobs=None`` reads :data:`JOBS_VARIABLE` (set by ``python -m swatlib.reproduce --jobs``; default 1,
``auto`` = the CPUs this process may use). ``jobs=1`` trains in this process, in spec order, as a
plain loop, with each epoch's line logged as it happens.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from swatlib.cache import Entry, ResultsCache, cached, config_key
from swatlib.data import DatasetNotFoundError, load

__all__ = [
    "ABSENT",
    "JOBS_VARIABLE",
    "Family",
    "child_start_conditions",
    "die_with_parent",
    "enter_child",
    "RunResult",
    "load_dataset",
    "resolve_jobs",
    "run",
    "run_many",
]

#: Status of a run whose dataset files are missing.
ABSENT = "not run: dataset absent"

#: Environment variable giving the default number of worker processes of :func:`run_many`.
JOBS_VARIABLE = "SWATLIB_JOBS"

#: prctl option: the signal a process receives when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1

#: Seconds a terminated worker gets to unwind (remove temporary files) before it is killed.
_STOP_GRACE_SECONDS = 5.0


@dataclass
class RunResult:
    """One run: its spec, ``status`` (``"ok"`` or :data:`ABSENT`) and, if it ran, its cached output.

    Families subclass it to add their own views of the result (a label, the test accuracy).
    """

    spec: dict[str, Any]
    status: str
    result: dict[str, Any] | None = None
    tensors: dict[str, Any] | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the run trained (or came from the cache)."""
        return self.status == "ok"


def _never(spec: dict[str, Any]) -> bool:
    return False


@dataclass(frozen=True)
class Family:
    """How the runs of one notebook family are computed and reported.

    Attributes
    ----------
    compute
        ``compute(spec, log)`` trains one run, sending its progress lines to ``log``, and returns a
        JSON-able result or a ``(result, tensors)`` pair. A module-level function: worker processes
        import it by name.
    describe
        One-line name of a run, for error messages.
    result_type
        The family's :class:`RunResult` (sub)class.
    absent_is_a_result
        A dataset whose files are missing gives a result with status :data:`ABSENT` (tables keep
        the row) instead of raising :class:`~swatlib.data.DatasetNotFoundError`.
    is_timed
        Whether a run's reported results include measured time (or anything else that sharing the
        machine would distort); :func:`run_many` computes such runs alone, in this process.
    """

    compute: Callable[[dict[str, Any], Callable[[str], None]], Any]
    describe: Callable[[dict[str, Any]], str]
    result_type: type[RunResult] = RunResult
    absent_is_a_result: bool = False
    is_timed: Callable[[dict[str, Any]], bool] = _never


@functools.lru_cache(maxsize=8)
def _load(dataset: str, subset: int | tuple[int, int] | None, **options: Any):
    return load(dataset, subset=subset, **options)


def load_dataset(dataset: str, subset: int | list[int] | tuple[int, int] | None, **options: Any):
    """:func:`swatlib.data.load`, memoised within the process (runs of one notebook share their data).

    ``subset`` may be a list, as a spec holds it; ``options`` go to the loader (``flatten=...``).
    """
    return _load(dataset, tuple(subset) if isinstance(subset, list) else subset, **options)


def run(family: Family, spec: dict[str, Any], *, log: Callable[[str], None] = print) -> RunResult:
    """Train ``spec`` in this process, or fetch it from the results cache.

    Returns
    -------
    RunResult
        Of ``family.result_type``: ``status="ok"`` with the cached ``result`` and ``tensors``, or,
        for a family whose absent datasets are results, ``status=ABSENT`` with the loader's message
        (nothing is cached then).
    """
    try:
        entry = cached(spec, lambda: family.compute(spec, log))
    except DatasetNotFoundError as exc:
        if not family.absent_is_a_result:
            raise
        return family.result_type(spec, ABSENT, message=str(exc))
    return _from_entry(family, spec, entry)


def resolve_jobs(jobs: int | str | None) -> int:
    """Number of worker processes: ``jobs``, else ``$SWATLIB_JOBS``, else 1; ``"auto"`` = usable CPUs.

    Raises
    ------
    ValueError
        For anything but a positive integer or ``"auto"``.
    """
    source = "jobs"
    if jobs is None:
        source, jobs = JOBS_VARIABLE, os.environ.get(JOBS_VARIABLE) or "1"
    if jobs == "auto":
        return len(os.sched_getaffinity(0))
    if isinstance(jobs, str) and jobs.strip().isdigit():
        jobs = int(jobs)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"{source} must be a positive integer or 'auto', got {jobs!r}")
    return jobs


def run_many(family: Family, specs: Iterable[dict[str, Any]], *, log: Callable[[str], None] = print,
             jobs: int | str | None = None) -> list[RunResult]:
    """Every spec's :class:`RunResult`, in spec order; each distinct spec is trained at most once.

    Parameters
    ----------
    family
        Whose runs these are.
    specs
        Run specs; duplicates share one run.
    log
        Receives the progress lines (one per epoch) and one line per dataset found absent.
    jobs
        Worker processes (module docstring); None: :data:`JOBS_VARIABLE`, default 1.

    Raises
    ------
    RuntimeError
        If a run failed in a worker (its traceback is in the message) or a worker died.
    """
    specs = list(specs)
    jobs = resolve_jobs(jobs)
    keys = [config_key(spec) for spec in specs]
    distinct: dict[str, dict[str, Any]] = {}
    for key, spec in zip(keys, specs):
        distinct.setdefault(key, spec)
    outcomes: dict[str, RunResult] = {}
    absent: dict[str, str] = {}
    if jobs > 1:
        cache = ResultsCache()
        pending = []
        for key, spec in distinct.items():
            if family.is_timed(spec):
                continue
            entry = _cached_entry(cache, spec)
            if entry is None:
                pending.append((key, spec))
            else:
                outcomes[key] = _from_entry(family, spec, entry)
        if pending:
            outcomes.update(_Pool(family, pending, cache, absent, log).run(jobs))
    for key, spec in distinct.items():  # here, in order: every run (jobs=1) or the timed ones
        if key not in outcomes:
            outcomes[key] = _run_here(family, spec, absent, log)
    return [outcomes[key] for key in keys]


def _from_entry(family: Family, spec: dict[str, Any], entry: Entry) -> RunResult:
    return family.result_type(spec, "ok", entry.result, entry.tensors)


def _run_here(family: Family, spec: dict[str, Any], absent: dict[str, str],
              log: Callable[[str], None]) -> RunResult:
    """:func:`run`, except that a dataset found absent once is not looked for again."""
    if spec["dataset"] in absent:
        return family.result_type(spec, ABSENT, message=absent[spec["dataset"]])
    outcome = run(family, spec, log=log)
    if outcome.status == ABSENT:
        _remember_absent(spec, outcome.message, absent, log)
    return outcome


def _remember_absent(spec: dict[str, Any], message: str, absent: dict[str, str],
                     log: Callable[[str], None]) -> None:
    """Note (and say, once) that the spec's dataset is absent: its other runs are not tried."""
    if spec["dataset"] not in absent:
        absent[spec["dataset"]] = message
        log(f"{spec['dataset']}: {ABSENT} ({message.split(':')[0]})")


class _NotCached(Exception):
    """Raised in place of computing: :func:`_cached_entry` only looks."""


def _refuse_to_compute() -> Any:
    raise _NotCached


def _cached_entry(cache: ResultsCache, spec: dict[str, Any]) -> Entry | None:
    """The usable cache entry of ``spec`` (the cache's own rules: corrupt or forced entries are
    not usable), or None; waits while another process holds the spec's lock."""
    try:
        return cache.get_or_compute(spec, _refuse_to_compute)
    except _NotCached:
        return None


# ------------------------------------------------------------------------------------------
# Worker processes


@dataclass
class _Report:
    """What a worker sends back for one run: ``"ok"`` (stored in the cache), ``"absent"`` or
    ``"failed"``, its log lines, and the loader's message or the traceback."""

    status: str
    lines: list[str] = field(default_factory=list)
    detail: str = ""


def _leave_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies: a child blocked in a gloo receive or a
    long C kernel would never run a Python signal handler, so a parent killed hard must not leave it
    behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up still applies
        return
    if os.getppid() == 1:  # the parent died before the request was made
        os._exit(1)


def enter_child(threads: int = 1) -> None:
    """First thing a process started under :func:`child_start_conditions` does.

    SIGTERM becomes ``SystemExit`` (so ``finally`` blocks remove temporary files), Ctrl-C is left to
    the parent (which stops its children), and torch uses ``threads`` threads.
    """
    signal.signal(signal.SIGTERM, _leave_on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since the spawn
    torch.set_num_threads(threads)


def _serve(connection: multiprocessing.connection.Connection, compute: Callable) -> None:
    """A worker's life: compute and store the specs received until SIGTERM."""
    enter_child()
    while True:
        connection.send(_compute_and_store(compute, connection.recv()))


def _compute_and_store(compute: Callable, spec: dict[str, Any]) -> _Report:
    lines: list[str] = []
    try:
        ResultsCache(log=lines.append).get_or_compute(spec, lambda: compute(spec, lines.append))
    except DatasetNotFoundError as exc:
        return _Report("absent", lines, str(exc))
    except Exception:  # reported to the parent, which fails the call with this traceback
        return _Report("failed", lines, traceback.format_exc())
    return _Report("ok", lines)


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: multiprocessing.connection.Connection


@contextlib.contextmanager
def child_start_conditions() -> Iterator[None]:
    """``OMP_NUM_THREADS=1`` in the environment and SIGINT blocked while child processes start.

    A spawned child inherits both: OpenMP reads the variable when the child imports torch, and the
    child stays deaf to Ctrl-C until it has chosen to ignore it (:func:`enter_child`).
    """
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if previous is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def _start_worker(context: multiprocessing.context.BaseContext, compute: Callable,
                  workers: list[_Worker]) -> None:
    """Start one worker, listed in ``workers`` before it starts so that stopping never misses it."""
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(theirs, compute), name="swatlib-run", daemon=True)
    workers.append(_Worker(process, ours))
    process.start()
    theirs.close()  # the worker holds the only other end: its death reads as end-of-file


def _stop(workers: list[_Worker]) -> None:
    """Terminate every started worker and wait for it (killed if it outstays the grace period)."""
    started = [w for w in workers if w.process.pid is not None]
    for worker in started:
        worker.process.terminate()
    for worker in started:
        worker.process.join(_STOP_GRACE_SECONDS)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
    for worker in workers:
        worker.connection.close()


class _Pool:
    """Trains the pending runs of one :func:`run_many` call in worker processes."""

    def __init__(self, family: Family, pending: list[tuple[str, dict[str, Any]]], cache: ResultsCache,
                 absent: dict[str, str], log: Callable[[str], None]) -> None:
        self.family, self.cache, self.absent, self.log = family, cache, absent, log
        self.queue = collections.deque(pending)
        self.outcomes: dict[str, RunResult] = {}
        self.busy: dict[_Worker, tuple[str, dict[str, Any]]] = {}

    def run(self, jobs: int) -> dict[str, RunResult]:
        """Start ``min(jobs, pending runs)`` workers, keep them busy, stop them; the outcomes by key."""
        workers: list[_Worker] = []
        try:
            context = multiprocessing.get_context("spawn")
            with child_start_conditions():
                for _ in range(min(jobs, len(self.queue))):
                    _start_worker(context, self.family.compute, workers)
            for worker in workers:
                self._hand_next(worker)
            while self.busy:
                self._collect_finished()
        finally:
            _stop(workers)
        return self.outcomes

    def _hand_next(self, worker: _Worker) -> None:
        """Give ``worker`` the next spec whose dataset is not known to be absent."""
        while self.queue:
            key, spec = self.queue.popleft()
            if spec["dataset"] in self.absent:
                self.outcomes[key] = self.family.result_type(spec, ABSENT, message=self.absent[spec["dataset"]])
                continue
            worker.connection.send(spec)
            self.busy[worker] = (key, spec)
            return

    def _collect_finished(self) -> None:
        waiting = {w.connection: w for w in self.busy} | {w.process.sentinel: w for w in self.busy}
        for worker in {waiting[ready] for ready in multiprocessing.connection.wait(list(waiting))}:
            key, spec = self.busy.pop(worker)
            try:
                report = worker.connection.recv()
            except EOFError:
                worker.process.join(_STOP_GRACE_SECONDS)  # its pipe closes as it dies: collect the exit code
                raise RuntimeError(f"the worker process training {self.family.describe(spec)} died "
                                   f"(exit code {worker.process.exitcode})") from None
            for line in report.lines:
                self.log(line)
            self.outcomes[key] = self._outcome(spec, report)
            self._hand_next(worker)

    def _outcome(self, spec: dict[str, Any], report: _Report) -> RunResult:
        if report.status == "failed":
            raise RuntimeError(f"{self.family.describe(spec)} failed in a worker process:\n{report.detail}")
        if report.status == "absent":
            if not self.family.absent_is_a_result:
                raise DatasetNotFoundError(report.detail)
            _remember_absent(spec, report.detail, self.absent, self.log)
            return self.family.result_type(spec, ABSENT, message=report.detail)
        entry = _cached_entry(self.cache, spec)
        if entry is None:
            raise RuntimeError(f"{self.family.describe(spec)}: the worker's cache entry is gone")
        return _from_entry(self.family, spec, entry)
