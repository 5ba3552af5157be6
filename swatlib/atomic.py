"""Atomic file writes: a file is either its old complete self or its new complete self.

Every artefact swatlib produces (figures, cache entries, checkpoints, downloads) goes through
:func:`atomic_path`: the caller writes to a temporary sibling, and only a write that finished
without an exception is moved into place with ``os.replace``. An interrupted run (Ctrl-C, a crash)
therefore never leaves a half-written file behind, and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` on success.

    Parameters
    ----------
    target
        The final file. Its directory is created if missing.

    Yields
    ------
    Path
        A fresh temporary file in the same directory (same filesystem, so the final
        ``os.replace`` is atomic). Write to it by name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
