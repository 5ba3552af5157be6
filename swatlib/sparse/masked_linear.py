"""``MaskedLinear``: the masked baseline — a dense weight multiplied by a {0, 1} mask.

This is how nearly every sparse-training library simulates sparsity: memory and compute stay those of
the dense layer (SPEC "Masked"). swatlib keeps it as the reference the truly sparse
:class:`~swatlib.sparse.SparseLinear` is tested against (the *twin test*): it has the same constructor,
draws the identical topology and values from an equal generator, and offers the same topology interface
(``connections`` / ``set_connections`` / ``select_neurons``), so SET and Importance Pruning run on
either and must produce the same training trajectory.

Entries outside the mask stay exactly zero: the forward pass uses ``weight * mask``, so their gradient
is zero, and every optimizer here leaves a zero weight with a zero gradient at zero.

:class:`MaskedWeight` gives the same interface to a stock ``nn.Linear`` / ``nn.Conv2d`` (a mask buffer
and a gradient hook), so the topology algorithms run on convolutional networks too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from swatlib.densities import check_density
from swatlib.optim import replace_parameter
from swatlib.sparse.erdos_renyi import flat_keys
from swatlib.sparse.init import initial_connections
from swatlib.sparse.sparse_linear import check_connections, neuron_map

__all__ = ["MaskedLinear", "MaskedWeight", "masked_set_connections", "random_mask"]


@torch.no_grad()
def masked_set_connections(
    weight: nn.Parameter,
    mask: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    values: torch.Tensor,
    source: torch.Tensor | None,
    optimizer: torch.optim.Optimizer | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give a masked dense ``weight`` new connections; return the new mask and the sorted ``source``.

    The weight is read as the matrix ``(out, in)`` = ``weight.view(weight.shape[0], -1)`` (a conv
    kernel's input channels and positions form the columns); ``mask`` has the weight's shape.
    ``source`` indexes the current connections in row-major order (as ``connections()`` lists them,
    ``-1`` = new); the weight's optimizer state follows it and is zero off the new mask.

    Raises
    ------
    ValueError
        On mismatched lengths, indices out of range, or a repeated connection.
    """
    n_out = weight.shape[0]
    n_in = weight[0].numel()
    keys, order = check_connections(rows, cols, n_out, n_in, values=values, source=source)
    device = weight.device
    keys = keys.to(device)
    new_weight = torch.zeros_like(weight)
    new_weight.view(-1)[keys] = values[order].to(new_weight)
    dense_source = torch.full((weight.numel(),), -1, dtype=torch.int64, device=device)
    if source is not None:
        old_keys = mask.reshape(-1).nonzero().squeeze(1)
        inherits = source >= 0
        new_keys = flat_keys(rows[inherits], cols[inherits], n_in).to(device)
        dense_source[new_keys] = old_keys[source[inherits].to(device)]
    replace_parameter(weight, new_weight, dense_source, optimizer)
    new_mask = torch.zeros(weight.shape, dtype=torch.bool, device=device)
    new_mask.view(-1)[keys] = True
    sorted_source = torch.full(keys.shape, -1, dtype=torch.int64) if source is None else source[order]
    return new_mask, sorted_source


