"""Regenerate every figure and table: run the notebooks with papermill under one profile.

Usage::

    python -m swatlib.reproduce [--profile smoke|quick|paper] [--only NOTEBOOK ...]
                                [--list] [--force] [--prepare-only]

A *profile* (``notebooks/params/<profile>.yaml``) maps each notebook to the parameter values that
override its ``parameters`` cell. Before anything runs, every name and value is checked against the
notebook's parameters cell (papermill itself only warns about a misspelt name and runs anyway).
The runner also injects two parameters every notebook has: ``profile`` and ``figures_dir``
(``figures/`` for quick and paper, ``build/<profile>/figures/`` for smoke, so CI never touches the
committed figures).

Executed notebooks go to ``build/executed/<profile>/``; a failed notebook's copy keeps its traceback
and the run exits non-zero. ``--prepare-only`` writes the parameterised, unexecuted copies to
``build/prepared/<profile>/`` instead (``make test`` runs those under nbval). A notebook is not
executed again when nothing it depends on changed (same notebook, parameters, library source and
pinned environment, outputs still present). ``--force`` re-executes every notebook and recomputes
cached training results (see :mod:`swatlib.cache`).

Bad input (unknown profile, notebook or parameter; a value of the wrong type) exits with status 2
and a one-line message listing the valid choices.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swatlib.atomic import atomic_write_bytes
from swatlib.paths import BUILD_DIR, NOTEBOOKS_DIR, PARAMS_DIR, PROJECT_ROOT

PROFILES = ("smoke", "quick", "paper")
DEFAULT_PROFILE = "quick"
RUNNER_PARAMETERS = ("profile", "figures_dir")
# Seconds one cell may run before the notebook counts as failed (None: no limit).
CELL_TIMEOUT = {"smoke": 300, "quick": 3600, "paper": None}


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


def validate(stem: str, path: Path, overrides: dict[str, Any], profile: str) -> dict[str, Any]:
    """Check ``overrides`` against the notebook's parameters; return the full parameter set."""
    defaults = notebook_parameters(path)
    missing = [p for p in RUNNER_PARAMETERS if p not in defaults]
    if missing:
        raise UsageError(f"{stem}: the parameters cell must define {', '.join(missing)}")
    for name, value in overrides.items():
        if name in RUNNER_PARAMETERS:
            raise UsageError(f"{stem}: parameter {name!r} is set by the runner, remove it from {profile}.yaml")
        if name not in defaults:
            valid = ", ".join(n for n in defaults if n not in RUNNER_PARAMETERS)
            raise UsageError(f"{stem}: unknown parameter {name!r} in {profile}.yaml; valid parameters: {valid}")
        if not _type_ok(value, defaults[name]):
            raise UsageError(
                f"{stem}: parameter {name!r} in {profile}.yaml must be "
                f"{type(defaults[name]).__name__} like its default {defaults[name]!r}, got {value!r}"
            )
    return {**overrides, "profile": profile, "figures_dir": figures_dir(profile)}


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


def fingerprint(path: Path, parameters: dict[str, Any]) -> str:
    """SHA-256 of everything a notebook's outputs depend on: the notebook, its parameters, the
    library's source and the pinned environment."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    library = Path(__file__).resolve().parent
    for source in sorted(library.rglob("*.py")):
        digest.update(source.relative_to(library).as_posix().encode() + source.read_bytes())
    requirements = library.parent / "requirements.txt"
    if requirements.exists():
        digest.update(requirements.read_bytes())
    return digest.hexdigest()


def _up_to_date(stamp: Path, out_path: Path, fig_dir: Path, print_: str) -> bool:
    """True if the last successful run had the same fingerprint and its outputs are all there."""
    try:
        done = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return (done.get("fingerprint") == print_ and out_path.exists()
            and all((fig_dir / name).exists() for name in done.get("files", [])))


def run_notebook(stem: str, path: Path, parameters: dict[str, Any], profile: str,
                 *, force: bool = False) -> Outcome:
    """Execute one notebook with papermill; failures are caught and reported, not raised.

    A notebook whose :func:`fingerprint` equals that of its last successful run, and whose
    executed copy and output files all still exist, is not executed again (unless ``force``).
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    out_path = BUILD_DIR / "executed" / profile / path.name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = PROJECT_ROOT / parameters["figures_dir"]
    stamp = out_path.with_suffix(".done.json")
    current = fingerprint(path, parameters)
    if not force and _up_to_date(stamp, out_path, fig_dir, current):
        return Outcome(stem, "unchanged, not re-run", 0.0, 0)
    stamp.unlink(missing_ok=True)
    before = _figure_stamps(fig_dir)
    start = time.monotonic()
    status = "ok"
    try:
        papermill.execute_notebook(
            str(path), str(out_path), parameters=parameters, kernel_name="python3",
            cwd=str(NOTEBOOKS_DIR), progress_bar=False, stdout_file=sys.stdout,
            stderr_file=sys.stderr, execution_timeout=CELL_TIMEOUT[profile],
        )
    except papermill.PapermillExecutionError as exc:
        status = f"failed: {exc.ename}: {exc.evalue}"[:120]
    except CellTimeoutError:
        status = f"failed: a cell ran past {CELL_TIMEOUT[profile]} s"
    except DeadKernelError:
        status = "failed: the kernel died"
    finally:
        _remove_stale_temporaries(fig_dir)
    after = _figure_stamps(fig_dir)
    written = sorted(n for n, t in after.items() if before.get(n) != t)
    if status == "ok":
        atomic_write_bytes(stamp, json.dumps({"fingerprint": current, "files": written}).encode())
    else:
        print(f"    executed copy with the traceback: {out_path.relative_to(PROJECT_ROOT)}", flush=True)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swatlib.reproduce", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)} (default: quick)")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (stems)")
    parser.add_argument("--list", action="store_true", help="list notebooks and their parameters, run nothing")
    parser.add_argument("--force", action="store_true", help="recompute cached training results")
    parser.add_argument("--prepare-only", action="store_true", help="write parameterised copies, execute nothing")
    args = parser.parse_args(argv)
    try:
        chosen = select(args.only)
        profile = load_profile(args.profile)
        if args.list:
            for stem, path in notebooks().items():
                params = ", ".join(f"{k}={v!r}" for k, v in notebook_parameters(path).items())
                print(f"{stem}: {params}")
            return 0
        plan = {}
        for stem, path in chosen.items():
            if stem not in profile:
                raise UsageError(f"{stem} has no entry in notebooks/params/{args.profile}.yaml; add '{stem}: {{}}'")
            plan[stem] = (path, validate(stem, path, profile[stem], args.profile))
    except UsageError as exc:
        print(f"swatlib.reproduce: {exc}", file=sys.stderr)
        return 2
    if args.prepare_only:
        for stem, (path, params) in plan.items():
            out = prepare_notebook(path, params, args.profile)
            print(f"prepared {stem} -> {out.relative_to(PROJECT_ROOT)}")
        return 0
    if args.force:
        os.environ["SWATLIB_FORCE_BEFORE"] = repr(time.time())
    outcomes = []
    for i, (stem, (path, params)) in enumerate(plan.items(), 1):
        print(f"[{i}/{len(plan)}] {stem} (profile {args.profile})", flush=True)
        outcome = run_notebook(stem, path, params, args.profile, force=args.force)
        print(f"[{i}/{len(plan)}] {stem}: {outcome.status} in {outcome.seconds:.1f} s, "
              f"{outcome.figures} figures written", flush=True)
        outcomes.append(outcome)
    print("\n" + summary_table(outcomes))
    return 1 if any(o.status.startswith("failed") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
