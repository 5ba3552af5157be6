"""Hidden-layer activations of the truly sparse MLPs: All-ReLU (seed 001, eq. 3), SReLU, ReLU, LeakyReLU.

**All-ReLU sign convention** (SPEC §2). ``f(x) = x`` for ``x > 0``; for ``x ≤ 0`` the slope alternates
from one hidden layer to the next, starting with **−α on the first hidden layer**:

====================  ==============  =========================================
hidden layer ``l``    ``f(x), x ≤ 0`` effect
====================  ==============  =========================================
1, 3, 5, … (odd)      ``−α·x``        a negative input gives a *positive* output
2, 4, 6, … (even)     ``+α·x``        an ordinary leaky ReLU
====================  ==============  =========================================

``layer_index`` is the paper's layer number ``l``, which counts the input layer as 0, so the first
hidden layer is ``l = 1``: odd ``l`` → −α, even ``l`` → +α. Eq. 3 selects the slope by the parity of
``l``, and the authors' code passes the slopes (−α, +α, −α) to the three hidden layers of its MLPs;
with this numbering both agree. The input and output layers have no All-ReLU. At ``x = 0`` the output
is 0 and the derivative is the left slope.

**SReLU** (Jin et al. 2016) has four trainable parameters per neuron — ``t_left``, ``a_left``,
``t_right``, ``a_right`` — and is parametrised and initialised as in keras-contrib (which the SET
authors used): the right threshold is ``t_left + |t_right|``, so it never crosses the left one.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import LeakyReLU, ReLU

from swatlib.checks import check_choice, check_int, check_number
from swatlib.optim import replace_parameter

__all__ = ["ACTIVATIONS", "AllReLU", "LeakyReLU", "ReLU", "SReLU", "make_activation"]

#: Names accepted by :func:`make_activation`.
ACTIVATIONS = ("relu", "leaky_relu", "all_relu", "srelu")


def _check_alpha(alpha: float) -> float:
    return check_number(alpha, "alpha", 0)


class AllReLU(nn.Module):
    """Alternated Left ReLU: identity for ``x > 0``, slope ``∓α`` for ``x ≤ 0`` by hidden-layer parity.

    Parameters
    ----------
    alpha
        Magnitude of the left slope, ≥ 0 (paper Table 7: 0.05–0.75; 0.6 on Fashion-MNIST).
    layer_index
        The paper's number of the hidden layer this activation follows: 1 for the first hidden layer
        (slope −α), 2 for the second (+α), and so on.

    Raises
    ------
    ValueError
        If ``alpha`` is negative or ``layer_index`` is not a positive integer.
    """

    def __init__(self, alpha: float, layer_index: int) -> None:
        super().__init__()
        check_int(layer_index, "layer_index (first hidden layer = 1)")
        self.alpha = _check_alpha(alpha)
        self.layer_index = layer_index

    @property
    def slope(self) -> float:
        """The signed slope applied to ``x ≤ 0``: ``−α`` on odd hidden layers, ``+α`` on even ones."""
        return -self.alpha if self.layer_index % 2 == 1 else self.alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation element-wise."""
        return F.leaky_relu(x, self.slope)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, layer_index={self.layer_index}, slope={self.slope}"


class SReLU(nn.Module):
    """S-shaped ReLU with four trainable parameters per neuron (Jin et al. 2016)::

        t_r  = t_left + |t_right|
        f(x) = t_r + a_right·(x − t_r)        if x ≥ t_r
               x                               if t_left < x < t_r
               t_left + a_left·(x − t_left)   if x ≤ t_left

    Parameters
    ----------
    num_features
        Number of neurons (size of the last input dimension).
    generator
        Draws the random initial values: ``t_left = 0``, ``a_left ~ U(0, 1)``, ``t_right ~ U(0, 5)``,
        ``a_right = 1`` (keras-contrib's defaults).
    device, dtype
        Of the parameters.
    """

    def __init__(
        self,
        num_features: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int(num_features, "num_features")
        dtype = dtype or torch.get_default_dtype()
        self.num_features = num_features
        self.t_left = nn.Parameter(torch.zeros(num_features, dtype=dtype, device=device))
        self.a_left = nn.Parameter(torch.rand(num_features, generator=generator, dtype=dtype).to(device))
        self.t_right = nn.Parameter(5.0 * torch.rand(num_features, generator=generator, dtype=dtype).to(device))
        self.a_right = nn.Parameter(torch.ones(num_features, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation along the last dimension (one parameter set per neuron)."""
        if x.dim() == 0 or x.shape[-1] != self.num_features:
            raise ValueError(f"input must have {self.num_features} features in its last dimension, "
                             f"got shape {tuple(x.shape)}")
        t_right = self.t_left + self.t_right.abs()
        left = self.t_left + self.a_left * (x - self.t_left)
        right = t_right + self.a_right * (x - t_right)
        return torch.where(x >= t_right, right, torch.where(x <= self.t_left, left, x))

    @torch.no_grad()
    def select_features(self, keep: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Keep only the neurons ``keep`` (Importance Pruning); the optimizer state follows.

        Parameters
        ----------
        keep
            Sorted, unique indices of the neurons to keep.
        optimizer
            Optimizer whose per-element state of the four parameters follows.
        """
        for param in (self.t_left, self.a_left, self.t_right, self.a_right):
            replace_parameter(param, param[keep].clone(), keep, optimizer)
        self.num_features = keep.numel()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # A pruned layer's state dict has fewer neurons: take its size before the values load.
        stored = state_dict.get(prefix + "t_left")
        if stored is not None and stored.dim() == 1 and stored.numel() != self.num_features:
            for param in (self.t_left, self.a_left, self.t_right, self.a_right):
                replace_parameter(param, param.new_empty(stored.shape), torch.full(stored.shape, -1))
            self.num_features = stored.numel()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"


def make_activation(
    name: str,
    alpha: float = 0.0,
    layer_index: int = 1,
    *,
    num_features: int | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build a hidden-layer activation by name.

    Parameters
    ----------
    name
        ``"relu"``, ``"leaky_relu"`` (slope ``alpha``), ``"all_relu"`` (``alpha``, ``layer_index``)
        or ``"srelu"`` (needs ``num_features``; ``generator`` draws its initial values).
    alpha
        Left slope magnitude (leaky ReLU, All-ReLU).
    layer_index
        The paper's hidden-layer number for All-ReLU (first hidden layer = 1).
    num_features, generator
        For SReLU.

    Raises
    ------
    ValueError
        If ``name`` is unknown or a needed argument is missing or invalid.
    """
    if check_choice(name, ACTIVATIONS, "name") == "relu":
        return ReLU()
    if name == "leaky_relu":
        return LeakyReLU(_check_alpha(alpha))
    if name == "all_relu":
        return AllReLU(alpha, layer_index)
    if num_features is None:
        raise ValueError("num_features is required for name='srelu'")
    return SReLU(num_features, generator=generator)
