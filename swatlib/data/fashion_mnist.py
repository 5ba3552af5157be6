"""Fashion-MNIST (Xiao et al. 2017) from its idx files: 60,000 train / 10,000 test 28×28 images.

The four ``*-ubyte.gz`` files are looked for under ``fashion-mnist/`` in the data directories
(:func:`swatlib.data.data_dirs`); Debian's ``dataset-fashion-mnist`` package installs them in
``/usr/share/datasets/fashion-mnist``. Debian re-gzipped the files, so the compressed bytes differ
between sources while the *decompressed* idx payload does not: that payload's sha256 is what is
checked (:data:`SHA256`). Reading is ``np.frombuffer`` on the gunzipped bytes (about a second for
the whole set, standardisation included).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from swatlib.data import _files
from swatlib.data.dataset import Dataset, Subset, make_dataset
from swatlib.data.errors import CorruptDataError

NAME = "Fashion-MNIST"
SUBDIR = "fashion-mnist"
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FILES = TRAIN_FILES + TEST_FILES
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
APT_PACKAGE = "dataset-fashion-mnist"
N_CLASSES = 10
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

#: sha256 of each file's *decompressed* idx payload (header included), computed from Debian's
#: ``dataset-fashion-mnist`` and identical for the official downloads. Read at call time, so a
#: test can monkeypatch it to accept synthetic files.
SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

ENSURE_COMMAND = "python -m swatlib.data ensure fashion-mnist"
NOT_FOUND_FIX = (
    f"run `sudo apt-get install {APT_PACKAGE}` (Debian/Ubuntu) or `{ENSURE_COMMAND}` "
    f"(installs or downloads it), or set SWATLIB_DATA to a directory holding {SUBDIR}/"
)

# idx type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def repair_hint(path: Path) -> str:
    """The command that replaces a damaged copy of ``path``, depending on where it lives."""
    if path.is_relative_to(_files.SYSTEM_DATA_DIR):
        return f"reinstall it with `sudo apt-get install --reinstall {APT_PACKAGE}`"
    return f"delete {path.parent} and run `{ENSURE_COMMAND}`"


def parse_idx(data: bytes, what: Path, fix: str) -> np.ndarray:
    """Parse an uncompressed idx payload (header: 0, 0, type code, ndim, then ndim uint32 dims).

    Raises
    ------
    CorruptDataError
        If the magic is wrong or the payload length disagrees with the header.
    """
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise CorruptDataError(f"{what} is not an idx file (bad magic {data[:4].hex()}): {fix}")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise CorruptDataError(f"{what} is truncated inside its idx header: {fix}")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise CorruptDataError(
            f"{what} holds {len(data) - offset} data bytes but its header {shape} "
            f"needs {expected} (truncated or corrupt): {fix}"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def read_idx(path: Path, *, verify: bool = True) -> np.ndarray:
    """Read one gzipped idx file, checking its decompressed sha256 against :data:`SHA256`.

    Parameters
    ----------
    path
        A ``*-ubyte.gz`` file.
    verify
        Check the payload's sha256 (requires ``path.name`` to be in :data:`SHA256`).
    """
    fix = repair_hint(path)
    data = _files.gunzip(path, fix)
    if verify:
        _files.check_digest(data, "sha256", SHA256[path.name], path, fix)
    return parse_idx(data, path, fix)


def _read_split(
    directory: Path, images: str, labels: str, verify: bool
) -> tuple[np.ndarray, np.ndarray]:
    x, y = (read_idx(directory / name, verify=verify) for name in (images, labels))
    if x.ndim != 3 or y.ndim != 1:
        raise CorruptDataError(
            f"{directory / images}: expected N×H×W images and N labels, got shapes "
            f"{x.shape} and {y.shape}: {repair_hint(directory / images)}"
        )
    return x, y


def find_fashion_mnist() -> Path | None:
    """The directory holding the four files, or None."""
    return _files.find_dir(SUBDIR, FILES)


def download_fashion_mnist(
    *, fetch: _files.Fetcher = _files.fetch_url, log: Callable[[str], None] = print
) -> Path:
    """Download the four official files into ``~/.cache/swatlib/fashion-mnist``.

    Every file is staged, its decompressed sha256 checked, and only when all four pass are they
    moved into place, so a failed or mismatching download leaves nothing behind.

    Parameters
    ----------
    fetch
        ``fetch(url, path)``; replace it to test without network.
    log
        Receives one progress line per file.

    Returns
    -------
    Path
        The directory the files now live in.

    Raises
    ------
    DownloadError, CorruptDataError
        If a file cannot be fetched or fails its check.
    """
    fix = f"nothing was kept; retry `{ENSURE_COMMAND}` or run `sudo apt-get install {APT_PACKAGE}`"
    with _files.staging_dir() as staged:
        for name in FILES:
            log(f"downloading {BASE_URL}{name}")
            _files.fetch_into(fetch, BASE_URL + name, staged / name)
            data = _files.gunzip(staged / name, fix)
            _files.check_digest(data, "sha256", SHA256[name], Path(BASE_URL + name), fix)
        dest = _files.cache_dir() / SUBDIR
        _files.install_files(staged, dest, FILES)
    return dest


def load_fashion_mnist(
    *,
    subset: Subset = None,
    flatten: bool = True,
    standardize: bool = True,
    verify: bool = True,
    download: bool = False,
) -> Dataset:
    """Load Fashion-MNIST, standardised per pixel with the training split's statistics.

    Parameters
    ----------
    subset
        See :data:`swatlib.data.dataset.Subset` (``subset=n`` takes n/6 test images).
    flatten
        True: ``(N, 784)`` for MLPs; False: ``(N, 1, 28, 28)`` for CNNs.
    standardize
        False keeps the raw pixel values 0..255 (as float32), e.g. to show the images.
    verify
        Check each file's decompressed sha256 (costs about 0.1 s).
    download
        If the files are nowhere, download them (:func:`download_fashion_mnist`) instead of
        raising.

    Raises
    ------
    DatasetNotFoundError
        If the files are missing and ``download`` is False; the message names the commands.
    CorruptDataError
        If a file is damaged; the message names the file and how to replace it.
    """
    if download and find_fashion_mnist() is None:
        download_fashion_mnist()
    directory = _files.require_dir(SUBDIR, FILES, NAME, NOT_FOUND_FIX)
    x_train, y_train = _read_split(directory, *TRAIN_FILES, verify)
    x_test, y_test = _read_split(directory, *TEST_FILES, verify)
    return make_dataset(
        NAME,
        str(directory),
        (x_train, y_train),
        (x_test, y_test),
        N_CLASSES,
        subset=subset,
        sample_shape=None if flatten else (1, *x_train.shape[1:]),
        standardize=standardize,
        classes=CLASSES,
    )
