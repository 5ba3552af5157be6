"""Content-addressed, atomic store for the results of training runs.

A run is described by a plain-dict *config* (dataset, model, method, densities, schedule, seed,
epochs, profile, ...). Its key is the SHA-256 of the canonical JSON of that config together with a
code version string, so changing any hyper-parameter, or bumping the code version after a change
that alters results, gives a new entry. Entries are readable JSON files under ``build/cache/``
(``$SWATLIB_CACHE`` overrides), with optional tensors in a ``.pt`` file beside them whose SHA-256 is
recorded in the JSON.

Guarantees
----------
* Atomic: every file is written to a temporary sibling and moved into place (``os.replace``), so an
  interrupted run leaves either no entry or a complete one.
* One computation per config: :meth:`ResultsCache.get_or_compute` holds an exclusive file lock on the
  key while computing, so two notebooks (or processes) asking for the same config train it once.
* Corruption is detected (unparsable JSON, wrong key, missing fields, tensor checksum mismatch),
  reported in one line, and the entry is recomputed.
* ``force``: entries written before the moment given by ``$SWATLIB_FORCE_BEFORE`` (a UNIX time,
  set by ``python -m swatlib.reproduce --force``) are recomputed once; entries written during the
  forced run are reused, so even a forced run never trains the same config twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swatlib import __version__
from swatlib.atomic import atomic_write_bytes
from swatlib.paths import BUILD_DIR

FORMAT = 1


class CorruptEntryError(ValueError):
    """A cache entry exists but cannot be trusted."""


def default_root() -> Path:
    """``$SWATLIB_CACHE`` if set, else ``build/cache`` in the project root."""
    env = os.environ.get("SWATLIB_CACHE")
    if env:
        return Path(env).expanduser()
    return BUILD_DIR / "cache"


def canonical_json(config: dict[str, Any]) -> str:
    """The one JSON spelling of ``config``: sorted keys, no whitespace, tuples as lists.

    Raises ``TypeError`` for values JSON cannot represent exactly (tensors, objects), so that
    a config can never hash by its ``repr``.
    """
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_key(config: dict[str, Any], code_version: str = __version__) -> str:
    """SHA-256 hex digest identifying ``config`` run by code version ``code_version``."""
    payload = canonical_json({"config": config, "code_version": code_version})
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A cached result: the JSON-able ``result`` and optional ``tensors`` (a dict)."""

    key: str
    config: dict[str, Any]
    result: Any
    tensors: dict[str, Any] | None
    created: float


class ResultsCache:
    """A directory of cached run results.

    Parameters
    ----------
    root
        Directory of the store; default :func:`default_root`.
    code_version
        Mixed into every key. Bump ``swatlib.__version__`` when a change alters results.
    log
        Where the one-line notices (corrupt entry, forced recompute) go.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        code_version: str = __version__,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.code_version = code_version
        self._log = log or (lambda msg: print(msg, file=sys.stderr))

    # -- paths -----------------------------------------------------------------------------
    def key(self, config: dict[str, Any]) -> str:
        return config_key(config, self.code_version)

    def _json_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def _tensor_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    # -- reading ---------------------------------------------------------------------------
    def load(self, config: dict[str, Any]) -> Entry | None:
        """The entry for ``config``, ``None`` if absent; raises :class:`CorruptEntryError`."""
        key = self.key(config)
        path = self._json_path(key)
        if not path.exists():
            return None
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != FORMAT or doc.get("key") != key or "result" not in doc:
                raise CorruptEntryError("missing or mismatching fields")
            tensors = None
            if doc.get("tensors_sha256"):
                blob = self._tensor_path(key).read_bytes()
                if hashlib.sha256(blob).hexdigest() != doc["tensors_sha256"]:
                    raise CorruptEntryError("tensor file checksum mismatch")
                import torch

                tensors = torch.load(io.BytesIO(blob), weights_only=True)
        except CorruptEntryError:
            raise
        except (OSError, ValueError, KeyError, EOFError, RuntimeError) as exc:
            raise CorruptEntryError(f"{type(exc).__name__}: {exc}") from exc
        return Entry(key, doc["config"], doc["result"], tensors, float(doc["created"]))

    # -- writing ---------------------------------------------------------------------------
    def store(self, config: dict[str, Any], result: Any, tensors: dict[str, Any] | None = None) -> Entry:
        """Write an entry atomically (tensor file first, JSON last, so the JSON commits it)."""
        key = self.key(config)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "key": key,
            "code_version": self.code_version,
            "created": time.time(),
            "config": config,
            "result": result,
            "tensors_sha256": None,
        }
        if tensors is not None:
            import torch

            buf = io.BytesIO()
            torch.save(tensors, buf)
            blob = buf.getvalue()
            doc["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
            atomic_write_bytes(self._tensor_path(key), blob)
        text = json.dumps(doc, sort_keys=True, indent=1, allow_nan=True)
        atomic_write_bytes(self._json_path(key), text.encode())
        # Hand back what a later cache hit would return (JSON round trip: tuples become lists).
        return Entry(key, config, json.loads(text)["result"], tensors, doc["created"])

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock_path = self.root / key[:2] / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def get_or_compute(
        self,
        config: dict[str, Any],
        compute: Callable[[], Any],
        *,
        force: bool = False,
    ) -> Entry:
        """Return the cached entry for ``config``, computing and storing it if needed.

        Parameters
        ----------
        config
            JSON-able description of the run (see :func:`canonical_json`).
        compute
            Called with no argument on a miss. Returns either a JSON-able result or a
            ``(result, tensors)`` tuple where ``tensors`` is a dict of tensors.
        force
            Recompute even if an entry exists. Without it, ``$SWATLIB_FORCE_BEFORE`` still
            forces entries older than that time.
        """
        key = self.key(config)
        canonical_json(config)  # fail early on a config that cannot be hashed faithfully
        with self._locked(key):
            if not force:
                entry = self._usable_entry(config, key)
                if entry is not None:
                    return entry
            out = compute()
            result, tensors = out if isinstance(out, tuple) else (out, None)
            return self.store(config, result, tensors)

    def _usable_entry(self, config: dict[str, Any], key: str) -> Entry | None:
        try:
            entry = self.load(config)
        except CorruptEntryError as exc:
            self._log(f"swatlib.cache: entry {key[:12]} is corrupt ({exc}); recomputing it")
            return None
        if entry is None:
            return None
        force_before = os.environ.get("SWATLIB_FORCE_BEFORE")
        if force_before and entry.created < float(force_before):
            self._log(f"swatlib.cache: --force given; recomputing entry {key[:12]}")
            return None
        return entry


def cached(config: dict[str, Any], compute: Callable[[], Any], *, force: bool = False) -> Entry:
    """Shorthand for ``ResultsCache().get_or_compute(config, compute, force=force)``."""
    return ResultsCache().get_or_compute(config, compute, force=force)
