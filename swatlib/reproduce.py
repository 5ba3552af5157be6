"""Regenerate every figure and table: run the notebooks with papermill under one profile.

Usage::

    python -m swatlib.reproduce [--profile smoke|quick|paper] [--only NOTEBOOK ...]
                                [-p NOTEBOOK.NAME VALUE ...] [--jobs N|auto]
                                [--list] [--force] [--prepare-only]

A *profile* (``notebooks/params/<profile>.yaml``) maps each notebook to the parameter values that
override its ``parameters`` cell. ``-p NOTEBOOK.NAME VALUE`` (repeatable, like papermill's ``-p``)
sets one more value on top of the profile's for this run: VALUE is read as YAML, so ``3`` is an
int, ``[0, 1, 2]`` a list and ``fashion-mnist`` a string; YAML reads ``1e-3`` as a string, so
write ``1.0e-3``. Before anything runs, every name and value, from the profile or from ``-p``, is
checked against the notebook's parameters cell (papermill itself only warns about a misspelt name
and runs anyway). The runner also injects two parameters every notebook has: ``profile`` and
``figures_dir`` (``figures/`` for quick and paper, ``build/<profile>/figures/`` for smoke, so CI
never touches the committed figures).

The runner talks to the kernels it starts through their environment, so that a notebook's
parameters cell stays literals only and a notebook run by hand behaves the same without it:

* ``SWATLIB_CLI_PARAMETERS``: the notebook's ``-p`` values as a JSON object (``{}`` without
  any). :func:`swatlib.plotting.setup` reads it and prints the values after the profile on every
  figure and table (``profile: quick + epochs=40``), so a figure made with a changed value is
  never mistaken for the profile's.
* ``SWATLIB_JOBS``: ``--jobs N`` (default 1; ``auto``: the CPUs this process may use), the worker
  processes a notebook may use for its training runs. Results do not depend on it.
* ``SWATLIB_FORCE_BEFORE``: set by ``--force`` (see :mod:`swatlib.cache`).

Executed notebooks go to ``build/executed/<profile>/``; a failed notebook's copy keeps its traceback
and the run exits non-zero. ``--prepare-only`` writes the parameterised, unexecuted copies to
``build/prepared/<profile>/`` instead (``make test`` runs those under nbval). A notebook is not
executed again when nothing it depends on changed (same notebook, parameters including ``-p``,
library source and pinned environment, outputs still the bytes it wrote: ``quick`` and ``paper``
share ``figures/``). ``--force`` re-executes every
notebook and recomputes cached training results.

Ctrl-C stops the run. jupyter_client starts every kernel in a session of its own, so the
terminal's interrupt never reaches it; the runner therefore passes it on: it sends SIGINT to the
kernel's process group (the kernel and every process it started, such as a multiprocessing pool),
so the running cell raises KeyboardInterrupt and its cleanup code runs. A kernel still running
:data:`INTERRUPT_GRACE_S` seconds later (or after a second Ctrl-C) is killed with its whole
process group. The notebook is marked ``interrupted``, no further notebook runs, no up-to-date
stamp is written (it re-runs next time) and the runner exits with status 130.

Bad input (unknown profile, notebook or parameter; a value of the wrong type; a bad ``--jobs``)
exits with status 2 and a one-line message listing the valid choices.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swatlib.atomic import atomic_write_bytes
from swatlib.paths import BUILD_DIR, NOTEBOOKS_DIR, PARAMS_DIR, PROJECT_ROOT

PROFILES = ("smoke", "quick", "paper")
DEFAULT_PROFILE = "quick"
RUNNER_PARAMETERS = ("profile", "figures_dir")
# Seconds one cell may run before the notebook counts as failed (None: no limit): a guard against a
# hung cell, not a time budget. Quick's longest cell (notebook 50's training grid: ≈ 18,000 toy-BERT
# steps when every variant stops at the lowest target, up to ≈ 26,000 when none does) takes
# about half an hour on a 2-core machine, an hour at most, hence two hours.
CELL_TIMEOUT = {"smoke": 300, "quick": 7200, "paper": None}
# Seconds an interrupted kernel gets to run its cleanup and shut down before its process group is
# killed (a notebook's pool gives its workers 5 s; a loaded 2-core machine needs the rest).
INTERRUPT_GRACE_S = 30.0
# Seconds between two looks at the Ctrl-C count while a kernel runs.
POLL_S = 0.1
INTERRUPTED = "interrupted"
# Environment of every kernel the runner starts (read by swatlib.plotting and the experiments).
CLI_PARAMETERS_ENV = "SWATLIB_CLI_PARAMETERS"
JOBS_ENV = "SWATLIB_JOBS"
FORCE_ENV = "SWATLIB_FORCE_BEFORE"
# A number in exponent notation, which YAML 1.1 reads as a string unless it has a "." and a sign.
_EXPONENT = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?)(\d+)")


class UsageError(Exception):
    """Bad input to the runner; the message is one line naming the valid choices."""


def notebooks() -> dict[str, Path]:
    """Every runnable notebook, by stem, in run order (``NN_name.ipynb``)."""
    return {p.stem: p for p in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))}


def figures_dir(profile: str) -> str:
    """Where a profile's figures go, relative to the project root."""
    return "figures" if profile in ("quick", "paper") else f"build/{profile}/figures"


