"""``MaskedLinear``: the masked baseline — a dense weight multiplied by a {0, 1} mask.

This is how nearly every sparse-training library simulates sparsity: memory and compute stay those of
the dense layer (SPEC "Masked"). swatlib keeps it as the reference the truly sparse
:class:`~swatlib.sparse.SparseLinear` is tested against (the *twin test*): it has the same constructor,
draws the identical topology and values from an equal generator, and offers the same topology interface
(``connections`` / ``set_connections`` / ``select_neurons``), so SET and Importance Pruning run on
either and must produce the same training trajectory.

Entries outside the mask stay exactly zero: the forward pass uses ``weight * mask``, so their gradient
is zero, and every optimizer here leaves a zero weight with a zero gradient at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from swatlib.optim import replace_parameter
from swatlib.sparse.erdos_renyi import flat_keys
from swatlib.sparse.init import initial_connections
from swatlib.sparse.sparse_linear import check_connections, neuron_map

__all__ = ["MaskedLinear"]


class MaskedLinear(nn.Module):
    """Dense-storage sparse linear layer ``y = x (W ⊙ M)ᵀ + b``.

    Parameters
    ----------
    in_features, out_features, density, epsilon, bias, init, generator, device, dtype
        As for :class:`~swatlib.sparse.SparseLinear` (same draw from the same generator).

    Attributes
    ----------
    weight : nn.Parameter
        Dense ``(out_features, in_features)`` weight, zero outside the mask.
    mask : torch.Tensor
        Boolean buffer of the same shape: the existing connections.
    bias : nn.Parameter or None
        ``out_features`` biases.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        density: float | None = None,
        epsilon: float | None = None,
        bias: bool = True,
        init: str = "he_uniform",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        rows, cols, values = initial_connections(in_features, out_features, density, init, generator, dtype,
                                                 epsilon=epsilon)
        weight = torch.zeros(out_features, in_features, dtype=values.dtype)
        weight[rows, cols] = values
        mask = torch.zeros(out_features, in_features, dtype=torch.bool)
        mask[rows, cols] = True
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.weight = nn.Parameter(weight.to(device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=values.dtype, device=device)) if bias else None
        self.register_buffer("mask", mask.to(device))

    @property
    def nnz(self) -> int:
        """Number of existing connections (``True`` entries of the mask)."""
        return int(self.mask.sum())

    @property
    def density(self) -> float:
        """``nnz / (in_features·out_features)``."""
        return self.nnz / (self.in_features * self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (W ⊙ M)ᵀ + b`` for ``x`` of shape ``(*, in_features)``."""
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"input must have {self.in_features} features in its last dimension, "
                             f"got shape {tuple(x.shape)}")
        return F.linear(x, self.weight * self.mask, self.bias)

    def to_dense(self) -> torch.Tensor:
        """The effective weight ``W ⊙ M`` (detached)."""
        return (self.weight * self.mask).detach()

    def connections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, cols, values)`` of the existing connections, row-major, detached."""
        rows, cols = self.mask.nonzero(as_tuple=True)
        return rows, cols, self.weight.detach()[rows, cols]

    @torch.no_grad()
    def set_connections(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        *,
        source: torch.Tensor | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Replace the connections; same contract as :meth:`SparseLinear.set_connections`.

        ``source`` indexes the current connections in row-major order (as :meth:`connections` lists
        them); the optimizer state of the dense ``weight`` follows it, and is zero off the new mask.
        """
        keys, order = check_connections(rows, cols, self.out_features, self.in_features,
                                        values=values, source=source)
        device = self.weight.device
        keys = keys.to(device)
        new_weight = torch.zeros_like(self.weight)
        new_weight.view(-1)[keys] = values[order].to(new_weight)
        dense_source = torch.full((self.weight.numel(),), -1, dtype=torch.int64, device=device)
        if source is not None:
            old_keys = self.mask.reshape(-1).nonzero().squeeze(1)
            inherits = source >= 0
            new_keys = flat_keys(rows[inherits], cols[inherits], self.in_features).to(device)
            dense_source[new_keys] = old_keys[source[inherits].to(device)]
        replace_parameter(self.weight, new_weight, dense_source, optimizer)
        self.mask = new_weight.new_zeros(new_weight.shape, dtype=torch.bool)
        self.mask.view(-1)[keys] = True

    @torch.no_grad()
    def select_neurons(
        self,
        outputs: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Shrink to the given output / input neurons; same contract as :meth:`SparseLinear.select_neurons`."""
        out_keep = (neuron_map(outputs, self.out_features, "outputs") >= 0).nonzero().squeeze(1)
        in_keep = (neuron_map(inputs, self.in_features, "inputs") >= 0).nonzero().squeeze(1)
        source = (out_keep[:, None] * self.in_features + in_keep[None, :]).reshape(-1)
        replace_parameter(self.weight, self.weight[out_keep][:, in_keep].clone(), source, optimizer)
        if self.bias is not None:
            replace_parameter(self.bias, self.bias[out_keep].clone(), out_keep, optimizer)
        self.mask = self.mask[out_keep][:, in_keep].clone()
        self.out_features, self.in_features = out_keep.numel(), in_keep.numel()

    def get_extra_state(self) -> dict:
        """The init name (the shape is carried by the tensors themselves)."""
        return {"init": self.init}

    def set_extra_state(self, state: dict) -> None:
        """Counterpart of :meth:`get_extra_state`."""
        self.init = state["init"]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        weight = state_dict.get(prefix + "weight")
        if weight is not None and weight.dim() == 2 and weight.shape != self.weight.shape:
            # A pruned layer's state dict is smaller: take its shape before the tensors load.
            n_out, n_in = weight.shape
            replace_parameter(self.weight, self.weight.new_empty(n_out, n_in),
                              torch.full((n_out * n_in,), -1))
            if self.bias is not None:
                replace_parameter(self.bias, self.bias.new_empty(n_out), torch.full((n_out,), -1))
            self.mask = self.mask.new_zeros(n_out, n_in)
            self.out_features, self.in_features = n_out, n_in
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, "
                f"density={self.density:.4g}, bias={self.bias is not None}, init={self.init!r}")
