"""Make a dataset available: ``ensure(name)``, behind ``python -m swatlib.data ensure NAME`` and
``make data``.

If the files are already in a data directory, say where and stop. Otherwise, for Fashion-MNIST
as root with ``apt-get`` on PATH, run ``apt-get update`` (a fresh Debian machine's package list
may be empty) and ``apt-get install -y dataset-fashion-mnist``; if that is impossible or fails,
download the official files with checksum verification (Fashion-MNIST, CIFAR-10). Datasets with
no trusted checksum (Higgs, Leukemia) are never downloaded: the error says where to get them.
Madelon always has its offline Madelon-like generator, so it never fails. Madelon-65536 is
generated (:mod:`swatlib.data.madelon65536`: the paper's 10,000 × 65,536, 2.6 GB) into the cache
directory if absent; ``make data`` does not ask for it, the notebook that needs it generates it on
first use. The WordNet corpus
(``wordnet``, :mod:`swatlib.data.wordnet`) comes from Debian's ``wordnet-base`` in the same way, or
from a user's copy; it is never downloaded.

The apt runner and the fetcher are parameters, so tests exercise every branch with neither
network nor apt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from swatlib.checks import check_choice
from swatlib.data import _files, cifar10, fashion_mnist, higgs, leukemia, madelon, madelon65536, wordnet
from swatlib.data.errors import CorruptDataError, DatasetNotFoundError

#: ``run(cmd, check=False, env=...)`` with :func:`subprocess.run`'s contract.
Runner = Callable[..., subprocess.CompletedProcess]

_MODULES: dict[str, ModuleType] = {
    "fashion-mnist": fashion_mnist,
    "madelon": madelon,
    "cifar10": cifar10,
    "higgs": higgs,
    "leukemia": leukemia,
    "madelon-65536": madelon65536,
}
#: Text corpora (not :data:`swatlib.data.DATASETS`: they are not labelled datasets), made present
#: from their Debian package or a user's copy, never downloaded.
CORPORA: dict[str, ModuleType] = {"wordnet": wordnet}
_DOWNLOADERS = {
    "fashion-mnist": fashion_mnist.download_fashion_mnist,
    "cifar10": cifar10.download_cifar10,
}


def apt_usable() -> bool:
    """True when running as root with ``apt-get`` on PATH."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_install(package: str, run: Runner, log: Callable[[str], None]) -> bool:
    """``apt-get update`` then ``apt-get install -y package``; True if both succeeded."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
        log(f"running: {' '.join(command)}")
        try:
            status = run(command, check=False, env=env).returncode
        except OSError as exc:
            status = exc
        if status != 0:
            log(f"`{' '.join(command)}` failed ({status})")
            return False
    return True


def ensure(
    name: str,
    *,
    use_apt: bool | None = None,
    run: Runner = subprocess.run,
    fetch: _files.Fetcher = _files.fetch_url,
    log: Callable[[str], None] = print,
) -> Path | None:
    """Make dataset ``name`` available and return its directory.

    Parameters
    ----------
    name
        One of ``fashion-mnist``, ``madelon``, ``cifar10``, ``higgs``, ``leukemia``,
        ``madelon-65536`` (the full 10,000 × 65,536 set, generated if absent), or a corpus of
        :data:`CORPORA` (``wordnet``).
    use_apt
        Try apt for Fashion-MNIST and the corpora; None means "if :func:`apt_usable`".
    run
        Runs the apt commands (default :func:`subprocess.run`).
    fetch
        Downloads one URL to a path (default :func:`swatlib.data._files.fetch_url`).
    log
        Receives the progress lines.

    Returns
    -------
    Path or None
        The directory holding the files; None for Madelon without the UCI files (the
        Madelon-like generator will be used).

    Raises
    ------
    ValueError
        For an unknown name.
    DatasetNotFoundError
        If the dataset could not be made available; the one-line message names the command to run.
    """
    if name in CORPORA:
        return _ensure_corpus(name, CORPORA[name], use_apt, run, log)
    check_choice(name, [*_MODULES, *CORPORA], "name")
    if name == madelon65536.DATASET:
        features, _ = madelon65536.ensure_madelon65536(log=log)
        log(f"{name}: {features}")
        return features.parent
    module = _MODULES[name]
    found = _files.find_dir(module.SUBDIR, module.FILES)
    if found is not None:
        log(f"{name}: found in {found}")
        return found
    if name == "madelon":
        log("madelon: UCI files not found; the Madelon-like (synthetic) generator will be used")
        return None
    if name == "fashion-mnist" and (apt_usable() if use_apt is None else use_apt):
        if _apt_install(fashion_mnist.APT_PACKAGE, run, log):
            found = fashion_mnist.find_fashion_mnist()
            if found is not None:
                log(f"{name}: installed in {found}")
                return found
        log(f"{name}: apt did not provide it; downloading instead")
    if name not in _DOWNLOADERS:
        return _files.require_dir(module.SUBDIR, module.FILES, module.NAME, module.NOT_FOUND_FIX)
    try:
        found = _DOWNLOADERS[name](fetch=fetch, log=log)
    except (OSError, CorruptDataError) as exc:
        raise DatasetNotFoundError(
            f"{module.NAME} could not be installed or downloaded ({exc}); {module.NOT_FOUND_FIX}"
        ) from None
    log(f"{name}: downloaded to {found}")
    return found


def _ensure_corpus(name: str, module: ModuleType, use_apt: bool | None, run: Runner,
                   log: Callable[[str], None]) -> Path:
    """Found, else ``apt-get install`` its Debian package as root, else a one-line error naming the fix."""
    found = module.find_wordnet()
    if found is not None:
        log(f"{name}: found in {found}")
        return found
    if (apt_usable() if use_apt is None else use_apt) and _apt_install(module.APT_PACKAGE, run, log):
        found = module.find_wordnet()
        if found is not None:
            log(f"{name}: installed in {found}")
            return found
    raise DatasetNotFoundError(f"{module.NAME} not found: {module.NOT_FOUND_FIX}")
