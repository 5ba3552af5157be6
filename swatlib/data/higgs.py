"""HIGGS (Baldi, Sadowski & Whiteson 2014): 11 million simulated collisions, 28 features, 2 classes.

Read from ``higgs/HIGGS.csv.gz`` in a data directory, in UCI's format: comma-separated, the label
(1 = signal, 0 = background) in the first column, then the 28 features. As UCI's description says,
the last 500,000 rows are the test set. No checksum of the file is published, so it is never
downloaded automatically: the missing-data error says where to get it and where to put it.
Parsing the full 2.6 GB of text takes minutes; ``subset`` does not shorten it.
"""

from __future__ import annotations

import zlib

import numpy as np

from swatlib.data import _files
from swatlib.data.dataset import Dataset, Subset, make_dataset
from swatlib.data.errors import CorruptDataError

NAME = "Higgs"
SUBDIR = "higgs"
FILE = "HIGGS.csv.gz"
FILES = (FILE,)
N_FEATURES = 28
N_CLASSES = 2
UCI_TEST_ROWS = 500_000
NOT_FOUND_FIX = (
    f"download {FILE} from https://archive.ics.uci.edu/dataset/280/higgs (unzip the archive if "
    f"it comes as one) into $SWATLIB_DATA/{SUBDIR}/ or ~/.cache/swatlib/{SUBDIR}/"
)


def load_higgs(*, subset: Subset = None, n_test: int = UCI_TEST_ROWS) -> Dataset:
    """Load HIGGS, standardised per feature with the training split's statistics.

    Parameters
    ----------
    subset
        See :data:`swatlib.data.dataset.Subset`.
    n_test
        The last ``n_test`` rows form the test set (UCI: 500,000).

    Raises
    ------
    DatasetNotFoundError
        If the file is missing; the message says where to get it.
    CorruptDataError
        If it is not a CSV of 29 numeric columns with 0/1 labels.
    """
    directory = _files.require_dir(SUBDIR, FILES, NAME, NOT_FOUND_FIX)
    path = directory / FILE
    fix = f"replace {path} with a fresh copy from https://archive.ics.uci.edu/dataset/280/higgs"
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (ValueError, EOFError, OSError, zlib.error) as exc:
        raise CorruptDataError(f"{path} is not a complete numeric CSV ({exc}): {fix}") from None
    labels = table[:, 0]
    if table.shape[1] != 1 + N_FEATURES or not np.isin(labels, (0, 1)).all():
        raise CorruptDataError(
            f"{path}: expected a 0/1 label and {N_FEATURES} features per row, "
            f"got {table.shape[1]} columns: {fix}"
        )
    if not 0 < n_test < len(table):
        raise ValueError(f"n_test={n_test} must be between 1 and {len(table) - 1} for {path}")
    x, y = table[:, 1:], labels.astype(np.int64)
    split = len(table) - n_test
    return make_dataset(
        NAME,
        str(directory),
        (x[:split], y[:split]),
        (x[split:], y[split:]),
        N_CLASSES,
        subset=subset,
    )
