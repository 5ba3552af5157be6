"""Multi-layer perceptrons of the Truly Sparse experiments: truly sparse, masked, and dense.

All three share one structure, so a comparison changes only the linear layers:
``linears`` (ordered, output layer last) and ``activations`` (one per hidden layer), with inverted
dropout after every hidden activation (SPEC §1). That structure is the protocol
:mod:`swatlib.topology` (SET) and :mod:`swatlib.importance` (neuron pruning) work against.

* :class:`SparseMLP` — :class:`~swatlib.sparse.SparseLinear` layers (values + indices; memory and
  work scale with the number of connections), Erdős–Rényi topology from ``epsilon``;
* ``SparseMLP(..., layer="masked")`` — the *masked* baseline: dense weights times a mask;
* :class:`MLP` — the dense ``nn.Linear`` baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from swatlib.activations import AllReLU, make_activation
from swatlib.checks import check_choice
from swatlib.dropout import inverted_dropout, relu_dropout
from swatlib.sparse import MaskedLinear, SparseLinear
from swatlib.sparse.init import INITS, draw_values

LAYERS = {"sparse": SparseLinear, "masked": MaskedLinear}


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive ints (input ... output), got {sizes!r}")
    return sizes


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


class _Perceptron(nn.Module):
    """Shared forward pass: hidden layers with activation and inverted dropout, then the output."""

    linears: nn.ModuleList
    activations: nn.ModuleList

    def __init__(self, sizes: list[int], activation: str, alpha: float, dropout: float,
                 generator: torch.Generator | None) -> None:
        super().__init__()
        self.sizes = sizes
        self.dropout = _check_dropout(dropout)
        self.activations = nn.ModuleList(
            make_activation(activation, alpha, i, num_features=width, generator=generator)
            for i, width in enumerate(sizes[1:-1], start=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden layers, then the output layer; in training, All-ReLU and dropout run fused
        (:func:`~swatlib.dropout.relu_dropout`: the same bits, one bit per unit for each mask kept for
        backward instead of the float32 pre-activation and a byte)."""
        for linear, activation in zip(self.linears, self.activations):
            x = linear(x)
            if self.training and self.dropout > 0 and isinstance(activation, AllReLU):
                x = relu_dropout(x, activation.slope, self.dropout)
                continue
            x = activation(x)
            if self.training and self.dropout > 0:
                x = inverted_dropout(x, self.dropout)
        return self.linears[-1](x)

    @property
    def nnz(self) -> int:
        """Number of weights that exist (connections), biases excluded."""
        return sum(l.weight.numel() if isinstance(l, nn.Linear) else l.nnz for l in self.linears)

    @property
    def n_params(self) -> int:
        """Connections plus biases: the paper's parameter count."""
        return self.nnz + sum(l.bias.numel() for l in self.linears if l.bias is not None)

    @property
    def hidden_neurons(self) -> list[int]:
        """Current width of every hidden layer (Importance Pruning shrinks them)."""
        return [l.out_features for l in self.linears[:-1]]


class SparseMLP(_Perceptron):
    """MLP whose every layer is sparse with the Erdős–Rényi density of ``epsilon``.

    Parameters
    ----------
    sizes
        Layer widths, input first, e.g. ``[784, 1000, 1000, 1000, 10]``.
    epsilon
        ε of SPEC §1: ``density = min(1, ε·(n_in + n_out)/(n_in·n_out))`` per layer (the 10-way
        output layer of the paper's networks comes out dense).
    activation, alpha
        Hidden activation (``relu``, ``leaky_relu``, ``all_relu``, ``srelu``) and its slope.
    dropout
        Inverted-dropout probability after every hidden activation.
    init
        Weight distribution (``he_uniform``, ``xavier``, ``normal``); biases start at zero.
    layer
        ``"sparse"`` (truly sparse, default) or ``"masked"`` (dense × mask baseline).
    generator
        Draws topology and values; the same generator state gives the same network for either
        ``layer``.
    """

    def __init__(self, sizes: Sequence[int], *, epsilon: float, activation: str = "all_relu",
                 alpha: float = 0.6, dropout: float = 0.3, init: str = "he_uniform",
                 layer: str = "sparse", generator: torch.Generator | None = None) -> None:
        check_choice(layer, LAYERS, "layer")
        sizes = _check_sizes(sizes)
        super().__init__(sizes, activation, alpha, dropout, generator)
        self.linears = nn.ModuleList(
            LAYERS[layer](n_in, n_out, epsilon=epsilon, init=init, generator=generator)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        )


class MLP(_Perceptron):
    """The dense baseline: the same network with ``nn.Linear`` layers, same init and dropout."""

    def __init__(self, sizes: Sequence[int], *, activation: str = "all_relu", alpha: float = 0.6,
                 dropout: float = 0.3, init: str = "he_uniform",
                 generator: torch.Generator | None = None) -> None:
        sizes = _check_sizes(sizes)
        check_choice(init, INITS, "init")
        super().__init__(sizes, activation, alpha, dropout, generator)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        with torch.no_grad():
            for linear in self.linears:
                values = draw_values(init, linear.in_features, linear.out_features,
                                     linear.weight.numel(), generator)
                linear.weight.copy_(values.view_as(linear.weight))
                linear.bias.zero_()
