"""Memory of the backward pass: bytes of everything a training step saves for backward.

Per layer of the table, at ``batch_size`` examples and ``value_bytes`` per value (fp32 = 4),
this model counts:

==========================  ========================================  ==========
saved for backward           dense training                            category
==========================  ========================================  ==========
conv / linear input X        dense, or sparse at the saved density     activation
conv / linear weight W       dense, or sparse at the weight density    weight
conv / linear bias           dense                                     weight
BatchNorm input              dense (+ mean and 1/σ per channel)        activation
BatchNorm γ, β               dense                                     weight
ReLU                         1-bit sign mask per element               activation
max-pool                     argmax, 1 byte per output element         activation
average-pool                 nothing (backward needs only the shape)  —
==========================  ========================================  ==========

Decisions, for every method alike: BatchNorm inputs stay dense (SWAT sparsifies only the
inputs of conv / linear layers); ReLU keeps only a bit mask (its backward needs the sign,
not the value; an fp32 copy would double-count the next layer's input); a tensor saved
dense by several layers (a block input feeding a convolution and a projection shortcut)
is counted once, and so are identical sparse copies of it (same tensor, same density);
DenseNet's concatenated inputs are counted per layer, as a plain implementation stores
them. Residual additions and concatenations save nothing.

A sparse tensor of ``numel`` elements keeps ``nnz = ceil(density × numel)`` values (Top-K's k)
plus an index in one of four formats (:func:`tensor_bytes`); a tensor at density 1 is stored
dense without an index:

* ``none``   — values only: the "without index overhead" figure;
* ``bitmap`` — one bit per dense element;
* ``csr``    — a column index per value and ``rows + 1`` row pointers, over the matrix view
  (weights: out-channels × the rest; activations: example·channels × spatial, or examples ×
  features for linear inputs);
* ``coo``    — a (row, column) index pair per value, same matrix view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from swatlib.checks import check_choice

from .layers import LayerInfo

__all__ = ["INDEX_FORMATS", "tensor_bytes", "SavedTensor", "MemoryReport", "backward_memory"]

#: Index formats of sparse tensors.
INDEX_FORMATS = ("none", "bitmap", "csr", "coo")



def tensor_bytes(numel: int, density: float, rows: int, index_format: str, *,
                 value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Bytes of a tensor kept at ``density`` (values plus index).

    Parameters
    ----------
    numel : int
        Elements of the dense tensor.
    density : float
        Kept fraction; 1 means stored dense, without an index.
    rows : int
        Rows of the tensor's matrix view (CSR row pointers, COO row indices).
    index_format : {"none", "bitmap", "csr", "coo"}
        See the module docstring.
    value_bytes, index_bytes : int
        Bytes per stored value (4 = fp32) and per index (4 = int32).

    Returns
    -------
    int
        Bytes.
    """
    check_choice(index_format, INDEX_FORMATS, "index_format")
    if density >= 1.0:
        return numel * value_bytes
    nnz = math.ceil(density * numel)
    index = {"none": 0,
             "bitmap": math.ceil(numel / 8),
             "csr": nnz * index_bytes + (rows + 1) * index_bytes,
             "coo": 2 * nnz * index_bytes}[index_format]
    return nnz * value_bytes + index


@dataclass(frozen=True)
class SavedTensor:
    """One tensor saved for the backward pass.

    Attributes
    ----------
    layer : str
        Layer that saves it.
    what : str
        ``input``, ``weight``, ``bias``, ``bn_input``, ``bn_stats``, ``bn_affine``,
        ``relu_mask`` or ``pool_argmax``.
    category : str
        ``activation`` (grows with the batch) or ``weight``.
    numel : int
        Elements (whole batch for activations).
    density : float
        Stored density (1 = dense).
    bytes : int
        Bytes stored.
    """

    layer: str
    what: str
    category: str
    numel: int
    density: float
    bytes: int


@dataclass(frozen=True)
class MemoryReport:
    """Everything saved for the backward pass of one step.

    Attributes
    ----------
    saved : tuple of SavedTensor
        After de-duplication of shared tensors.
    """

    saved: tuple[SavedTensor, ...]

    @property
    def activation_bytes(self) -> int:
        """Bytes of saved activations (BatchNorm inputs, masks, conv/linear inputs)."""
        return sum(t.bytes for t in self.saved if t.category == "activation")

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights, biases and BatchNorm affine parameters used by backward."""
        return sum(t.bytes for t in self.saved if t.category == "weight")


def _activation_rows(shape: tuple[int, ...], batch_size: int) -> int:
    return batch_size * (math.prod(shape[:-2]) if len(shape) >= 3 else 1)


def backward_memory(table: list[LayerInfo], *, batch_size: int,
                    weight_density: Mapping[str, float] | None = None,
                    activation_density: Mapping[str, float] | None = None,
                    index_format: str = "bitmap", value_bytes: int = 4,
                    index_bytes: int = 4) -> MemoryReport:
    """Bytes saved for the backward pass of one step.

    Parameters
    ----------
    table : list of LayerInfo
        The network's layer table.
    batch_size : int
        Examples per step.
    weight_density, activation_density : mapping of str to float, optional
        Stored density of each conv / linear layer's weight and saved input (missing
        layers: dense). From :class:`~swatlib.costmodel.methods.LayerPlan`'s
        ``weight_density`` and ``saved_act_density``, or measured.
    index_format : {"none", "bitmap", "csr", "coo"}
        Index of the sparse tensors.
    value_bytes, index_bytes : int
        Bytes per value and per index.

    Returns
    -------
    MemoryReport
    """
    check_choice(index_format, INDEX_FORMATS, "index_format")
    weight_density = weight_density or {}
    activation_density = activation_density or {}
    saved: list[SavedTensor] = []
    seen: set[tuple[int, float]] = set()

    def add(layer: str, what: str, category: str, numel: int, density: float,
            rows: int) -> None:
        nbytes = tensor_bytes(numel, density, rows, index_format,
                              value_bytes=value_bytes, index_bytes=index_bytes)
        saved.append(SavedTensor(layer, what, category, numel, density, nbytes))

    for row in table:
        n_in = batch_size * row.input_numel
        if row.kind in ("conv", "linear"):
            d_a = activation_density.get(row.name, 1.0)
            key = (row.input_id, min(d_a, 1.0))
            if key not in seen:
                seen.add(key)
                add(row.name, "input", "activation", n_in, d_a,
                    _activation_rows(row.input_shape, batch_size))
            add(row.name, "weight", "weight", row.weight_numel,
                weight_density.get(row.name, 1.0), row.weight_shape[0])
            if row.params > row.weight_numel:
                add(row.name, "bias", "weight", row.params - row.weight_numel, 1.0, 1)
        elif row.kind == "bn":
            if (row.input_id, 1.0) not in seen:
                seen.add((row.input_id, 1.0))
                add(row.name, "bn_input", "activation", n_in, 1.0, 1)
            add(row.name, "bn_stats", "activation", 2 * row.input_shape[0], 1.0, 1)
            if row.params:
                add(row.name, "bn_affine", "weight", row.params, 1.0, 1)
        elif row.kind == "act":
            saved.append(SavedTensor(row.name, "relu_mask", "activation", n_in, 1.0,
                                     math.ceil(n_in / 8)))
        elif row.kind == "maxpool":
            n_out = batch_size * row.output_numel
            saved.append(SavedTensor(row.name, "pool_argmax", "activation", n_out, 1.0, n_out))
    return MemoryReport(tuple(saved))
