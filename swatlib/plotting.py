"""One figure style, one deterministic ``savefig``, one convention for values a paper reports.

Every notebook calls :func:`setup` once (after its parameters cell) and writes every figure with
:func:`savefig`, which

* writes ``<name>.pdf`` and ``<name>.png`` atomically (temp file + ``os.replace``), so an
  interrupted run never leaves a half-written figure;
* produces the same bytes for the same figure (no creation dates, no producer strings), so
  regenerated figures only show up in ``git diff`` when their content changed;
* stamps provenance on the figure: the profile and seeds in a small footer (a smaller run is a
  named profile, printed on the figure) and, in the PDF/PNG metadata, also the git commit. A
  parameter set on the command line (``python -m swatlib.reproduce -p 00_tour.epochs 40``) is
  printed after the profile, ``profile: quick + epochs=40``: the runner passes those values to
  the kernel in ``$SWATLIB_CLI_PARAMETERS`` (a JSON object), which :func:`setup` reads, so the
  notebooks need no extra parameter for it.

Paper values are never mixed up with ours: :func:`plot_reported` and :func:`reported_range` draw
them hollow / dashed / hatched and add "(reported)" to the label.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from swatlib.atomic import atomic_path  # noqa: E402
from swatlib.paths import PROJECT_ROOT, resolve  # noqa: E402

REPORTED_SUFFIX = " (reported)"
REPORTED_STYLE = dict(linestyle="--", marker="o", markerfacecolor="none", color="0.25")
# Set by swatlib.reproduce for each kernel it starts: that notebook's -p values, a JSON object.
CLI_PARAMETERS_ENV = "SWATLIB_CLI_PARAMETERS"


@dataclass(frozen=True)
class Provenance:
    """What produced a figure: the profile, the seeds, and the code's git commit.

    ``command_line`` holds the parameters set with ``python -m swatlib.reproduce -p`` on top of
    the profile, as ``(name, value as JSON)`` pairs; the footer prints them after the profile.
    """

    profile: str
    seeds: tuple[int, ...]
    commit: str
    command_line: tuple[tuple[str, str], ...] = ()

    @property
    def footer(self) -> str:
        seeds = ",".join(str(s) for s in self.seeds) if self.seeds else "none"
        extra = ", ".join(f"{name}={value}" for name, value in self.command_line)
        profile = f"{self.profile} + {extra}" if extra else self.profile
        return f"swatlib | profile: {profile} | seeds: {seeds}"

    @property
    def description(self) -> str:
        return f"{self.footer} | commit: {self.commit}"


_context: dict[str, object] = {}


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """Short hash of HEAD, ``+dirty`` if tracked code (outside ``figures/``) has changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
             "--", ".", ":!figures"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def command_line_parameters() -> tuple[tuple[str, str], ...]:
    """The parameters the runner was given with ``-p`` for this notebook (``$SWATLIB_CLI_PARAMETERS``).

    Returns
    -------
    tuple of (str, str)
        ``(name, value as JSON)`` pairs; empty outside the runner (JupyterLab, nbval).
    """
    text = os.environ.get(CLI_PARAMETERS_ENV, "")
    try:
        values = json.loads(text) if text else {}
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise ValueError(f"${CLI_PARAMETERS_ENV} must be a JSON object like {{\"epochs\": 40}}, got {text!r}; "
                         "unset it (python -m swatlib.reproduce sets it)")
    return tuple((name, json.dumps(value)) for name, value in values.items())


def use_style() -> None:
    """The house style: seaborn paper context, white grid, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "svg.hashsalt": "swatlib"})


def setup(*, figures_dir: str, profile: str, seeds: Sequence[int] = ()) -> Path:
    """Apply the style and remember where figures go and what produced them.

    Parameters
    ----------
    figures_dir
        Output directory; a relative path is taken from the project root.
    profile
        The profile name (``smoke``, ``quick``, ``paper``) printed on every figure, followed by
        the values set with ``python -m swatlib.reproduce -p`` (:func:`command_line_parameters`).
    seeds
        The random seeds of the runs the figures show.

    Returns
    -------
    Path
        The resolved figure directory.
    """
    use_style()
    directory = resolve(figures_dir)
    _context["directory"] = directory
    _context["provenance"] = Provenance(profile, tuple(int(s) for s in seeds), git_commit(),
                                        command_line_parameters())
    return directory


def _require_setup(name: str) -> tuple[Provenance, Path]:
    if "provenance" not in _context:
        raise RuntimeError("call swatlib.plotting.setup(figures_dir=..., profile=..., seeds=...) first")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    return _context["provenance"], _context["directory"]  # type: ignore[return-value]


def savefig(fig: plt.Figure, name: str, *, note: str | None = None) -> list[Path]:
    """Write ``fig`` as ``<name>.pdf`` and ``<name>.png`` with deterministic bytes.

    Parameters
    ----------
    fig
        The figure; it is closed afterwards.
    name
        File stem, conventionally prefixed with the notebook number (``00_tour_topk``).
    note
        Extra footer text, e.g. the dataset actually used ("Madelon-like (synthetic)").

    Returns
    -------
    list of Path
        The two files written.
    """
    prov, directory = _require_setup(name)
    footer = prov.footer + (f" | {note}" if note else "")
    # Just below the axes area; bbox_inches="tight" grows the saved image to include it.
    fig.text(0.995, 0.0, footer, ha="right", va="top", fontsize=6, color="0.45")
    metadata = {
        "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None,
                "Title": name, "Subject": prov.description},
        "png": {"Software": None, "Title": name, "Description": prov.description},
    }
    written = []
    for ext, meta in metadata.items():
        target = directory / f"{name}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, metadata=meta, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written


def save_table(table, name: str) -> Path:
    """Write a pandas table as ``<name>.csv`` next to the figures, atomically.

    The first line is a ``#`` comment with the provenance (profile, seeds, commit); read it
    back with ``pandas.read_csv(path, comment="#")``.
    """
    prov, directory = _require_setup(name)
    target = directory / f"{name}.csv"
    with atomic_path(target) as tmp:
        tmp.write_text(f"# {prov.description}\n" + table.to_csv())
    return target


def plot_reported(ax: plt.Axes, x, y, *, label: str, **kwargs) -> None:
    """Draw paper values: hollow markers, dashed line, label ending in "(reported)"."""
    style = {**REPORTED_STYLE, **kwargs}
    if np.size(x) == 1:
        style["linestyle"] = "none"
    ax.plot(x, y, label=label + REPORTED_SUFFIX, **style)


def reported_range(ax: plt.Axes, low: float, high: float, *, label: str, axis: str = "y", **kwargs) -> None:
    """Shade a range a paper reports (hatched, unfilled), labelled "(reported)"."""
    style = {"facecolor": "none", "edgecolor": "0.65", "hatch": "//", "linewidth": 0.0, "zorder": 0, **kwargs}
    span = ax.axhspan if axis == "y" else ax.axvspan
    span(low, high, label=label + REPORTED_SUFFIX, **style)