def load_profile(profile: str) -> dict[str, dict[str, Any]]:
    """The per-notebook parameter values of ``profile``."""
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    path = PARAMS_DIR / f"{profile}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f"{path}: expected a mapping 'notebook: {{parameter: value}}'")
    return data


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The parameters cell of ``path`` as ``{name: default value}`` (literals only)."""
    import papermill

    params = papermill.inspect_notebook(str(path))
    out = {}
    for name, info in params.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError) as exc:
            raise UsageError(
                f"{path.name}: parameter {name!r} must be a literal (got {info['default']!r})"
            ) from exc
    return out


def _type_ok(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return False
        return not default or all(_type_ok(v, default[0]) for v in value)
    return isinstance(value, type(default))


def _float_hint(value: Any) -> str:
    """How to write ``value`` so that YAML reads a float, if it is a number YAML read as text."""
    match = _EXPONENT.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return ""
    mantissa, sign, exponent = match.groups()
    mantissa += "" if "." in mantissa else ".0"
    return f" (YAML reads {value} as text: write {mantissa}e{sign or '+'}{exponent})"


def validate(stem: str, path: Path, overrides: dict[str, Any], profile: str,
             command_line: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check parameter values against the notebook's parameters cell; return the full set.

    Parameters
    ----------
    stem, path
        The notebook.
    overrides
        The profile's values for it (``notebooks/params/<profile>.yaml``).
    profile
        The profile name.
    command_line
        Values given with ``-p``; they are checked the same way and win over ``overrides``.

    Returns
    -------
    dict
        ``overrides`` and ``command_line`` merged, plus the runner's ``profile`` and
        ``figures_dir``.

    Raises
    ------
    UsageError
        A runner parameter set by hand, an unknown name (the message lists the valid ones) or a
        value whose type differs from the default's.
    """
    defaults = notebook_parameters(path)
    missing = [p for p in RUNNER_PARAMETERS if p not in defaults]
    if missing:
        raise UsageError(f"{stem}: the parameters cell must define {', '.join(missing)}")
    command_line = command_line or {}
    for where, values in ((f"in {profile}.yaml", overrides), ("given with -p", command_line)):
        for name, value in values.items():
            if name in RUNNER_PARAMETERS:
                raise UsageError(f"{stem}: parameter {name!r} {where} is set by the runner; remove it")
            if name not in defaults:
                valid = ", ".join(n for n in defaults if n not in RUNNER_PARAMETERS)
                raise UsageError(f"{stem}: unknown parameter {name!r} {where}; valid parameters: {valid}")
            if not _type_ok(value, defaults[name]):
                raise UsageError(
                    f"{stem}: parameter {name!r} {where} must be {type(defaults[name]).__name__} "
                    f"like its default {defaults[name]!r}, got {value!r}{_float_hint(value)}"
                )
    return {**overrides, **command_line, "profile": profile, "figures_dir": figures_dir(profile)}


