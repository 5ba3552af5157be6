"""Where things live, computed from the package location and never from the working directory.

papermill executes a notebook in the caller's directory and nbval in the notebook's, so any
relative path in a notebook parameter is resolved against the project root instead.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
BUILD_DIR = PROJECT_ROOT / "build"


def resolve(path: str | os.PathLike) -> Path:
    """``path`` itself if absolute, else ``path`` relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p
