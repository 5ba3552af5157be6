"""Leukemia (the MILE study, Haferlach et al. 2010; GEO GSE13204): 54,675 gene-expression
features, 18 classes, as used by seed 001.

No canonical file of the preprocessed set exists, so swatlib defines one: ``leukemia/leukemia.npz``
in a data directory, written with ``np.savez(path, X=X, y=y)``, where

* ``X`` is a float array ``(n, 54675)``, one row per sample (any real dtype);
* ``y`` is an integer array ``(n,)`` of class indices ``0 … n_classes-1``.

The split is deterministic and stratified: in every class, a fixed-seed permutation puts
``round(2/3 · n_c)`` samples in training and the rest in test (seed 001: 1397 / 699 of 2096).
Without a trusted checksum there is no automatic download.
"""

from __future__ import annotations

import zipfile

import numpy as np

from swatlib.data import _files
from swatlib.data.dataset import Dataset, Subset, make_dataset
from swatlib.data.errors import CorruptDataError

NAME = "Leukemia"
SUBDIR = "leukemia"
FILE = "leukemia.npz"
FILES = (FILE,)
NOT_FOUND_FIX = (
    "build it from GEO series GSE13204 "
    "(https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE13204) "
    f"as np.savez('{FILE}', X=X, y=y) (see swatlib.data.leukemia) in $SWATLIB_DATA/{SUBDIR}/"
)


def stratified_split(
    y: np.ndarray, train_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices, ``round(train_fraction · n_c)`` of each class in train."""
    rng = np.random.default_rng(seed)
    train = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        train.append(members[: round(train_fraction * len(members))])
    train_idx = np.sort(np.concatenate(train))
    return train_idx, np.setdiff1d(np.arange(len(y)), train_idx)


def load_leukemia(
    *, subset: Subset = None, train_fraction: float = 2 / 3, seed: int = 0
) -> Dataset:
    """Load Leukemia, standardised per feature with the training split's statistics.

    Parameters
    ----------
    subset
        See :data:`swatlib.data.dataset.Subset`.
    train_fraction
        Fraction of each class that goes to training.
    seed
        Seed of the stratified split.

    Raises
    ------
    DatasetNotFoundError
        If ``leukemia/leukemia.npz`` is missing; the message says how to build it.
    CorruptDataError
        If the file lacks ``X``/``y`` of matching lengths or has negative labels.
    """
    directory = _files.require_dir(SUBDIR, FILES, NAME, NOT_FOUND_FIX)
    path = directory / FILE
    fix = f"rewrite {path} as np.savez(path, X=X, y=y) (see swatlib.data.leukemia)"
    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive["X"], archive["y"]
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptDataError(
            f"{path} is not a leukemia npz with X and y ({exc}): {fix}"
        ) from None
    valid = x.ndim == 2 and y.shape == (len(x),) and len(y) > 0
    if not (valid and np.issubdtype(y.dtype, np.integer) and y.min() >= 0):
        raise CorruptDataError(
            f"{path}: expected X (n, features) and non-negative integer y (n,), "
            f"got X {x.shape} and y {y.dtype} {y.shape}: {fix}"
        )
    train, test = stratified_split(y, train_fraction, seed)
    return make_dataset(
        NAME,
        str(directory),
        (x[train], y[train]),
        (x[test], y[test]),
        int(y.max()) + 1,
        subset=subset,
    )