def command_line_parameters(pairs: list[list[str]], chosen: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Group the ``-p NOTEBOOK.NAME VALUE`` pairs by notebook, each VALUE read as YAML.

    A later pair for the same name wins. Names and types are checked later, by :func:`validate`.

    Raises
    ------
    UsageError
        A key without a dot, a notebook that does not exist or is not selected, or a VALUE that
        is not YAML.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, text in pairs:
        stem, _, name = key.rpartition(".")
        if not stem or not name:
            raise UsageError(f"-p {key}: name the notebook and the parameter, e.g. -p 00_tour.epochs 1")
        if stem not in chosen:
            available = notebooks()
            if stem in available:
                raise UsageError(f"-p {key}: notebook {stem} is not selected; add it to --only")
            raise UsageError(f"-p {key}: unknown notebook {stem!r}; valid notebooks: {', '.join(available)}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"-p {key}: {text!r} is not YAML; write e.g. 3, 0.5, 1.0e-3, [0, 1] or x") from exc
        out.setdefault(stem, {})[name] = value
    return {stem: dict(sorted(values.items())) for stem, values in out.items()}


def parse_jobs(text: str) -> int:
    """``--jobs``: a positive integer, or ``auto`` for the CPUs this process may run on."""
    if text == "auto":
        return len(os.sched_getaffinity(0))
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UsageError(f"--jobs must be a positive integer or 'auto', got {text!r}")
    return jobs


def describe(profile: str, command_line: dict[str, Any]) -> str:
    """``quick`` or ``quick + epochs=40, lr=0.1``: the profile and the ``-p`` values on top."""
    extra = ", ".join(f"{name}={json.dumps(value)}" for name, value in command_line.items())
    return f"{profile} + {extra}" if extra else profile


@dataclass
class Outcome:
    notebook: str
    status: str
    seconds: float
    figures: int


def _figure_stamps(directory: Path) -> dict[str, int]:
    """Modification times of the figures and tables in ``directory``."""
    if not directory.exists():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir() if p.suffix in (".pdf", ".png", ".csv")}


def _remove_stale_temporaries(directory: Path) -> None:
    """Drop temp files a killed kernel may have left mid-write (finished files are untouched)."""
    for tmp in directory.glob(".*.tmp") if directory.exists() else ():
        tmp.unlink(missing_ok=True)


def fingerprint(path: Path, parameters: dict[str, Any], command_line: dict[str, Any] | None = None) -> str:
    """SHA-256 of everything a notebook's outputs depend on: the notebook, its parameters (and which
    of them came from ``-p``: the figures print those), the library's source and the pinned
    environment. ``--jobs`` is not part of it: results do not depend on it."""
    digest = hashlib.sha256(path.read_bytes())
    inputs = {"parameters": parameters, "command_line": command_line or {}}
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    library = Path(__file__).resolve().parent
    for source in sorted(library.rglob("*.py")):
        digest.update(source.relative_to(library).as_posix().encode() + source.read_bytes())
    requirements = library.parent / "requirements.txt"
    if requirements.exists():
        digest.update(requirements.read_bytes())
    return digest.hexdigest()


def _digests(directory: Path, names: list[str]) -> dict[str, str | None]:
    """SHA-256 of each named file in ``directory`` (a missing file: None)."""
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            if (directory / name).is_file() else None for name in names}


def _up_to_date(stamp: Path, out_path: Path, fig_dir: Path, print_: str) -> bool:
    """True if the last successful run had the same fingerprint and its outputs are still the bytes it
    wrote: quick and paper share ``figures/``, and a checkout or the other profile's run replaces them."""
    try:
        done = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    files = done.get("files")
    return (done.get("fingerprint") == print_ and out_path.exists() and isinstance(files, dict)
            and _digests(fig_dir, sorted(files)) == files)


