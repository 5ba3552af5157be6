"""SparseLinear, MaskedLinear and the Erdős–Rényi topology: correctness against the dense reference."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from swatlib.optim import DecoupledSGD
from swatlib.sparse import (
    MaskedLinear,
    SparseLinear,
    connection_count,
    draw_values,
    epsilon_to_density,
    random_connections,
    native,
    sample_free_positions,
    state_bytes,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=["native", "torch"])
def kernels(request):
    """Run the test with swatlib's native CSR kernels and again with torch's (the fallback)."""
    if request.param == "native" and not native.available():
        pytest.skip("native kernels unavailable (no C compiler)")
    with native.disabled() if request.param == "torch" else contextlib.nullcontext():
        yield request.param


def _dense_reference(layer: SparseLinear, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None):
    """``x Wᵀ + b`` through a dense weight built from ``values`` at the layer's connections."""
    weight = torch.zeros(layer.out_features, layer.in_features, dtype=values.dtype)
    weight = weight.index_put((layer.row_indices, layer.col_indices), values)
    y = x @ weight.t()
    return y if bias is None else y + bias


# ---------------------------------------------------------------- Erdős–Rényi rule and sampling
def test_epsilon_rule_reproduces_the_fashion_mnist_parameter_count():
    sizes = [784, 1000, 1000, 1000, 10]
    counts = [connection_count(epsilon_to_density(20, n_in, n_out), n_in, n_out)
              for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    assert counts == [35_680, 40_000, 40_000, 10_000]  # last layer dense: density capped at 1
    assert sum(counts) == 125_680  # ≈ 126k weights (SPEC §1)


def test_random_connections_never_materialise_the_dense_matrix():
    # A 10^6 x 10^6 layer would be 4 TB dense; 1000 connections must cost next to nothing.
    rows, cols = random_connections(10**6, 10**6, 1000, _gen(0))
    keys = rows * 10**6 + cols
    assert keys.numel() == 1000 and bool((keys[1:] > keys[:-1]).all())
    assert int(rows.max()) < 10**6 and int(cols.max()) < 10**6


@pytest.mark.parametrize(("n_out", "n_in", "count"), [(10, 10, 5), (4, 5, 12)])  # rejection / enumeration
def test_sampling_is_uniform_over_positions(n_out, n_in, count):
    g = _gen(1)
    hits = torch.zeros(n_out * n_in)
    draws = 3000
    for _ in range(draws):
        hits[sample_free_positions(n_out, n_in, count, generator=g)] += 1
    expected = draws * count / (n_out * n_in)
    assert stats.chisquare(hits.numpy(), np.full(n_out * n_in, expected)).pvalue > 1e-4


def test_sampling_avoids_occupied_positions_and_rejects_impossible_requests():
    occupied = torch.tensor([0, 3, 4, 7], dtype=torch.int64)
    for seed in range(20):
        drawn = sample_free_positions(3, 3, 5, occupied, _gen(seed))
        assert sorted(drawn.tolist()) == [1, 2, 5, 6, 8]
    with pytest.raises(ValueError, match="count"):
        sample_free_positions(3, 3, 6, occupied, _gen(0))


@settings(max_examples=40, deadline=None)
@given(n_in=st.integers(1, 60), n_out=st.integers(1, 60), density=st.floats(0.001, 1.0),
       seed=st.integers(0, 2**31))
def test_topology_indices_unique_sorted_in_range(n_in, n_out, density, seed):
    layer = SparseLinear(n_in, n_out, density=density, generator=_gen(seed))
    keys = layer.row_indices * n_in + layer.col_indices
    assert layer.nnz == connection_count(density, n_in, n_out) == keys.numel()
    assert bool((keys[1:] > keys[:-1]).all())
    assert int(layer.row_indices.min()) >= 0 and int(layer.row_indices.max()) < n_out
    assert int(layer.col_indices.min()) >= 0 and int(layer.col_indices.max()) < n_in
    x = torch.randn(3, n_in, generator=_gen(seed + 1))
    torch.testing.assert_close(layer(x), x @ layer.to_dense().t() + layer.bias)


# ---------------------------------------------------------------- init
def test_init_distributions_use_the_dense_fan():
    he = draw_values("he_uniform", 600, 100, 50_000, _gen(0))
    xavier = draw_values("xavier", 500, 100, 50_000, _gen(0))
    normal = draw_values("normal", 500, 100, 50_000, _gen(0), torch.float64)
    assert float(he.abs().max()) <= (6 / 600) ** 0.5 and float(he.abs().max()) > 0.99 * (6 / 600) ** 0.5
    assert float(xavier.abs().max()) <= (6 / 600) ** 0.5
    assert abs(float(normal.std()) - 0.1) < 0.002 and normal.dtype == torch.float64
    layer = SparseLinear(30, 20, density=0.5, generator=_gen(0))
    assert torch.count_nonzero(layer.bias) == 0


def test_masked_and_sparse_start_identical_from_equal_generators():
    for init in ("he_uniform", "xavier", "normal"):
        sparse = SparseLinear(50, 40, epsilon=5, init=init, generator=_gen(3))
        masked = MaskedLinear(50, 40, epsilon=5, init=init, generator=_gen(3))
        assert torch.equal(sparse.to_dense(), masked.to_dense())
        assert masked.nnz == sparse.nnz and masked.density == pytest.approx(sparse.density)
        assert torch.equal(masked.mask, sparse.to_dense() != 0)


# ---------------------------------------------------------------- storage is truly sparse
def test_trainable_state_is_values_plus_index_buffers():
    layer = SparseLinear(300, 200, density=0.05, generator=_gen(0))
    params = dict(layer.named_parameters())
    assert set(params) == {"values", "bias"}
    assert params["values"].dim() == 1 and params["values"].numel() == layer.nnz
    buffers = dict(layer.named_buffers())
    assert set(buffers) == {"crow_indices", "col_indices"}
    assert buffers["crow_indices"].dtype == torch.int64 and buffers["crow_indices"].numel() == 201
    assert buffers["col_indices"].dtype == torch.int32 and buffers["col_indices"].numel() == layer.nnz
    state = layer.state_dict()
    assert list(state) == ["values", "bias", "row_indices", "col_indices", "_extra_state"]
    assert state["row_indices"].dtype == state["col_indices"].dtype == torch.int64  # the checkpoint format


@pytest.mark.skipif(not native.available(), reason="native kernels unavailable (no C compiler)")
def test_a_connection_costs_at_most_20_bytes_in_training_gradient_and_momentum_included():
    # 4000 -> 500 at density 0.1: 200,000 connections, so per-neuron storage (bias, row pointers) is
    # ~0.05 B per connection and the ratio is what a connection costs.
    layer = SparseLinear(4000, 500, density=0.1, generator=_gen(0))
    optimizer = DecoupledSGD(layer.parameters(), lr=0.01)
    x = torch.randn(16, 4000, generator=_gen(1), requires_grad=True)
    layer(x).square().sum().backward()
    optimizer.step()
    per_connection = state_bytes(layer, optimizer) / layer.nnz
    # float32 value + gradient + momentum (12 B) + int32 column index (4 B)
    assert 16 <= per_connection <= 20, per_connection
    with native.disabled():  # torch's fallback kernels build (and keep) int64 and transposed indices
        layer(x).square().sum().backward()
    assert state_bytes(layer, optimizer) / layer.nnz > 40


def test_state_bytes_counts_shared_storage_once():
    layer = SparseLinear(30, 20, density=0.5, generator=_gen(0))
    alone = state_bytes(layer)
    assert alone == 4 * layer.nnz + 4 * 20 + 8 * 21 + 4 * layer.nnz
    layer.values.grad = layer.values.detach()  # the same storage as the values: not counted twice
    assert state_bytes(layer) == alone


class _LargestStrided(TorchDispatchMode):
    """Records the largest strided (dense) tensor any op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.layout == torch.strided:
                self.largest = max(self.largest, tensor.numel())
        return out


def test_no_dense_in_by_out_tensor_in_forward_or_backward(kernels):
    layer = SparseLinear(2000, 1500, density=0.002, generator=_gen(0))
    x = torch.randn(4, 2000, requires_grad=True)
    with _LargestStrided() as probe:
        layer(x).square().sum().backward()
    # Batch x features and nnz are all ≤ 8000; anything dense over the weight would be 3,000,000.
    assert probe.largest <= max(4 * 2000, layer.nnz)
    assert layer.values.grad.shape == (layer.nnz,)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize(("n_in", "n_out", "density", "batch"),
                         [(7, 5, 0.4, 3), (12, 9, 0.1, 1), (6, 6, 1.0, 4)])
def test_gradcheck_float64(n_in, n_out, density, batch, kernels):
    layer = SparseLinear(n_in, n_out, density=density, generator=_gen(n_in), dtype=torch.float64)
    x = torch.randn(batch, n_in, dtype=torch.float64, requires_grad=True)
    values = torch.randn(layer.nnz, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(n_out, dtype=torch.float64, requires_grad=True)

    def run(x, values, bias):
        return torch.func.functional_call(layer, {"values": values, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(run, (x, values, bias))


def test_gradients_match_the_dense_reference_restricted_to_connections(kernels):
    layer = SparseLinear(40, 30, density=0.2, generator=_gen(5), dtype=torch.float64)
    x = torch.randn(2, 3, 40, dtype=torch.float64, requires_grad=True)  # extra leading dim
    layer(x).sin().sum().backward()
    dense_weight = layer.to_dense().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    (x_ref @ dense_weight.t() + layer.bias.detach()).sin().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.values.grad, dense_weight.grad[layer.row_indices, layer.col_indices],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_feature_major_chain_matches_the_dense_reference(bias, kernels):
    # Y comes back as the transposed view of a contiguous Yᵀ, so a following layer reads Xᵀ without a
    # copy and its gradient arrives feature-major; either layout must give the dense results.
    a = SparseLinear(12, 9, density=0.3, bias=bias, generator=_gen(7), dtype=torch.float64)
    b = SparseLinear(9, 5, density=0.5, bias=bias, generator=_gen(8), dtype=torch.float64)
    if bias:
        with torch.no_grad():
            a.bias.normal_(generator=_gen(9))
            b.bias.normal_(generator=_gen(10))
    x = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    hidden = a(x)
    assert hidden.t().is_contiguous()
    b(torch.tanh(hidden)).square().sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    weights = [layer.to_dense().requires_grad_() for layer in (a, b)]
    biases = [None if layer.bias is None else layer.bias.detach().clone().requires_grad_() for layer in (a, b)]
    h = x_ref @ weights[0].t() + (0 if biases[0] is None else biases[0])
    out = torch.tanh(h) @ weights[1].t() + (0 if biases[1] is None else biases[1])
    out.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    for layer, weight, bias_ref in zip((a, b), weights, biases):
        torch.testing.assert_close(layer.values.grad, weight.grad[layer.row_indices, layer.col_indices],
                                   rtol=1e-12, atol=1e-12)
        if bias_ref is not None:
            torch.testing.assert_close(layer.bias.grad, bias_ref.grad, rtol=1e-12, atol=1e-12)


def test_rows_without_connections_and_empty_layers_work(kernels):
    layer = SparseLinear(5, 8, density=0.05, generator=_gen(0), dtype=torch.float64)  # 2 of 40
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.values.grad.shape == (2,)
    layer.set_connections(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64),
                          torch.empty(0, dtype=torch.float64))
    assert layer.nnz == 0
    torch.testing.assert_close(layer(x), layer.bias.expand(3, 8))


# ---------------------------------------------------------------- twin test
class _MLP(nn.Module):
    def __init__(self, layer_type, sizes, seed):
        super().__init__()
        g = _gen(seed)
        self.linears = nn.ModuleList(layer_type(a, b, epsilon=3, generator=g, dtype=torch.float64)
                                     for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.linears[:-1]:
            x = torch.relu(layer(x))
        return self.linears[-1](x)


def _make_optimizer(kind, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    if kind == "adam":
        return torch.optim.Adam(params, lr=0.01)
    return DecoupledSGD(params, lr=0.05, momentum=0.9, weight_decay=2e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "authors"])
def test_twin_truly_sparse_matches_masked_training(optimizer, kernels):
    sizes = [30, 25, 20, 4]
    sparse, masked = _MLP(SparseLinear, sizes, 11), _MLP(MaskedLinear, sizes, 11)
    opt_s = _make_optimizer(optimizer, sparse.parameters())
    opt_m = _make_optimizer(optimizer, masked.parameters())
    data = torch.Generator().manual_seed(0)
    for _ in range(8):
        x = torch.randn(16, 30, generator=data, dtype=torch.float64)
        y = torch.randint(0, 4, (16,), generator=data)
        losses = []
        for model, opt in ((sparse, opt_s), (masked, opt_m)):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-12, abs=1e-12)
    for s_layer, m_layer in zip(sparse.linears, masked.linears):
        torch.testing.assert_close(s_layer.to_dense(), m_layer.to_dense(), rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(s_layer.bias, m_layer.bias, rtol=1e-11, atol=1e-12)
        assert torch.count_nonzero(m_layer.weight * ~m_layer.mask) == 0


# ---------------------------------------------------------------- conversion and persistence
def test_from_dense_and_to_dense():
    dense = nn.Linear(20, 10)
    half = SparseLinear.from_dense(dense, density=0.5)
    assert half.nnz == 100
    kept = half.to_dense() != 0
    assert float(dense.weight.detach()[kept].abs().min()) >= float(dense.weight.detach()[~kept].abs().max())
    torch.testing.assert_close(half.bias, dense.bias)
    masked = MaskedLinear(20, 10, density=0.3, generator=_gen(0))
    copy = SparseLinear.from_dense(masked)
    assert torch.equal(copy.to_dense(), masked.to_dense()) and copy.nnz == masked.nnz


@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear])
def test_state_dict_round_trips_even_after_topology_changes(layer_type, tmp_path):
    layer = layer_type(30, 20, density=0.2, generator=_gen(0))
    layer.select_neurons(outputs=torch.tensor([0, 2, 5, 19]), inputs=torch.arange(0, 30, 2))
    torch.save(layer.state_dict(), tmp_path / "layer.pt")
    fresh = layer_type(30, 20, density=0.5, generator=_gen(1))
    fresh.load_state_dict(torch.load(tmp_path / "layer.pt"))
    assert (fresh.out_features, fresh.in_features, fresh.nnz) == (4, 15, layer.nnz)
    x = torch.randn(3, 15)
    torch.testing.assert_close(fresh(x), layer(x))


def test_double_and_dtype_keep_indices_integer():
    layer = SparseLinear(10, 10, density=0.3, generator=_gen(0)).double()
    assert layer.values.dtype == torch.float64 and layer.row_indices.dtype == torch.int64
    assert layer(torch.randn(2, 10, dtype=torch.float64)).dtype == torch.float64


# ---------------------------------------------------------------- set_connections
def test_set_connections_keeps_the_parameter_and_remaps_state():
    layer = SparseLinear(6, 4, density=0.5, generator=_gen(0))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.randn(2, 6)).sum().backward()
    opt.step()
    param = layer.values
    old_rows, old_cols, old_values = (t.clone() for t in layer.connections())
    old_momentum = opt.state[param]["momentum_buffer"].clone()
    # keep connections 3 and 1, add one new (given out of order)
    free = next((r, c) for r in range(4) for c in range(6)
                if not bool(((old_rows == r) & (old_cols == c)).any()))
    rows = torch.tensor([int(old_rows[3]), free[0], int(old_rows[1])])
    cols = torch.tensor([int(old_cols[3]), free[1], int(old_cols[1])])
    layer.set_connections(rows, cols, torch.tensor([float(old_values[3]), 0.5, float(old_values[1])]),
                          source=torch.tensor([3, -1, 1]), optimizer=opt)
    assert layer.values is param and layer.nnz == 3
    momentum = opt.state[param]["momentum_buffer"]
    values = layer.values.detach()
    for k in range(3):
        r, c = int(layer.row_indices[k]), int(layer.col_indices[k])
        if (r, c) == free:
            assert float(values[k]) == 0.5 and float(momentum[k]) == 0.0
        else:
            j = int(((old_rows == r) & (old_cols == c)).nonzero())
            assert float(values[k]) == float(old_values[j]) and float(momentum[k]) == float(old_momentum[j])
    layer(torch.randn(2, 6)).sum().backward()
    opt.step()  # the optimizer keeps working on the resized parameter


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear])
@pytest.mark.parametrize(("kwargs", "name"), [
    ({"density": 0.0}, "density"), ({"density": 1.5}, "density"), ({"density": -0.1}, "density"),
    ({"epsilon": 0}, "epsilon"), ({"epsilon": -2.0}, "epsilon"),
    ({}, "density"), ({"density": 0.5, "epsilon": 1.0}, "epsilon"),
    ({"density": 0.5, "init": "uniform"}, "init"),
])
def test_bad_constructor_arguments_name_the_argument(layer_type, kwargs, name):
    with pytest.raises(ValueError, match=name):
        layer_type(10, 10, **kwargs)


@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear])
def test_bad_sizes_name_the_argument(layer_type):
    with pytest.raises(ValueError, match="in_features"):
        layer_type(0, 10, density=0.5)
    with pytest.raises(ValueError, match="out_features"):
        layer_type(10, 2.5, density=0.5)
    layer = layer_type(10, 5, density=0.5)
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(3, 11))


@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear])
def test_bad_connections_name_the_argument(layer_type):
    layer = layer_type(4, 3, density=0.5)
    two, three = torch.tensor([0, 1]), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="values"):
        layer.set_connections(two, two, torch.ones(3))
    with pytest.raises(ValueError, match="cols"):
        layer.set_connections(two, three, torch.ones(2))
    with pytest.raises(ValueError, match="rows"):
        layer.set_connections(torch.tensor([0, 3]), two, torch.ones(2))
    with pytest.raises(ValueError, match="repeat"):
        layer.set_connections(torch.tensor([1, 1]), torch.tensor([2, 2]), torch.ones(2))
    with pytest.raises(ValueError, match="source"):
        layer.set_connections(two, two, torch.ones(2), source=three)
    with pytest.raises(ValueError, match="outputs"):
        layer.select_neurons(outputs=torch.tensor([2, 1]))
