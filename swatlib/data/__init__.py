"""Datasets of the sparse-training experiments, loaded the same way for every notebook.

``load(name, subset=...)`` returns a :class:`Dataset`: a deterministic train/test split with
features standardised per feature by the training split's statistics (seed 001's preprocessing:
no division by 255), as float32 tensors with int64 labels. Files are looked for in
``$SWATLIB_DATA``, ``~/.cache/swatlib`` and ``/usr/share/datasets`` (:func:`data_dirs`); a missing
dataset raises
:class:`DatasetNotFoundError` naming the command that installs it, never a silent substitute.
The one documented offline stand-in, Madelon-like (synthetic), is named as such in
:attr:`Dataset.name`, as is the synthetic Madelon-65536 (generated and cached on first use).
``python -m swatlib.data ensure NAME`` installs, downloads or generates what it can.

=================  ==========================  =======================================
name               loader                      offline source
=================  ==========================  =======================================
``fashion-mnist``  :func:`load_fashion_mnist`  Debian ``dataset-fashion-mnist``
``madelon``        :func:`load_madelon`        Madelon-like generator (scikit-learn)
``madelon-65536``  :func:`load_madelon65536`   generated (scikit-learn + numpy), cached
``cifar10``        :func:`load_cifar10`        none (download, md5-checked)
``higgs``          :func:`load_higgs`          none (user-provided ``HIGGS.csv.gz``)
``leukemia``       :func:`load_leukemia`       none (user-provided ``leukemia.npz``)
=================  ==========================  =======================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swatlib.checks import check_choice
from swatlib.data._files import cache_dir, data_dirs
from swatlib.data.cifar10 import download_cifar10, load_cifar10
from swatlib.data.dataset import Dataset, Subset, standardise
from swatlib.data.provision import ensure
from swatlib.data.errors import CorruptDataError, DatasetNotFoundError, DownloadError
from swatlib.data.fashion_mnist import download_fashion_mnist, load_fashion_mnist
from swatlib.data.higgs import load_higgs
from swatlib.data.leukemia import load_leukemia
from swatlib.data.madelon import load_madelon, make_madelon_like
from swatlib.data.madelon65536 import load_madelon65536

LOADERS: dict[str, Callable[..., Dataset]] = {
    "fashion-mnist": load_fashion_mnist,
    "madelon": load_madelon,
    "cifar10": load_cifar10,
    "higgs": load_higgs,
    "leukemia": load_leukemia,
    "madelon-65536": load_madelon65536,
}
DATASETS = tuple(LOADERS)


def load(name: str, *, subset: Subset = None, **options: Any) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`).

    Parameters
    ----------
    name
        ``fashion-mnist``, ``madelon``, ``cifar10``, ``higgs``, ``leukemia`` or ``madelon-65536``.
    subset
        None for the full split; ``n`` for n training samples and a proportional number of
        test samples; ``(n_train, n_test)`` for both. Drawn with a fixed seed.
    **options
        Passed to the dataset's loader, e.g. ``flatten=False`` for images, ``variant="uci"``
        for Madelon, ``n_features=512, n_samples=400`` for a narrow Madelon-65536.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    DatasetNotFoundError
        If the dataset's files are missing.
    """
    return LOADERS[check_choice(name, LOADERS, "name")](subset=subset, **options)


__all__ = [
    "DATASETS",
    "LOADERS",
    "CorruptDataError",
    "Dataset",
    "DatasetNotFoundError",
    "DownloadError",
    "Subset",
    "cache_dir",
    "data_dirs",
    "download_cifar10",
    "download_fashion_mnist",
    "ensure",
    "load",
    "load_cifar10",
    "load_fashion_mnist",
    "load_higgs",
    "load_leukemia",
    "load_madelon",
    "load_madelon65536",
    "make_madelon_like",
    "standardise",
]
