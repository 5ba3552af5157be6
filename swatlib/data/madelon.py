"""Madelon (Guyon 2003): 500 features of which 20 carry the signal, 2 classes.

Two sources, always named in the returned dataset so every figure can say which it used:

* ``"Madelon (UCI)"``: the real NIPS 2003 challenge files, whitespace-separated, labels ±1, under
  ``madelon/`` in a data directory: ``madelon_train.data``, ``madelon_train.labels`` (2000
  samples, the training split) and ``madelon_valid.data``, ``madelon_valid.labels`` (600 samples,
  the test split; the challenge's own test labels were never published).
* ``"Madelon-like (synthetic)"``: the offline source. scikit-learn's ``make_classification`` is
  Guyon's Madelon generator: 2600 samples (first 2000 train, last 600 test), 5 informative
  features whose 32 Gaussian clusters (16 per class) sit on the vertices of a 5-D hypercube,
  15 redundant linear combinations of them, 480 probes, 1 % of labels flipped, rows and columns
  shuffled, with a fixed ``random_state``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from swatlib.checks import check_choice
from swatlib.data import _files
from swatlib.data.dataset import Dataset, Subset, make_dataset
from swatlib.data.errors import CorruptDataError

UCI_NAME = "Madelon (UCI)"
SYNTHETIC_NAME = "Madelon-like (synthetic)"
SUBDIR = "madelon"
FILES = ("madelon_train.data", "madelon_train.labels", "madelon_valid.data", "madelon_valid.labels")
UCI_FIX = (
    "download the files from https://archive.ics.uci.edu/dataset/171/madelon into "
    f"$SWATLIB_DATA/{SUBDIR}/, or use variant='synthetic' (Madelon-like)"
)
N_CLASSES = 2
N_TRAIN, N_TEST = 2000, 600

#: Guyon's recipe, as ``make_classification`` arguments. ``class_sep=1`` puts the cluster centres
#: at ±1 (a hypercube of side 2) around unit-variance clusters.
RECIPE = {
    "n_samples": N_TRAIN + N_TEST,
    "n_features": 500,
    "n_informative": 5,
    "n_redundant": 15,
    "n_repeated": 0,
    "n_classes": N_CLASSES,
    "n_clusters_per_class": 16,
    "flip_y": 0.01,
    "class_sep": 1.0,
    "hypercube": True,
    "shuffle": True,
}


def find_madelon() -> Path | None:
    """The directory holding the four UCI files, or None."""
    return _files.find_dir(SUBDIR, FILES)


def make_madelon_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate the 2600 Madelon-like samples: float64 ``(2600, 500)`` features, 0/1 labels."""
    from sklearn.datasets import make_classification  # heavy import, needed only here

    return make_classification(**RECIPE, random_state=seed)


def _read_uci_split(directory: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = directory / f"{stem}.data", directory / f"{stem}.labels"
    fix = f"replace {directory} with a complete copy of the UCI files"
    try:
        x = np.loadtxt(data, dtype=np.float64, ndmin=2)
        y = np.loadtxt(labels, dtype=np.int64, ndmin=1)
    except ValueError as exc:
        raise CorruptDataError(
            f"{directory}/{stem}.*: not whitespace-separated numbers ({exc}): {fix}"
        ) from None
    if len(x) != len(y) or not np.isin(y, (-1, 1)).all():
        raise CorruptDataError(f"{labels}: expected {len(x)} labels of ±1: {fix}")
    return x, (y > 0).astype(np.int64)


def load_madelon(
    *,
    subset: Subset = None,
    variant: Literal["auto", "uci", "synthetic"] = "auto",
    seed: int = 0,
) -> Dataset:
    """Load Madelon, standardised per feature with the training split's statistics.

    Parameters
    ----------
    subset
        See :data:`swatlib.data.dataset.Subset`.
    variant
        ``"auto"``: the UCI files if found, else Madelon-like; ``"uci"``: the UCI files or
        :class:`DatasetNotFoundError`; ``"synthetic"``: always Madelon-like.
    seed
        ``random_state`` of the Madelon-like generator.

    Returns
    -------
    Dataset
        Named ``"Madelon (UCI)"`` or ``"Madelon-like (synthetic)"``.
    """
    check_choice(variant, ("auto", "uci", "synthetic"), "variant")
    if variant == "uci":
        directory = _files.require_dir(SUBDIR, FILES, UCI_NAME, UCI_FIX)
    elif variant == "auto":
        directory = find_madelon()
    else:
        directory = None
    if directory is not None:
        train = _read_uci_split(directory, "madelon_train")
        test = _read_uci_split(directory, "madelon_valid")
        if train[0].shape[1] != test[0].shape[1]:
            raise CorruptDataError(
                f"{directory}: train and valid files have different feature counts: "
                f"replace {directory} with a complete copy of the UCI files"
            )
        return make_dataset(UCI_NAME, str(directory), train, test, N_CLASSES, subset=subset)
    x, y = make_madelon_like(seed)
    source = f"synthetic: sklearn make_classification (Guyon's Madelon recipe), random_state={seed}"
    return make_dataset(
        SYNTHETIC_NAME,
        source,
        (x[:N_TRAIN], y[:N_TRAIN]),
        (x[N_TRAIN:], y[N_TRAIN:]),
        N_CLASSES,
        subset=subset,
    )