class Kernel:
    """The kernel of one notebook run, as the runner's main thread sees it.

    papermill starts the kernel in a worker thread, through :meth:`manager_class`, with the
    environment ``env``. jupyter_client starts it in a session of its own, so its process group
    holds the kernel and every process it started, and nothing else. The main thread, the only
    one Python delivers Ctrl-C to, signals that group with :meth:`signal_group`, exactly as
    jupyter_client's ``signal_kernel`` does for a local kernel.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._lock = threading.Lock()
        self._pgid: int | None = None
        self._stopping = False

    def manager_class(self) -> type:
        """An ``AsyncKernelManager`` that starts the kernel with :attr:`env` and reports it here."""
        from jupyter_client import AsyncKernelManager

        kernel = self

        class RunnerKernelManager(AsyncKernelManager):
            async def start_kernel(self, **kw: Any) -> None:
                await super().start_kernel(**{**kw, "env": kernel.env})
                kernel._started(self.provisioner.pgid)

        return RunnerKernelManager

    def _started(self, pgid: int) -> None:
        """Record the new kernel's process group; kill it at once if the run was interrupted."""
        with self._lock:
            self._pgid = pgid
            if self._stopping:
                self._send(signal.SIGKILL)

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the kernel's process group; a kernel started later is killed."""
        with self._lock:
            self._stopping = True
            if self._pgid is not None:
                self._send(signum)

    def _send(self, signum: int) -> None:
        try:
            os.killpg(self._pgid, signum)
        except ProcessLookupError:
            pass  # the group has already gone


class CtrlC:
    """While a kernel runs, count Ctrl-C presses (SIGINT) instead of raising KeyboardInterrupt.

    The main thread then decides what each press does (:func:`_wait`), and no KeyboardInterrupt
    can leave it half-way between starting, interrupting and killing a kernel. Use it from the
    main thread, the only one that may set a signal handler.
    """

    def __init__(self) -> None:
        self.presses = 0

    def __enter__(self) -> CtrlC:
        self._previous = signal.getsignal(signal.SIGINT)
        if self._previous is not signal.SIG_IGN:  # a background job ignores Ctrl-C: so does the runner
            signal.signal(signal.SIGINT, self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _count(self, signum: int, frame: object) -> None:
        self.presses += 1


def _wait(worker: threading.Thread, ctrl_c: CtrlC, presses: int, seconds: float | None = None) -> None:
    """Wait until ``worker`` ends, Ctrl-C has been pressed ``presses`` times or ``seconds`` pass."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while worker.is_alive() and ctrl_c.presses < presses:
        if deadline is not None and time.monotonic() >= deadline:
            return
        worker.join(POLL_S)


def _stop(kernel: Kernel, worker: threading.Thread, ctrl_c: CtrlC) -> None:
    """Interrupt the kernel, then kill what is left of its process group.

    SIGINT to the group raises KeyboardInterrupt in the running cell and in every worker
    process the kernel started, so cleanup code runs (a pool's ``with`` block terminates its
    workers) and papermill records the traceback and shuts the kernel down. Whatever is still in
    the group after that, after :data:`INTERRUPT_GRACE_S` seconds (a kernel between cells or
    ignoring SIGINT) or after a second Ctrl-C, is killed with SIGKILL, so no kernel or worker
    outlives the runner.
    """
    kernel.signal_group(signal.SIGINT)
    _wait(worker, ctrl_c, presses=2, seconds=INTERRUPT_GRACE_S)
    kernel.signal_group(signal.SIGKILL)
    worker.join(INTERRUPT_GRACE_S)  # papermill notices the dead kernel within a second


def _execute(path: Path, out_path: Path, parameters: dict[str, Any], profile: str, kernel: Kernel) -> str:
    """Run one notebook with papermill; return ``ok`` or the reason it failed."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        papermill.execute_notebook(
            str(path), str(out_path), parameters=parameters, kernel_name="python3",
            kernel_manager_class=kernel.manager_class(), cwd=str(NOTEBOOKS_DIR), progress_bar=False,
            stdout_file=sys.stdout, stderr_file=sys.stderr, execution_timeout=CELL_TIMEOUT[profile],
        )
    except papermill.PapermillExecutionError as exc:
        return f"failed: {exc.ename}: {exc.evalue}"[:120]
    except CellTimeoutError:
        return f"failed: a cell ran past {CELL_TIMEOUT[profile]} s"
    except DeadKernelError:
        return "failed: the kernel died"
    return "ok"


