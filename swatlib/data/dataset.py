"""The one container every loader returns, and the preprocessing all of them share.

Seed 001 (and the authors' code) standardise every feature with the *training* split's mean and
standard deviation (no division by 255), so that is done here once for all datasets:
:func:`make_dataset` takes raw numpy arrays, optionally draws a deterministic subset (for smoke
and quick profiles), standardises, and returns float32 features and int64 labels as torch tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from swatlib.data.errors import CorruptDataError

#: ``subset=n`` takes n training samples and a proportional number of test samples;
#: ``subset=(n_train, n_test)`` gives both explicitly.
Subset = int | tuple[int, int] | None

#: Seed of the subset draw: fixed, so a profile's subset is the same on every run and machine.
SUBSET_SEED = 0


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split ready for training.

    Attributes
    ----------
    name
        Human-readable name for figures and tables, e.g. ``"Madelon-like (synthetic)"``.
    x_train, x_test
        float32 features, standardised with the training split's statistics; shape ``(N, F)``,
        or ``(N, C, H, W)`` for images loaded with ``flatten=False``.
    y_train, y_test
        int64 class labels in ``[0, n_classes)``.
    n_classes
        Number of classes.
    source
        Where the data came from: the directory read, or the generator used.
    classes
        Class names, index = label (``"0"``, ``"1"``, ... where the dataset has no names).
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    n_classes: int
    source: str
    classes: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        """Number of input features of one sample (the MLP's input width)."""
        return math.prod(self.x_train.shape[1:])

    def __str__(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test, "
            f"{self.n_features} features, {self.n_classes} classes (source: {self.source})"
        )


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise each feature (column) with the training split's mean and standard deviation.

    Parameters
    ----------
    x_train, x_test
        2-D arrays ``(N, F)`` of any real dtype.

    Returns
    -------
    tuple of torch.Tensor
        float32 ``(x_train - mean) / std`` and ``(x_test - mean) / std``.

    Notes
    -----
    Statistics are computed in float32 when the input dtype fits in it exactly (uint8 images,
    float32) and in float64 otherwise. A feature that is constant on the training split gets
    mean = that constant and std = 1 (as scikit-learn's ``StandardScaler`` does): it becomes
    exactly 0 in training and is only shifted in test, never NaN.
    """
    exact32 = np.can_cast(x_train.dtype, np.float32, "safe")
    work = torch.float32 if exact32 else torch.float64
    train = torch.from_numpy(np.require(x_train, requirements="CW")).to(work, copy=True)
    test = torch.from_numpy(np.require(x_test, requirements="CW")).to(work, copy=True)
    low = x_train.min(axis=0)
    constant = torch.from_numpy(low == x_train.max(axis=0))
    std, mean = torch.std_mean(train, dim=0, correction=0)
    mean = torch.where(constant, torch.from_numpy(low).to(work), mean)
    std = torch.where(constant, torch.ones_like(std), std)
    train.sub_(mean).div_(std)
    test.sub_(mean).div_(std)
    return train.to(torch.float32), test.to(torch.float32)


def subset_sizes(subset: Subset, n_train: int, n_test: int) -> tuple[int, int]:
    """The (train, test) sizes that ``subset`` asks for; see :data:`Subset`.

    Raises
    ------
    ValueError
        If a size is below 1 or above what the split holds.
    """
    if subset is None:
        return n_train, n_test
    if isinstance(subset, int | np.integer):
        sizes = (subset, max(1, round(subset * n_test / n_train)))
    else:
        sizes = (int(subset[0]), int(subset[1]))
    if not (1 <= sizes[0] <= n_train and 1 <= sizes[1] <= n_test):
        raise ValueError(
            f"subset={subset!r} asks for {sizes[0]} train / {sizes[1]} test samples, "
            f"but the split has {n_train} / {n_test}"
        )
    return sizes


def pick_subset(n: int, k: int, rng: np.random.Generator) -> np.ndarray | slice:
    """Which ``k`` of ``n`` samples a subset keeps: sorted indices drawn without replacement.

    Every loader draws its ``subset`` through this, with ``np.random.default_rng(SUBSET_SEED)`` and
    the training split first, so that a profile's subset is the same samples on every run — also
    for madelon-65536, which reads only the kept rows from disk. The indices are sorted: the kept
    samples stay in the split's order, and those rows are read front to back.

    Parameters
    ----------
    n : int
        Samples in the split.
    k : int
        Samples to keep, ``1 <= k <= n`` (:func:`subset_sizes`).
    rng : np.random.Generator
        The draw; advanced only when ``k < n``.

    Returns
    -------
    np.ndarray or slice
        int64 indices, or ``slice(None)`` when ``k == n`` (indexing with it gives a view, no copy).
    """
    if k == n:
        return slice(None)
    return np.sort(rng.choice(n, size=k, replace=False))


def make_dataset(
    name: str,
    source: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    *,
    subset: Subset = None,
    sample_shape: tuple[int, ...] | None = None,
    standardize: bool = True,
    classes: tuple[str, ...] | None = None,
) -> Dataset:
    """Subset, flatten, standardise and convert raw arrays into a :class:`Dataset`.

    Parameters
    ----------
    name, source, n_classes
        As in :class:`Dataset`.
    train, test
        ``(features, labels)``: features ``(N, ...)`` of any real dtype, integer labels ``(N,)``.
    subset
        See :data:`Subset`. Samples are drawn uniformly without replacement with the fixed seed
        :data:`SUBSET_SEED` (not stratified), then kept in their original order. The statistics
        of standardisation are those of the subset's training split.
    sample_shape
        Shape of one sample in the result, e.g. ``(1, 28, 28)`` for a CNN; None keeps the
        features flat.
    standardize
        False keeps the raw feature values (as float32), e.g. to show images as they are.
    classes
        Class names; default ``"0"`` ... ``str(n_classes - 1)``.

    Raises
    ------
    CorruptDataError
        If features and labels disagree in length or a label is outside ``[0, n_classes)``.
    """
    (x_train, y_train), (x_test, y_test) = train, test
    for x, y in (train, test):
        if len(x) != len(y) or y.size == 0 or y.min() < 0 or y.max() >= n_classes:
            raise CorruptDataError(
                f"{name} in {source}: {len(x)} samples but {len(y)} labels, or labels outside "
                f"[0, {n_classes}): replace the files with a complete copy"
            )
    k_train, k_test = subset_sizes(subset, len(y_train), len(y_test))
    rng = np.random.default_rng(SUBSET_SEED)
    keep_train, keep_test = pick_subset(len(y_train), k_train, rng), pick_subset(len(y_test), k_test, rng)
    flat_train, flat_test = x_train[keep_train].reshape(k_train, -1), x_test[keep_test].reshape(k_test, -1)
    if standardize:
        x_tr, x_te = standardise(flat_train, flat_test)
    else:
        x_tr = torch.from_numpy(flat_train.astype(np.float32))
        x_te = torch.from_numpy(flat_test.astype(np.float32))
    if sample_shape is not None:
        x_tr, x_te = x_tr.reshape(k_train, *sample_shape), x_te.reshape(k_test, *sample_shape)
    return Dataset(
        name=name,
        x_train=x_tr,
        y_train=torch.from_numpy(y_train[keep_train].astype(np.int64)),
        x_test=x_te,
        y_test=torch.from_numpy(y_test[keep_test].astype(np.int64)),
        n_classes=n_classes,
        source=source,
        classes=tuple(classes) if classes is not None else tuple(str(c) for c in range(n_classes)),
    )