def _masked_connections(weight: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, cols, values)`` of a masked weight read as ``(out, in)``, row-major, detached."""
    matrix = mask.reshape(mask.shape[0], -1)
    rows, cols = matrix.nonzero(as_tuple=True)
    return rows, cols, weight.detach().reshape(matrix.shape)[rows, cols]


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
        return _masked_connections(self.weight, self.mask)

    @torch.no_grad()
    def set_connections(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        *,
        source: torch.Tensor | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> torch.Tensor:
        """Replace the connections; same contract (and return value) as :meth:`SparseLinear.set_connections`.

        ``source`` indexes the current connections in row-major order (as :meth:`connections` lists
        them); the optimizer state of the dense ``weight`` follows it, and is zero off the new mask.
        """
        self.mask, source = masked_set_connections(self.weight, self.mask, rows, cols, values, source,
                                                   optimizer)
        return source

    @torch.no_grad()
    def select_neurons(
        self,
        outputs: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> torch.Tensor:
        """Shrink to the given output / input neurons; same contract (and return value) as
        :meth:`SparseLinear.select_neurons`."""
        old_index = torch.cumsum(self.mask.reshape(-1), 0) - 1
        out_keep = (neuron_map(outputs, self.out_features, "outputs") >= 0).nonzero().squeeze(1)
        in_keep = (neuron_map(inputs, self.in_features, "inputs") >= 0).nonzero().squeeze(1)
        source = (out_keep[:, None] * self.in_features + in_keep[None, :]).reshape(-1)
        replace_parameter(self.weight, self.weight[out_keep][:, in_keep].clone(), source, optimizer)
        if self.bias is not None:
            replace_parameter(self.bias, self.bias[out_keep].clone(), out_keep, optimizer)
        self.mask = self.mask[out_keep][:, in_keep].clone()
        self.out_features, self.in_features = out_keep.numel(), in_keep.numel()
        return old_index[source[self.mask.reshape(-1)]]

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


def random_mask(shape: torch.Size, density: float, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """A boolean mask of ``shape`` with ``ceil(density·numel)`` (at least one) entries set, uniformly at random.

    One ``randperm`` of the whole tensor (masked layers are dense-sized anyway), drawn even at density 1
    so that the layers after it see the same random stream whatever this layer's density.
    """
    numel = math.prod(shape)
    count = min(numel, max(1, math.ceil(check_density(density) * numel - 1e-9)))
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:count]] = True
    return mask.view(shape).to(device)


class MaskedWeight:
    """The masked baseline for any ``nn.Linear`` / ``nn.Conv2d``: a {0, 1} mask on its dense weight.

    Gives a stock layer the topology interface of :class:`MaskedLinear` without replacing the module:
    a boolean buffer ``topology_mask`` is registered on it, the weight is zeroed outside the mask, and
    a gradient hook zeroes the weight's gradient there — so the *training trajectory* is that of the
    sparse method while memory and compute stay dense (SPEC "Masked"). The weight is read as the
    matrix ``(out, in)`` = ``weight.view(weight.shape[0], -1)``: for a conv kernel the columns are
    (input channel, kernel position) pairs. Functions registered with :meth:`observe_gradient` see
    the layer's *dense* gradient before it is masked (RigL grows from it).

    Parameters
    ----------
    module : nn.Module
        Has a ``weight`` parameter (``nn.Linear``, ``nn.Conv2d``, …).
    density : float, optional
        Random initial topology with ``ceil(density·numel)`` connections (:func:`random_mask`).
    mask : torch.Tensor, optional
        The initial topology itself (boolean, the weight's shape); give exactly one of the two.
    generator : torch.Generator, optional
        Randomness of the initial topology.

    Attributes
    ----------
    module : nn.Module
        The wrapped layer (its ``topology_mask`` buffer is saved in its state dict).
    init : str
        ``"torch_default"``: regrown weights are drawn like the layer's own default init.
    """

    init = "torch_default"

    def __init__(self, module: nn.Module, density: float | None = None, *, mask: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> None:
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
            raise ValueError(f"module must have a weight parameter of 2 or more dimensions, "
                             f"got {type(module).__name__}")
        if (density is None) == (mask is None):
            raise ValueError("give exactly one of density and mask")
        if mask is None:
            mask = random_mask(weight.shape, density, generator, weight.device)
        elif mask.shape != weight.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a boolean tensor of shape {tuple(weight.shape)}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        self.module = module
        self.out_features = weight.shape[0]
        self.in_features = weight[0].numel()
        self._observers: list = []
        module.register_buffer("topology_mask", mask.to(weight.device))
        with torch.no_grad():
            weight.mul_(module.topology_mask)
        self._hook = weight.register_hook(self._mask_gradient)

    def _mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        for observe in self._observers:
            observe(grad)
        return grad * self.module.topology_mask

    def observe_gradient(self, function) -> None:
        """Call ``function(dense_gradient)`` in every backward pass, before the gradient is masked."""
        self._observers.append(function)

    @property
    def weight(self) -> nn.Parameter:
        """The wrapped layer's dense weight."""
        return self.module.weight

    @property
    def nnz(self) -> int:
        """Number of existing connections."""
        return int(self.module.topology_mask.sum())

    @property
    def density(self) -> float:
        """``nnz / numel`` of the weight."""
        return self.nnz / self.module.weight.numel()

    def connections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, cols, values)`` of the existing connections of the ``(out, in)`` view, row-major."""
        return _masked_connections(self.module.weight, self.module.topology_mask)

    def set_connections(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, *,
                        source: torch.Tensor | None = None,
                        optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
        """Replace the connections; same contract (and return value) as :meth:`MaskedLinear.set_connections`."""
        self.module.topology_mask, source = masked_set_connections(
            self.module.weight, self.module.topology_mask, rows, cols, values, source, optimizer)
        return source

    def remove(self) -> None:
        """Detach the gradient hook (the mask stays as a buffer)."""
        self._hook.remove()
