"""``SparseLinear``: a truly sparse fully-connected layer — values + indices, nnz-proportional kernels.

The trainable state is one 1-D ``values`` parameter (one weight per existing connection) plus integer
index buffers; no tensor of size ``in_features × out_features`` exists anywhere, in the forward pass,
the backward pass, or the optimizer (SPEC §1, "truly sparse"). Kernels, chosen by measurement
(``benchmarks/csr_kernels.py``: batch 128, 784→1000 / 1000→1000 at ε = 20, float32, one thread, on a
shared 2-core AMD EPYC VM; benchmarks/README.md has the full story):

* the computation is **feature-major**: ``Xᵀ``, ``Yᵀ`` and ``dYᵀ`` are contiguous, ``Y`` is returned as
  the transposed view of ``Yᵀ``. Element-wise layers keep that layout, so between two ``SparseLinear``
  layers no transposed copy is made (only the model's input is copied once, in the first layer);
* forward ``Yᵀ = b + W Xᵀ`` (CSR ``W``, bias fused), backward ``dXᵀ = Wᵀ dYᵀ`` (computed on ``W``'s own
  CSR structure by a scatter, :func:`native.spmm_t`) and ``dW`` **only at the existing connections**
  — the SDDMM ``dW[k] = Σ_b dY[b, row_k]·X[b, col_k]``, never the dense outer product ``dYᵀ X`` — run
  in swatlib's native kernels (:mod:`swatlib.sparse.native`, C compiled on first use), against
  torch's CSR ``addmm``, ``sparse.mm`` on ``Wᵀ`` and ``sparse_sampled_addmm``, which are the fallback
  (no C compiler, other devices or dtypes, :func:`native.disabled`) and the reference the tests
  compare with (``benchmarks/csr_kernels.py`` times both); the bias gradient is ``dYᵀ.sum(1)``;
* rejected on the way, all with torch's kernels: COO (5.2 / 5.7 ms forward), ``X @ Wᵀ_csr`` (dense ×
  CSR, 5.2 / 5.7 ms, not nnz-proportional), the CSC view ``W.t()`` for ``dX`` (3–6× slower), a
  gather-based SDDMM ``(dY[:, rows] * X[:, cols]).sum(0)`` (7.3 / 7.5 ms), batch-major operands (a
  transposed copy and a zero-fill per call); ``nn.Linear`` takes 2.3 / 3.0 ms for the forward alone;
* memory per connection: the layer keeps only int32 column indices and int64 row pointers (4 B per
  connection plus 8 B per output neuron), so in training a connection costs 16 B with its float32
  value, gradient and momentum (``tests/test_sparse_linear.py`` counts them). An earlier version kept
  int64 rows, columns, the transposed CSR indices and a permutation for a gather in ``dX`` (32 B of
  indices); the scatter over ``W``'s own structure sums in the same order and gives the same bits.
  torch's fallback kernels need int64 indices and the transposed structure: they are built on the
  first fallback call and cached with the topology (so only a layer that uses them pays for them).

Connections are kept sorted row-major (by ``row·in_features + col``). Topology algorithms change them
through :meth:`SparseLinear.set_connections` and :meth:`SparseLinear.select_neurons`, which keep the
same ``values`` parameter object (optimizers hold a reference to it) and move its optimizer state
along with :func:`swatlib.optim.replace_parameter`.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from swatlib.checks import check_choice
from swatlib.optim import replace_parameter
from swatlib.sparse import native
from swatlib.sparse.erdos_renyi import connection_count, flat_keys
from swatlib.sparse.init import INITS, initial_connections

__all__ = ["SparseLinear", "check_connections", "neuron_map"]


#: Largest ``in_features``: column indices are int32.
_INT32_MAX = 2**31 - 1


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


# torch warns once per process that CSR support is "beta" (the kernels used here are tested against
# the dense reference): spend that one warning silently at import instead of in a user's first step.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    _csr(torch.zeros(2, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0), (1, 1))


def _compressed_pointers(major: torch.Tensor, size: int) -> torch.Tensor:
    """CSR row pointers (length ``size + 1``) of connections sorted by the ``major`` index."""
    pointers = torch.zeros(size + 1, dtype=torch.int64, device=major.device)
    torch.cumsum(torch.bincount(major, minlength=size), 0, out=pointers[1:])
    return pointers


def check_connections(
    rows: torch.Tensor,
    cols: torch.Tensor,
    n_out: int,
    n_in: int,
    **per_connection: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the connections of an ``n_out × n_in`` layer; return their sorted flat keys and the order.

    Parameters
    ----------
    rows, cols
        Output and input index of each connection.
    n_out, n_in
        Layer shape.
    **per_connection
        Further tensors (e.g. ``values=``, ``source=``) that must hold one entry per connection;
        ``None`` entries are skipped.

    Raises
    ------
    ValueError
        Naming the offending argument, if the lengths differ, an index is out of range, or a
        connection repeats.
    """
    if rows.dim() != 1 or rows.shape != cols.shape:
        raise ValueError(f"rows and cols must be 1-D of equal length, "
                         f"got {tuple(rows.shape)} and {tuple(cols.shape)}")
    for name, tensor in per_connection.items():
        if tensor is not None and tensor.shape != rows.shape:
            raise ValueError(f"{name} must have the shape of rows {tuple(rows.shape)}, got {tuple(tensor.shape)}")
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n_out):
        raise ValueError(f"rows must lie in [0, {n_out})")
    if cols.numel() and (int(cols.min()) < 0 or int(cols.max()) >= n_in):
        raise ValueError(f"cols must lie in [0, {n_in})")
    keys = flat_keys(rows, cols, n_in)
    if keys.numel() > 1 and bool((keys[1:] > keys[:-1]).all()):  # already row-major: no sort
        return keys, torch.arange(keys.numel(), device=keys.device)
    keys, order = torch.sort(keys)
    if keys.numel() > 1 and not bool((keys[1:] > keys[:-1]).all()):
        raise ValueError("rows and cols must not repeat a connection")
    return keys, order


