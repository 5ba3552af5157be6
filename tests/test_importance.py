"""Neuron importance and Importance Pruning: the percentile rule, physical removal, schedules, protocol."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from swatlib.activations import AllReLU, SReLU
from swatlib.importance import hidden_sizes, neuron_importance, neurons_to_prune, prune_neurons
from swatlib.sparse import MaskedLinear, SparseLinear
from swatlib.topology import SCHEDULES, ImportancePruning


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyMLP(nn.Module):
    """Test-local model following the protocol: ``linears`` and per-hidden-layer ``activations``."""

    def __init__(self, sizes, layer_type=SparseLinear, activation="srelu", density=0.5, seed=0,
                 dtype=torch.float32):
        super().__init__()
        g = _gen(seed)

        def linear(a, b):
            if layer_type is nn.Linear:
                return nn.Linear(a, b, dtype=dtype)
            return layer_type(a, b, density=density, generator=g, dtype=dtype)

        self.linears = nn.ModuleList(linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activations = nn.ModuleList(
            SReLU(n, generator=g, dtype=dtype) if activation == "srelu" else AllReLU(0.5, i + 1)
            for i, n in enumerate(sizes[1:-1]))

    def forward(self, x, hidden_masks=None):
        for index, (layer, act) in enumerate(zip(self.linears[:-1], self.activations)):
            x = act(layer(x))
            if hidden_masks is not None:
                x = x * hidden_masks[index]
        return self.linears[-1](x)


# ---------------------------------------------------------------- importance and the percentile rule
@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear, nn.Linear])
def test_importance_is_sum_of_absolute_incoming_weights(layer_type):
    layer = TinyMLP([12, 9, 2], layer_type).linears[0]
    dense = layer.to_dense() if hasattr(layer, "to_dense") else layer.weight.detach()
    torch.testing.assert_close(neuron_importance(layer), dense.abs().sum(1).double())


def test_percentile_rule_is_at_or_below_with_numpy_interpolation():
    importance = torch.tensor([5.0, 1.0, 3.0, 3.0, 2.0, 8.0, 3.0, 0.5, 9.0, 4.0])
    for p in (0, 10, 20, 35, 50, 99.9):
        threshold = np.percentile(importance.numpy(), p)
        expected = [j for j, v in enumerate(importance.tolist()) if v <= threshold]
        assert neurons_to_prune(importance, p).tolist() == expected
    assert neurons_to_prune(importance, 0).tolist() == [7]           # only the minimum
    assert neurons_to_prune(importance, 35).tolist() == [1, 2, 3, 4, 6, 7]  # ties at the threshold go


def test_never_prunes_every_neuron():
    # The authors' code selected every neuron under numpy >= 2; all-equal importances are the edge case.
    assert neurons_to_prune(torch.zeros(5), 20).tolist() == [1, 2, 3, 4]
    assert neurons_to_prune(torch.tensor([2.0]), 50).tolist() == []
    assert neurons_to_prune(torch.tensor([1.0, 1.0, 3.0]), 99).tolist() == [0, 1]


# ---------------------------------------------------------------- physical removal
@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear, nn.Linear])
def test_removal_is_equivalent_to_silencing_the_pruned_neurons(layer_type):
    model = TinyMLP([10, 16, 12, 3], layer_type, seed=1, dtype=torch.float64)
    reference = copy.deepcopy(model)
    pruned = [neurons_to_prune(neuron_importance(layer), 25) for layer in model.linears[:-1]]
    masks = []
    for size, drop in zip((16, 12), pruned):
        mask = torch.ones(size, dtype=torch.float64)
        mask[drop] = 0.0
        masks.append(mask)
    counts = prune_neurons(model, 25)
    assert counts == [p.numel() for p in pruned] and all(c > 0 for c in counts)
    assert hidden_sizes(model) == [16 - counts[0], 12 - counts[1]]
    assert model.linears[1].in_features == hidden_sizes(model)[0]
    assert model.linears[2].in_features == hidden_sizes(model)[1]
    assert model.linears[0].bias.numel() == hidden_sizes(model)[0]
    assert model.activations[0].num_features == hidden_sizes(model)[0]
    x = torch.randn(7, 10, dtype=torch.float64)
    torch.testing.assert_close(model(x), reference(x, masks), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear])
def test_pruned_model_state_dict_loads_into_a_fresh_model(layer_type):
    model = TinyMLP([10, 16, 12, 3], layer_type, seed=1)
    prune_neurons(model, 30)
    fresh = TinyMLP([10, 16, 12, 3], layer_type, seed=2)
    fresh.load_state_dict(model.state_dict())
    assert hidden_sizes(fresh) == hidden_sizes(model) and fresh.activations[0].num_features == hidden_sizes(model)[0]
    x = torch.randn(4, 10)
    torch.testing.assert_close(fresh(x), model(x))


def test_optimizer_state_follows_the_surviving_parameters():
    model = TinyMLP([8, 10, 4], SparseLinear, seed=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 8)).square().sum().backward()
    opt.step()
    dense_momentum = torch.zeros(10, 8)
    first = model.linears[0]
    dense_momentum[first.row_indices, first.col_indices] = opt.state[first.values]["momentum_buffer"]
    bias_momentum = opt.state[first.bias]["momentum_buffer"].clone()
    drop = neurons_to_prune(neuron_importance(first), 30)
    keep = torch.tensor([j for j in range(10) if j not in set(drop.tolist())])
    prune_neurons(model, 30, opt)
    after = torch.zeros(keep.numel(), 8)
    after[first.row_indices, first.col_indices] = opt.state[first.values]["momentum_buffer"]
    torch.testing.assert_close(after, dense_momentum[keep])
    torch.testing.assert_close(opt.state[first.bias]["momentum_buffer"], bias_momentum[keep])
    model(torch.randn(5, 8)).square().sum().backward()  # training goes on with the shrunk model
    opt.step()


@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear, nn.Linear])
def test_zero_incoming_mode_keeps_shapes_and_outgoing_weights(layer_type):
    model = TinyMLP([10, 16, 3], layer_type, activation="all_relu", seed=3)
    second = model.linears[1]
    outgoing = (second.to_dense() if layer_type is not nn.Linear else second.weight.detach()).clone()
    first = model.linears[0]
    drop = neurons_to_prune(neuron_importance(first), 20)
    incoming = int((first.to_dense() if layer_type is not nn.Linear else first.weight)[drop].count_nonzero())
    nnz_before = first.nnz if layer_type is not nn.Linear else None
    assert prune_neurons(model, 20, mode="zero_incoming") == [drop.numel()]
    assert (first.in_features, first.out_features) == (10, 16)
    assert torch.count_nonzero(neuron_importance(first)[drop]) == 0
    if layer_type is not nn.Linear:
        assert first.nnz == nnz_before - incoming  # removed, not regrown
    after = second.to_dense() if layer_type is not nn.Linear else second.weight.detach()
    assert torch.equal(after, outgoing)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 20), min_size=3, max_size=5), density=st.floats(0.05, 1.0),
       percentile=st.floats(0.0, 99.99), seed=st.integers(0, 2**31), rounds=st.integers(1, 4),
       layer_type=st.sampled_from([SparseLinear, MaskedLinear, nn.Linear]))
def test_pruning_never_empties_a_layer_and_keeps_both_sides_consistent(sizes, density, percentile, seed, rounds,
                                                                       layer_type):
    model = TinyMLP(sizes, layer_type, density=density, seed=seed)
    for _ in range(rounds):
        before = hidden_sizes(model)
        counts = prune_neurons(model, percentile)
        after = hidden_sizes(model)
        assert all(n >= 1 for n in after)
        assert [b - c for b, c in zip(before, counts)] == after
        for index, layer in enumerate(model.linears):
            if index > 0:
                assert layer.in_features == model.linears[index - 1].out_features
            if isinstance(layer, SparseLinear):
                assert layer.nnz == 0 or (int(layer.row_indices.max()) < layer.out_features
                                          and int(layer.col_indices.max()) < layer.in_features)
        assert model.linears[0].in_features == sizes[0] and model.linears[-1].out_features == sizes[-1]
        assert model(torch.randn(2, sizes[0])).shape == (2, sizes[-1])


def test_twin_pruning_matches_between_sparse_and_masked():
    models = [TinyMLP([10, 14, 12, 3], layer_type, seed=5, dtype=torch.float64)
              for layer_type in (SparseLinear, MaskedLinear)]
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.01) for m in models]
    data = _gen(0)
    for step in range(6):
        x = torch.randn(8, 10, generator=data, dtype=torch.float64)
        losses = []
        for model, opt in zip(models, optimizers):
            loss = model(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-12, abs=1e-12)
        if step == 2:
            assert prune_neurons(models[0], 20, optimizers[0]) == prune_neurons(models[1], 20, optimizers[1])


def test_sequential_models_are_read_in_module_order():
    g = _gen(0)
    model = nn.Sequential(SparseLinear(6, 8, density=0.5, generator=g), SReLU(8, generator=g), nn.Dropout(0.3),
                          MaskedLinear(8, 5, density=0.5, generator=g), nn.ReLU(), nn.Linear(5, 2))
    counts = prune_neurons(model, 40)
    assert hidden_sizes(model) == [8 - counts[0], 5 - counts[1]]
    assert model[1].num_features == model[0].out_features == model[3].in_features
    assert model[5].in_features == model[3].out_features
    assert model.eval()(torch.randn(3, 6)).shape == (3, 2)


# ---------------------------------------------------------------- schedules
def test_named_schedules_and_timing():
    model = TinyMLP([6, 10, 2])
    paper = ImportancePruning.from_schedule(model, "paper", start_epoch=200)
    authors = ImportancePruning.from_schedule(model, "authors", start_epoch=200, mode="zero_incoming")
    assert (paper.every, paper.percentile) == (10, 20.0)
    assert SCHEDULES["paper"] == {"every": 10, "percentile": 20.0}
    assert (authors.every, authors.percentile, authors.mode) == (20, 10.0, "zero_incoming")
    assert [e for e in range(190, 245) if paper.due(e)] == [200, 210, 220, 230, 240]
    assert [e for e in range(190, 245) if authors.due(e)] == [200, 220, 240]
    authors_timing = ImportancePruning.from_schedule(model, "authors", start_epoch=200, timing="authors")
    assert [e for e in range(190, 245) if authors_timing.due(e)] == [221, 241]
    schedule = ImportancePruning(model, start_epoch=1, every=2, percentile=30)
    assert schedule.step() and hidden_sizes(model)[0] < 10 and schedule.removed[0] > 0   # epoch 1
    assert schedule.step() == {}                                                          # epoch 2


@pytest.mark.parametrize(("call", "name"), [
    (lambda: ImportancePruning(TinyMLP([4, 5, 2]), start_epoch=0, every=10, percentile=100), "percentile"),
    (lambda: ImportancePruning(TinyMLP([4, 5, 2]), start_epoch=0, every=10, percentile=-1), "percentile"),
    (lambda: ImportancePruning(TinyMLP([4, 5, 2]), start_epoch=0, every=0, percentile=20), "every"),
    (lambda: ImportancePruning(TinyMLP([4, 5, 2]), start_epoch=-1, every=10, percentile=20), "start_epoch"),
    (lambda: ImportancePruning(TinyMLP([4, 5, 2]), start_epoch=0, every=10, percentile=20, mode="shrink"), "mode"),
    (lambda: ImportancePruning(TinyMLP([4, 5, 2]), start_epoch=0, every=10, percentile=20, timing="x"), "timing"),
    (lambda: ImportancePruning.from_schedule(TinyMLP([4, 5, 2]), "fast"), "schedule"),
    (lambda: prune_neurons(TinyMLP([4, 5, 2]), 100.0), "percentile"),
    (lambda: prune_neurons(nn.Sequential(nn.Linear(3, 2)), 10), "hidden"),
    (lambda: neurons_to_prune(torch.ones(3), float("nan")), "percentile"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
