"""Where data files are looked for, and how they are downloaded and verified.

Search order, first match wins (:func:`data_dirs`):

1. every directory in ``$SWATLIB_DATA`` (``os.pathsep``-separated; a relative entry is taken
   relative to the project root, never to the working directory, because papermill and nbval run
   notebooks from different directories);
2. ``~/.cache/swatlib`` (:func:`cache_dir`), where downloads go;
3. ``/usr/share/datasets`` (:data:`SYSTEM_DATA_DIR`), where Debian's ``dataset-*`` packages install.

A dataset lives in a sub-directory of one of these roots (e.g. ``fashion-mnist/``). Downloads are
staged in a temporary directory, verified, and only then moved into place with ``os.replace``, so
a failed or mismatching download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from swatlib.data.errors import CorruptDataError, DatasetNotFoundError, DownloadError
from swatlib.paths import resolve

#: Where Debian's ``dataset-*`` packages install (read at call time, so tests can monkeypatch it).
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

#: ``fetch(url, path)`` writes the body of ``url`` to the file ``path``.
Fetcher = Callable[[str, Path], None]


def cache_dir() -> Path:
    """The per-user directory downloads go to: ``~/.cache/swatlib``."""
    return Path.home() / ".cache" / "swatlib"


def data_dirs() -> list[Path]:
    """The root directories searched for data, in order (see the module docstring)."""
    env = os.environ.get("SWATLIB_DATA", "")
    user = [resolve(entry) for entry in env.split(os.pathsep) if entry]
    return [*user, cache_dir(), SYSTEM_DATA_DIR]


def find_dir(subdir: str, files: Iterable[str]) -> Path | None:
    """The first ``<root>/<subdir>`` holding every one of ``files``, or None."""
    files = tuple(files)
    for root in data_dirs():
        candidate = root / subdir
        if all((candidate / name).is_file() for name in files):
            return candidate
    return None


def require_dir(subdir: str, files: Iterable[str], label: str, fix: str) -> Path:
    """Like :func:`find_dir`, but raise :class:`DatasetNotFoundError` naming ``fix`` if absent."""
    files = tuple(files)
    found = find_dir(subdir, files)
    if found is None:
        searched = ", ".join(str(root / subdir) for root in data_dirs())
        raise DatasetNotFoundError(
            f"{label} not found (looked for {', '.join(files)} in {searched}): {fix}"
        )
    return found


def gunzip(path: Path, fix: str) -> bytes:
    """The decompressed content of ``path``; a damaged gzip file raises CorruptDataError."""
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise CorruptDataError(f"{path} is not a complete gzip file ({exc}): {fix}") from None


def check_digest(data: bytes, algorithm: str, expected: str, what: Path, fix: str) -> None:
    """Raise CorruptDataError unless ``hashlib.new(algorithm, data)`` equals ``expected``."""
    actual = hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
    if actual != expected:
        raise CorruptDataError(
            f"{what} fails its {algorithm} check (got {actual}, expected {expected}): {fix}"
        )


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of the file at ``path``, read in chunks."""
    new = functools.partial(hashlib.new, algorithm, usedforsecurity=False)
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, new).hexdigest()


def fetch_url(url: str, path: Path) -> None:
    """Default :data:`Fetcher`: stream ``url`` into ``path`` with urllib."""
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def fetch_into(fetch: Fetcher, url: str, path: Path) -> None:
    """Run ``fetch(url, path)``; any network or file error becomes a one-line DownloadError."""
    try:
        fetch(url, path)
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"downloading {url} failed: {exc}") from None


@contextlib.contextmanager
def staging_dir() -> Iterator[Path]:
    """A temporary directory inside :func:`cache_dir`, removed with its content on exit.

    Staging on the same filesystem as the destination makes the final ``os.replace`` atomic.
    """
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=root) as tmp:
        yield Path(tmp)


def install_files(staged: Path, dest: Path, names: Iterable[str]) -> None:
    """Move the verified files ``names`` from ``staged`` into ``dest`` (created if missing)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(staged / name, dest / name)
