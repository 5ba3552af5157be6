"""CIFAR-10 (Krizhevsky 2009) from the "python version" batches: 50,000 train / 10,000 test.

The files are looked for in ``cifar-10-batches-py/`` in a data directory (the folder the official
``cifar-10-python.tar.gz`` unpacks to, so ``tar -xzf cifar-10-python.tar.gz -C $SWATLIB_DATA``
installs it): ``data_batch_1`` … ``data_batch_5`` and ``test_batch``, each a pickled dict with
``b"data"`` (uint8, N×3072, the red, green then blue 32×32 planes) and ``b"labels"`` (N ints).

The batches are pickles, and unpickling can run arbitrary code, so they are read with an
unpickler that only accepts numpy arrays, dtypes, lists, dicts and bytes.
"""

from __future__ import annotations

import pickle
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from swatlib.data import _files
from swatlib.data.dataset import Dataset, Subset, make_dataset
from swatlib.data.errors import CorruptDataError

NAME = "CIFAR-10"
SUBDIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
FILES = TRAIN_FILES + TEST_FILES
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: The md5 of cifar-10-python.tar.gz as published by the dataset's authors on the CIFAR page.
MD5 = "c58f30108f718f92721af3b95e74349a"
ENSURE_COMMAND = "python -m swatlib.data ensure cifar10"
NOT_FOUND_FIX = (
    f"run `{ENSURE_COMMAND}` (downloads {URL}), or unpack that archive into a directory "
    "and set SWATLIB_DATA to it"
)
N_CLASSES = 10
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)

# Globals a CIFAR batch may reference (numpy 1.x pickles say numpy.core, numpy 2.x numpy._core).
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> object:
        if module.startswith("numpy.core."):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch: uint8 images ``(N, 3072)`` and int64 labels ``(N,)``.

    Raises
    ------
    CorruptDataError
        If the file is not a CIFAR-10 python batch.
    """
    fix = f"replace {path.parent} with a fresh copy (`{ENSURE_COMMAND}`)"
    try:
        with open(path, "rb") as stream:
            batch = _ArrayUnpickler(stream, encoding="bytes").load()
        x = np.asarray(batch[b"data"])
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise CorruptDataError(f"{path} is not a CIFAR-10 python batch ({exc!r}): {fix}") from None
    if x.dtype != np.uint8 or x.shape != (len(y), int(np.prod(IMAGE_SHAPE))):
        raise CorruptDataError(
            f"{path}: expected uint8 data of shape ({len(y)}, 3072), got {x.dtype} {x.shape}: {fix}"
        )
    return x, y


def _read_batches(directory: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_batch(directory / name) for name in names]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def find_cifar10() -> Path | None:
    """The ``cifar-10-batches-py`` directory holding all six batches, or None."""
    return _files.find_dir(SUBDIR, FILES)


def download_cifar10(
    *, fetch: _files.Fetcher = _files.fetch_url, log: Callable[[str], None] = print
) -> Path:
    """Download and unpack the official archive into ``~/.cache/swatlib/cifar-10-batches-py``.

    The archive is staged and checked against :data:`MD5` before anything is unpacked, and the
    batches are moved into place only when all six are there; a failure leaves nothing behind.

    Parameters
    ----------
    fetch
        ``fetch(url, path)``; replace it to test without network.
    log
        Receives one progress line.

    Raises
    ------
    DownloadError, CorruptDataError
        If the archive cannot be fetched, fails its md5, or lacks a batch.
    """
    fix = f"nothing was kept; retry `{ENSURE_COMMAND}`"
    with _files.staging_dir() as staged:
        archive = staged / "cifar-10-python.tar.gz"
        log(f"downloading {URL}")
        _files.fetch_into(fetch, URL, archive)
        actual = _files.file_digest(archive, "md5")
        if actual != MD5:
            raise CorruptDataError(
                f"{URL} fails its md5 check (got {actual}, expected {MD5}): {fix}"
            )
        members = [f"{SUBDIR}/{name}" for name in FILES]
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staged, members=[tar.getmember(m) for m in members], filter="data")
        except (tarfile.TarError, KeyError, EOFError, zlib.error) as exc:
            raise CorruptDataError(f"{URL}: unexpected archive content ({exc}): {fix}") from None
        dest = _files.cache_dir() / SUBDIR
        _files.install_files(staged / SUBDIR, dest, FILES)
    return dest


def load_cifar10(*, subset: Subset = None, flatten: bool = True, download: bool = False) -> Dataset:
    """Load CIFAR-10, standardised per pixel and channel with the training split's statistics.

    Parameters
    ----------
    subset
        See :data:`swatlib.data.dataset.Subset` (``subset=n`` takes n/5 test images).
    flatten
        True: ``(N, 3072)`` for MLPs; False: ``(N, 3, 32, 32)`` for CNNs.
    download
        If the batches are nowhere, download them (:func:`download_cifar10`) instead of raising.

    Raises
    ------
    DatasetNotFoundError
        If the batches are missing and ``download`` is False; the message names the fix.
    """
    if download and find_cifar10() is None:
        download_cifar10()
    directory = _files.require_dir(SUBDIR, FILES, NAME, NOT_FOUND_FIX)
    return make_dataset(
        NAME,
        str(directory),
        _read_batches(directory, TRAIN_FILES),
        _read_batches(directory, TEST_FILES),
        N_CLASSES,
        subset=subset,
        sample_shape=None if flatten else IMAGE_SHAPE,
        classes=CLASSES,
    )