def neuron_map(keep: torch.Tensor | None, size: int, name: str) -> torch.Tensor:
    """Old neuron index → new index (-1 if dropped), from the sorted, unique indices ``keep``.

    Raises
    ------
    ValueError
        If ``keep`` (reported as ``name``) is empty, unsorted, repeats or lies outside [0, size).
    """
    if keep is None:
        return torch.arange(size)
    if keep.dim() != 1 or keep.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D index tensor")
    increasing = keep.numel() == 1 or bool((keep[1:] > keep[:-1]).all())
    if int(keep.min()) < 0 or int(keep.max()) >= size or not increasing:
        raise ValueError(f"{name} must be sorted, unique indices in [0, {size})")
    mapping = torch.full((size,), -1, dtype=torch.int64)
    mapping[keep] = torch.arange(keep.numel())
    return mapping


def _feature_major(t: torch.Tensor) -> torch.Tensor:
    """``tᵀ`` as a contiguous tensor; free when ``t`` is already the transposed view of one."""
    return t.t().contiguous()


def _transposed(crow: torch.Tensor, col: torch.Tensor, n_out: int, n_in: int, cache: dict) -> dict:
    """What torch's fallback kernels need: int64 ``col``, and ``Wᵀ``'s CSR indices with the permutation
    ``perm`` (``values[perm]`` are ``Wᵀ``'s values). Built once per topology and device into ``cache``."""
    if crow.device not in cache:
        rows = _rows(crow)
        col = col.to(torch.int64)
        order = torch.sort(flat_keys(col, rows, n_out)).indices
        cache[crow.device] = {"col": col, "t_crow": _compressed_pointers(col, n_in), "t_col": rows[order],
                              "perm": order}
    return cache[crow.device]


def _rows(crow: torch.Tensor) -> torch.Tensor:
    """int64 row index of every connection, from the CSR row pointers."""
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)