def run_notebook(stem: str, path: Path, parameters: dict[str, Any], profile: str, *,
                 command_line: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 force: bool = False) -> Outcome:
    """Execute one notebook with papermill; failures and Ctrl-C are caught and reported, not raised.

    A notebook whose :func:`fingerprint` equals that of its last successful run, and whose
    executed copy still exists and whose output files are still the bytes that run wrote, is not
    executed again (unless ``force``).
    papermill runs in a worker thread so that the main thread can pass Ctrl-C on to the kernel
    (:class:`CtrlC`, :func:`_stop`); the outcome is then ``interrupted`` and no up-to-date stamp is
    written. Call it from the main thread.

    Parameters
    ----------
    stem, path, parameters, profile
        The notebook and its validated parameters (:func:`validate`).
    command_line
        The subset of ``parameters`` given with ``-p``: printed on the figures, part of the
        fingerprint.
    env
        Extra environment variables for the kernel (``SWATLIB_JOBS``, ``SWATLIB_FORCE_BEFORE``).
    force
        Execute even if up to date.
    """
    command_line = command_line or {}
    out_path = BUILD_DIR / "executed" / profile / path.name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = PROJECT_ROOT / parameters["figures_dir"]
    stamp = out_path.with_suffix(".done.json")
    current = fingerprint(path, parameters, command_line)
    if not force and _up_to_date(stamp, out_path, fig_dir, current):
        return Outcome(stem, "unchanged, not re-run", 0.0, 0)
    stamp.unlink(missing_ok=True)
    before = _figure_stamps(fig_dir)
    kernel = Kernel({**os.environ, **(env or {}), CLI_PARAMETERS_ENV: json.dumps(command_line)})
    result: Future[str] = Future()

    def work() -> None:
        try:
            result.set_result(_execute(path, out_path, parameters, profile, kernel))
        except BaseException as exc:  # re-raised by result.result() in the main thread
            result.set_exception(exc)

    worker = threading.Thread(target=work, name=f"papermill {stem}", daemon=True)
    start = time.monotonic()
    try:
        with CtrlC() as ctrl_c:
            worker.start()
            _wait(worker, ctrl_c, presses=1)
            if ctrl_c.presses:
                _stop(kernel, worker, ctrl_c)
        status = INTERRUPTED if ctrl_c.presses else result.result()
    finally:
        _remove_stale_temporaries(fig_dir)
    after = _figure_stamps(fig_dir)
    written = sorted(n for n, t in after.items() if before.get(n) != t)
    if status == "ok":
        atomic_write_bytes(stamp, json.dumps({"fingerprint": current, "files": _digests(fig_dir, written)}).encode())
    elif out_path.exists():
        kept = "up to the interrupt" if status == INTERRUPTED else "with the traceback"
        print(f"    executed copy {kept}: {out_path.relative_to(PROJECT_ROOT)}", flush=True)
    figures = {Path(n).stem for n in written if not n.endswith(".csv")}
    return Outcome(stem, status, time.monotonic() - start, len(figures))


def prepare_notebook(path: Path, parameters: dict[str, Any], profile: str) -> Path:
    """Write the parameterised, unexecuted copy of ``path`` (for nbval)."""
    import papermill

    out_path = BUILD_DIR / "prepared" / profile / path.name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(path), str(out_path), parameters=parameters, kernel_name="python3",
        prepare_only=True, progress_bar=False,
    )
    return out_path


def select(only: list[str] | None) -> dict[str, Path]:
    available = notebooks()
    if not only:
        return available
    chosen = {}
    for name in only:
        stem = Path(name).stem
        if stem not in available:
            raise UsageError(f"unknown notebook {name!r}; valid notebooks: {', '.join(available)}")
        chosen[stem] = available[stem]
    return chosen


def summary_table(outcomes: list[Outcome]) -> str:
    width = max([len("notebook")] + [len(o.notebook) for o in outcomes])
    lines = [f"{'notebook':<{width}}  {'seconds':>8}  {'figures':>7}  status"]
    lines += [f"{o.notebook:<{width}}  {o.seconds:8.1f}  {o.figures:7d}  {o.status}" for o in outcomes]
    return "\n".join(lines)


