"""Baselines for accuracy vs FLOPs: masked SET and RigL (swatlib.topology on MaskedWeight layers), meProp."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from swatlib.costmodel import layer_densities, layer_table
from swatlib.swat import SWATLayer, masked_rigl, masked_set, meprop, wrap_masked
from swatlib.topk import topk_mask


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))


def _train(model, optimizer, topology, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(8, 1, 14, 14, generator=g), torch.randint(0, 10, (8,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if topology.when == "optimizer_step":
            topology.step()


def _layers(model):
    return [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]


def _nnz(model):
    return [int(m.topology_mask.sum()) for m in _layers(model)]


def _weights_outside_masks_are_zero(model):
    return all(bool((m.weight[~m.topology_mask] == 0).all()) for m in _layers(model))


def test_masked_set_uses_er_densities_and_conserves_nnz():
    torch.manual_seed(0)
    model = _cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    topology = masked_set(model, density=0.2, epochs=3, optimizer=optimizer,
                          generator=torch.Generator().manual_seed(1))
    assert topology.when == "epoch"
    expected = layer_densities(layer_table(model, (1, 14, 14)), "er", 0.2)
    for module, density in zip(_layers(model), expected.values()):
        assert float(module.topology_mask.float().mean()) == pytest.approx(density, abs=1.0 / module.weight.numel())
    nnz = _nnz(model)
    masks = [m.topology_mask.clone() for m in _layers(model)]
    _train(model, optimizer, topology, steps=3)
    assert _weights_outside_masks_are_zero(model)            # the gradient hook kept them at zero
    topology.step()                                          # end of epoch 1: evolves
    assert _nnz(model) == nnz
    assert _weights_outside_masks_are_zero(model)
    changed = [not torch.equal(a, m.topology_mask) for a, m in zip(masks, _layers(model))]
    sparse = [d < 1.0 for d in expected.values()]
    assert changed[:-1] == sparse[:-1] and not changed[-1]   # the output layer never evolves
    for m in _layers(model):
        buffer = optimizer.state[m.weight]["momentum_buffer"]
        assert bool((buffer[~m.topology_mask] == 0).all())
    assert topology.step() and not topology.step()           # epoch 2 evolves, epoch 3 (the last) not


def test_masked_rigl_drops_small_weights_and_grows_by_gradient():
    torch.manual_seed(0)
    model = _cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    topology = masked_rigl(model, density=0.3, t_end=8, delta_t=4, optimizer=optimizer,
                           generator=torch.Generator().manual_seed(2))
    densities = [float(m.topology_mask.float().mean()) for m in _layers(model)]
    assert densities[0] == 1.0 and all(d == pytest.approx(0.3, abs=1e-3) for d in densities[1:])
    nnz = _nnz(model)
    _train(model, optimizer, topology, steps=3)
    masks = [m.topology_mask.clone() for m in _layers(model)]
    # Step 4 updates the topology: record the dense gradient RigL sees (before masking).
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(8, 1, 14, 14, generator=g), torch.randint(0, 10, (8,), generator=g)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    dense_grads = [topology._captured[i].clone() for i in range(1, len(_layers(model)))]
    assert all(bool((m.weight.grad[~m.topology_mask] == 0).all()) for m in _layers(model))
    optimizer.step()
    weights = [m.weight.detach().clone() for m in _layers(model)]
    assert topology.step()
    assert _nnz(model) == nnz
    fraction = 0.3 * (1 + math.cos(math.pi * 4 / 8)) / 2
    for layer, before, old_weight, grad in zip(_layers(model)[1:], masks[1:], weights[1:],
                                               dense_grads):
        after = layer.topology_mask
        # Dropped connections are zeroed (a dropped one may be grown again, at zero).
        dropped = before & (layer.weight == 0) & (old_weight != 0)
        kept = before & ~dropped
        grown = after & ~kept
        count = int(dropped.sum())
        assert 0 < count == int(grown.sum()) == math.floor(fraction * int(before.sum()))
        assert bool((layer.weight[grown] == 0).all())
        assert old_weight[dropped].abs().max() <= old_weight[kept].abs().min()
        assert grad[grown].min() >= grad[~kept & ~after].max()
    assert _weights_outside_masks_are_zero(model)


def test_masked_rigl_stops_after_t_end():
    model = _cnn()
    topology = masked_rigl(model, density=0.3, t_end=4, delta_t=2)
    assert [topology.due(t) for t in range(1, 9)] == [False, True, False, True, False, False, False, False]


@pytest.mark.parametrize(("make", "name"), [
    (lambda m: masked_set(m, density=0.0, epochs=2), "density"),
    (lambda m: masked_set(m, density=0.5, epochs=2, zeta=2.0), "zeta"),
    (lambda m: masked_set(m, density=0.5, epochs=2, regrow_init="normal"), "regrow_init"),
    (lambda m: masked_rigl(m, density=1.5, t_end=10), "density"),
    (lambda m: masked_rigl(m, density=0.5, t_end=10, alpha=-1.0), "alpha"),
    (lambda m: masked_rigl(m, density=0.5, t_end=10, delta_t=0), "delta_t"),
    (lambda m: wrap_masked(nn.Sequential(nn.ReLU()), 0.5, "er"), "no nn.Linear"),
])
def test_bad_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make(_cnn())


def test_meprop_is_dense_forward_with_topk_output_gradient():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    model = meprop(nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).double(),
                   density=0.25)
    model.load_state_dict(dense.state_dict(), strict=False)
    assert all(m.mode == "bwd-output-grad" and m.density == 0.25
               for m in model if isinstance(m, SWATLayer))
    x = torch.randn(5, 12, dtype=torch.float64)
    assert torch.equal(model(x), dense(x))
    dy = torch.randn(5, 3, dtype=torch.float64)
    model(x).backward(dy)
    dy_s = dy * topk_mask(dy, 0.25)
    hidden = torch.relu(F.linear(x, dense[0].weight, dense[0].bias)).detach()
    torch.testing.assert_close(model[2].weight.grad, dy_s.t() @ hidden)
    torch.testing.assert_close(model[2].bias.grad, dy_s.sum(0))