class _SparseLinearFunction(torch.autograd.Function):
    """``Y = X Wᵀ + b`` for a CSR ``W`` whose values (and the optional bias) are differentiable inputs.

    The computation is feature-major: it multiplies ``W`` by the contiguous ``Xᵀ`` and returns ``Y`` as
    the transposed view of a contiguous ``Yᵀ``. Element-wise layers keep that layout, so the next
    ``SparseLinear`` receives an ``X`` whose ``Xᵀ`` is contiguous (no copy), and the gradient arriving
    in backward is laid out the same way (``dYᵀ`` contiguous, no copy). ``cache`` holds what torch's
    fallback kernels need (:func:`_transposed`), for the topology of ``crow`` and ``col``.
    """

    @staticmethod
    def forward(ctx, x, values, bias, crow, col, cache, n_out, n_in):  # type: ignore[override]
        x_t = _feature_major(x)
        if native.usable(x_t, values, *(() if bias is None else (bias,))):
            y_t = native.spmm(crow, col, values, x_t, bias)
        else:
            weight = _csr(crow, _transposed(crow, col, n_out, n_in, cache)["col"], values, (n_out, n_in))
            y_t = torch.sparse.mm(weight, x_t) if bias is None else torch.addmm(bias[:, None], weight, x_t)
        # x_t is x's own memory for a feature-major x; for a batch-major x (the model's input) it is the
        # one transposed copy, which the weight gradient needs anyway.
        ctx.save_for_backward(x_t, values, crow, col)
        ctx.shape = (n_out, n_in)
        ctx.cache = cache
        return y_t.t()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x_t, values, crow, col = ctx.saved_tensors
        n_out, n_in = ctx.shape
        grad_x = grad_values = grad_bias = None
        grad_t = _feature_major(grad_out)
        fast = native.usable(grad_t, x_t, values)
        slow = None if fast else _transposed(crow, col, n_out, n_in, ctx.cache)
        if ctx.needs_input_grad[0]:
            if fast:
                grad_x = native.spmm_t(crow, col, values, grad_t, n_in).t()
            else:
                weight_t = _csr(slow["t_crow"], slow["t_col"], torch.index_select(values, 0, slow["perm"]),
                                (n_in, n_out))
                grad_x = torch.sparse.mm(weight_t, grad_t).t()
        if ctx.needs_input_grad[1]:
            if fast:
                grad_values = native.sddmm(crow, col, grad_t, x_t)
            else:
                pattern = _csr(crow, slow["col"], values, (n_out, n_in))
                grad_values = torch.sparse.sampled_addmm(pattern, grad_t, x_t.t(), beta=0.0).values()
        if ctx.needs_input_grad[2]:
            grad_bias = grad_t.sum(1)
        return grad_x, grad_values, grad_bias, None, None, None, None, None