HELP_EPILOG = """\
-p NOTEBOOK.NAME VALUE sets one parameter on top of the profile (repeatable); VALUE is YAML:
  -p 00_tour.epochs 40   -p 11_allrelu_slope.alphas "[0.3, 0.6]"   -p 00_tour.lr 1.0e-3
  (YAML reads 1e-3 as a string: write 1.0e-3). It is checked like a profile value, printed on
  every figure ("profile: quick + epochs=40") and re-executes the notebook when it changes.
--jobs N hands N worker processes to every notebook ($SWATLIB_JOBS in the kernel's
  environment); "auto" uses every CPU this process may run on. Results do not depend on it.
Ctrl-C interrupts the running notebook (its kernel and the processes it started), marks it
  "interrupted", runs no further notebook and exits with status 130; the notebook re-runs
  next time. Bad input exits with status 2.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m swatlib.reproduce", description=__doc__.split("\n")[0], epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)} (default: quick)")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (stems)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NOTEBOOK.NAME", "VALUE"),
                        help="set one parameter on top of the profile; VALUE is YAML (repeatable)")
    parser.add_argument("--jobs", default="1", metavar="N",
                        help="worker processes per notebook, a positive integer or 'auto' (default: 1)")
    parser.add_argument("--list", action="store_true", help="list notebooks and their parameters, run nothing")
    parser.add_argument("--force", action="store_true", help="recompute cached training results")
    parser.add_argument("--prepare-only", action="store_true", help="write parameterised copies, execute nothing")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # while checking or preparing notebooks: no kernel is running
        print("swatlib.reproduce: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    """Check everything, then prepare or run the notebooks; the exit status of :func:`main`."""
    try:
        chosen = select(args.only)
        profile = load_profile(args.profile)
        if args.list:
            for stem, path in notebooks().items():
                params = ", ".join(f"{k}={v!r}" for k, v in notebook_parameters(path).items())
                print(f"{stem}: {params}")
            return 0
        jobs = parse_jobs(args.jobs)
        command_line = command_line_parameters(args.parameter, chosen)
        if command_line and args.prepare_only:
            raise UsageError("-p does not work with --prepare-only (nbval would not print it on the "
                             f"figures); put the value in notebooks/params/{args.profile}.yaml")
        plan = {}
        for stem, path in chosen.items():
            if stem not in profile:
                raise UsageError(f"{stem} has no entry in notebooks/params/{args.profile}.yaml; add '{stem}: {{}}'")
            cli = command_line.get(stem, {})
            plan[stem] = (path, validate(stem, path, profile[stem], args.profile, cli), cli)
    except UsageError as exc:
        print(f"swatlib.reproduce: {exc}", file=sys.stderr)
        return 2
    if args.prepare_only:
        for stem, (path, params, _) in plan.items():
            out = prepare_notebook(path, params, args.profile)
            print(f"prepared {stem} -> {out.relative_to(PROJECT_ROOT)}")
        return 0
    env = {JOBS_ENV: str(jobs)}
    if args.force:
        env[FORCE_ENV] = repr(time.time())
    outcomes: list[Outcome] = []
    for i, (stem, (path, params, cli)) in enumerate(plan.items(), 1):
        if outcomes and outcomes[-1].status == INTERRUPTED:
            outcomes.append(Outcome(stem, "not run", 0.0, 0))
            continue
        print(f"[{i}/{len(plan)}] {stem} (profile {describe(args.profile, cli)})", flush=True)
        try:
            outcome = run_notebook(stem, path, params, args.profile, command_line=cli, env=env, force=args.force)
        except KeyboardInterrupt:  # outside CtrlC: before the kernel started or after it ended
            outcome = Outcome(stem, INTERRUPTED, 0.0, 0)
        print(f"[{i}/{len(plan)}] {stem}: {outcome.status} in {outcome.seconds:.1f} s, "
              f"{outcome.figures} figures written", flush=True)
        outcomes.append(outcome)
    print("\n" + summary_table(outcomes))
    if any(o.status == INTERRUPTED for o in outcomes):
        return 130
    return 1 if any(o.status.startswith("failed") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