class SparseLinear(nn.Module):
    """Truly sparse linear layer ``y = x Wᵀ + b`` with ``W`` stored as values + indices.

    Parameters
    ----------
    in_features, out_features
        Dense shape of the layer.
    density
        Kept fraction in (0, 1]; give exactly one of ``density`` and ``epsilon``.
    epsilon
        Erdős–Rényi ε > 0: ``density = min(1, ε·(in + out)/(in·out))`` (SPEC §1).
    bias
        Whether to add a (dense, zero-initialised) bias.
    init
        Weight distribution, one of ``"he_uniform"``, ``"xavier"``, ``"normal"``
        (:mod:`swatlib.sparse.init`; fan-in/fan-out of the dense shape). SET regrows from it too.
    generator
        Draws the topology, then the values; :class:`~swatlib.sparse.MaskedLinear` built from an equal
        generator starts from the identical topology and values.
    device, dtype
        Of the ``values`` and ``bias`` parameters.

    Attributes
    ----------
    values : nn.Parameter
        The ``nnz`` weights, in row-major order of their connections.
    bias : nn.Parameter or None
        ``out_features`` biases.
    crow_indices : torch.Tensor
        int64 CSR row pointers (``out_features + 1``), a buffer.
    col_indices : torch.Tensor
        int32 input index of every connection (``nnz``), a buffer.
    row_indices : torch.Tensor
        int64 output index of every connection, derived from ``crow_indices`` on each access (O(nnz)).

    The state dict holds ``row_indices`` and ``col_indices`` as int64 (the format of checkpoints and
    of :mod:`swatlib.parallel`'s messages); loading accepts any integer dtype.

    Raises
    ------
    ValueError
        On a bad size, ``density`` ∉ (0, 1], ``epsilon`` ≤ 0, both or neither given, or an unknown ``init``.
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
        self._setup(rows, cols, values.to(device), in_features, out_features, init,
                    torch.zeros(out_features, dtype=values.dtype, device=device) if bias else None)

    def _setup(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        in_features: int,
        out_features: int,
        init: str,
        bias: torch.Tensor | None,
    ) -> None:
        check_choice(init, INITS, "init")
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.values = nn.Parameter(values)
        self.bias = None if bias is None else nn.Parameter(bias)
        self._set_indices(rows, cols)

    @classmethod
    def from_dense(
        cls, linear: nn.Module, density: float | None = None, *, init: str = "he_uniform"
    ) -> SparseLinear:
        """Sparse copy of a dense layer (anything with ``weight`` of shape ``(out, in)`` and ``bias``).

        Parameters
        ----------
        linear
            The dense layer, e.g. ``nn.Linear`` or :class:`~swatlib.sparse.MaskedLinear`.
        density
            ``None``: keep exactly the non-zero weights (a masked layer's connections). Otherwise keep
            the ``round(density·in·out)`` weights of largest magnitude (ties broken arbitrarily).
        init
            Distribution recorded for later regrowth.
        """
        weight = linear.weight.detach()
        if weight.dim() != 2:
            raise ValueError(f"linear.weight must be 2-D, got shape {tuple(weight.shape)}")
        n_out, n_in = weight.shape
        if density is None:
            keys = weight.reshape(-1).nonzero().squeeze(1)
        else:
            count = connection_count(density, n_in, n_out)
            keys = weight.reshape(-1).abs().topk(count).indices.sort().values
        bias = getattr(linear, "bias", None)
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._setup(keys // n_in, keys % n_in, weight.reshape(-1)[keys].clone(), n_in, n_out, init,
                     None if bias is None else bias.detach().clone())
        return layer

    # ------------------------------------------------------------------ topology
    def _set_indices(self, rows: torch.Tensor, cols: torch.Tensor) -> None:
        """(Re)build the index buffers from row-major sorted, unique connections."""
        if self.in_features > _INT32_MAX:
            raise ValueError(f"in_features must be at most {_INT32_MAX} (int32 column indices), "
                             f"got {self.in_features}")
        device = self.values.device
        self.register_buffer("crow_indices", _compressed_pointers(rows.to(torch.int64), self.out_features)
                             .to(device), persistent=False)
        self.register_buffer("col_indices", cols.to(device=device, dtype=torch.int32), persistent=False)
        self._fallback: dict = {}  # torch's kernels' indices for this topology (_transposed), on first use

    @property
    def row_indices(self) -> torch.Tensor:
        """int64 output index of every connection (derived from ``crow_indices``, O(nnz))."""
        return _rows(self.crow_indices)

    def connections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, cols, values)`` of the existing connections, row-major, detached; int64 indices."""
        return self.row_indices, self.col_indices.to(torch.int64), self.values.detach()

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
        """Replace the connections (any number, same layer shape), keeping the ``values`` parameter object.

        Parameters
        ----------
        rows, cols, values
            The new connections, in any order, without repeats.
        source
            For each new connection, the index (into the current ``values``) of the connection whose
            optimizer state it inherits, or -1 for a new connection (zero state). ``None``: all new.
        optimizer
            Optimizer whose per-element state of ``values`` follows (see
            :func:`swatlib.optim.replace_parameter`).

        Returns
        -------
        torch.Tensor
            ``source`` in the layer's new (row-major) order: the old → new connection map
            (:class:`swatlib.topology.ConnectionMap`).

        Raises
        ------
        ValueError
            On mismatched lengths, indices out of range, or a repeated connection.
        """
        keys, order = check_connections(rows, cols, self.out_features, self.in_features,
                                        values=values, source=source)
        if source is None:
            source = torch.full(rows.shape, -1, dtype=torch.int64)
        source = source[order].to(self.values.device)
        replace_parameter(self.values, values[order].to(self.values), source, optimizer)
        self._set_indices(keys // self.in_features, keys % self.in_features)
        return source

    @torch.no_grad()
    def select_neurons(
        self,
        outputs: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> torch.Tensor:
        """Shrink the layer to the given output and input neurons (Importance Pruning).

        Connections touching a dropped neuron disappear, the rest are renumbered; the bias keeps the
        entries of ``outputs``; optimizer state follows.

        Parameters
        ----------
        outputs, inputs
            Sorted, unique indices of the output / input neurons to keep (``None``: keep all).
        optimizer
            Optimizer whose state follows.

        Returns
        -------
        torch.Tensor
            The old index of every remaining connection, in the new order (the old → new map).
        """
        out_map = neuron_map(outputs, self.out_features, "outputs")
        in_map = neuron_map(inputs, self.in_features, "inputs")
        rows, cols, _ = self.connections()
        new_rows, new_cols = out_map[rows], in_map[cols]
        kept = ((new_rows >= 0) & (new_cols >= 0)).nonzero().squeeze(1)
        replace_parameter(self.values, self.values[kept].clone(), kept, optimizer)
        if self.bias is not None and outputs is not None:
            replace_parameter(self.bias, self.bias[outputs].clone(), outputs, optimizer)
        self.out_features = int((out_map >= 0).sum())
        self.in_features = int((in_map >= 0).sum())
        self._set_indices(new_rows[kept], new_cols[kept])
        return kept

    # ------------------------------------------------------------------ module API
    @property
    def nnz(self) -> int:
        """Number of existing connections."""
        return self.values.numel()

    @property
    def density(self) -> float:
        """``nnz / (in_features·out_features)``."""
        return self.nnz / (self.in_features * self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x Wᵀ + b`` for ``x`` of shape ``(*, in_features)``.

        For a 2-D ``x`` the result is the transposed view of a contiguous ``(out_features, batch)``
        tensor (not contiguous itself; see the module docstring).
        """
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"input must have {self.in_features} features in its last dimension, "
                             f"got shape {tuple(x.shape)}")
        flat = x.reshape(-1, self.in_features)
        y = _SparseLinearFunction.apply(flat, self.values, self.bias, self.crow_indices, self.col_indices,
                                        self._fallback, self.out_features, self.in_features)
        return y.reshape(*x.shape[:-1], self.out_features)

    def to_dense(self) -> torch.Tensor:
        """The weight as a dense ``(out_features, in_features)`` tensor (detached; for tests and plots)."""
        dense = self.values.new_zeros(self.out_features, self.in_features)
        rows, cols, values = self.connections()
        return dense.index_put_((rows, cols), values)

    def get_extra_state(self) -> dict:
        """Shape and init name, so that a state dict restores a pruned or evolved layer exactly."""
        return {"in_features": self.in_features, "out_features": self.out_features, "init": self.init}

    def set_extra_state(self, state: dict) -> None:
        """Counterpart of :meth:`get_extra_state` (the shape is applied before the tensors load)."""
        self.init = state["init"]

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        """Parameters, then the connections as int64 ``row_indices`` / ``col_indices``, then the extra state."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        extra = destination.pop(prefix + "_extra_state")
        rows, cols, _ = self.connections()
        destination[prefix + "row_indices"] = rows
        destination[prefix + "col_indices"] = cols
        destination[prefix + "_extra_state"] = extra

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        extra = state_dict.get(prefix + "_extra_state")
        rows = state_dict.get(prefix + "row_indices")
        cols = state_dict.get(prefix + "col_indices")
        values = state_dict.get(prefix + "values")
        if strict:
            missing_keys.extend(prefix + name for name, t in (("row_indices", rows), ("col_indices", cols))
                                if t is None)
        if extra is not None and rows is not None and cols is not None and values is not None:
            n_out, n_in = extra["out_features"], extra["in_features"]
            keys, _ = check_connections(rows, cols, n_out, n_in, values=values)
            if not bool((flat_keys(rows, cols, n_in) == keys).all()):
                raise ValueError(f"{prefix}row_indices, col_indices must be sorted row-major")
            replace_parameter(self.values, values.new_empty(values.shape), torch.full(values.shape, -1))
            if self.bias is not None:
                replace_parameter(self.bias, self.bias.new_empty(n_out), torch.full((n_out,), -1))
            self.out_features, self.in_features = n_out, n_in
            self._set_indices(rows, cols)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        # the connections are not buffers of that name: they were handled above, not unexpected
        for name in ("row_indices", "col_indices"):
            if prefix + name in unexpected_keys:
                unexpected_keys.remove(prefix + name)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, "
                f"density={self.density:.4g}, bias={self.bias is not None}, init={self.init!r}")

