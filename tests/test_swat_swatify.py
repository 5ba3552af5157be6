"""swatify (SWAT-U / ERK / M), SWAT-M redistribution and the measured FLOP ledger."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from swatlib.costmodel import MeasuredLedger, layer_densities, layer_table, nominal_ledger, plan
from swatlib.swat import (MaskReLU, SWATConv2d, SWATLayer, SWATLinear, redistributable_layers, swat_densities,
                          swatify)
from swatlib.topology import SWATM
from swatlib.topk import topk_count


def _cnn(act=nn.ReLU):
    """Small CNN on 1×14×14 inputs; with ``nn.Tanh`` and average pooling no tensor has natural zeros."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), act(), nn.Conv2d(8, 16, 3, padding=1), act(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 7 * 7, 32), act(), nn.Linear(32, 10))


def _step(model, optimizer, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 1, 14, 14, generator=g), torch.randint(0, 10, (16,), generator=g)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def test_swatify_replaces_layers_and_shares_parameters():
    torch.manual_seed(0)
    model = _cnn()
    params = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # built before swatify: still valid
    swatify(model, density=0.2)
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    kinds = [type(m) for m in model]
    assert kinds.count(SWATConv2d) == 2 and kinds.count(SWATLinear) == 2
    assert kinds.count(MaskReLU) == 3 and nn.ReLU not in kinds
    assert [m.ledger_name for m in model if isinstance(m, SWATLayer)] == ["0", "2", "6", "8"]
    before = model[0].weight.detach().clone()
    _step(model, optimizer)
    assert not torch.equal(before, model[0].weight)


def test_swatify_keeps_the_first_layer_dense_and_the_last_sparse():
    model = swatify(_cnn(), density=0.1)
    densities = [m.density for m in model if isinstance(m, SWATLayer)]
    assert densities == [1.0, 0.1, 0.1, 0.1]
    model = swatify(_cnn(), density=0.1, first_layer_dense=False)
    assert [m.density for m in model if isinstance(m, SWATLayer)] == [0.1] * 4


def test_swatify_passes_settings_to_every_layer():
    model = swatify(_cnn(), density=0.3, period=4, structured="filter", mode="fwd-weights",
                    index_format="indices")
    for layer in (m for m in model if isinstance(m, SWATLayer)):
        assert (layer.period, layer.structured, layer.mode, layer.index_format) == (
            4, "filter", "fwd-weights", "indices")


def test_swatify_trains():
    torch.manual_seed(0)
    model = swatify(_cnn(), density=0.3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = [_step(model, optimizer, seed=0) for _ in range(15)]
    assert losses[-1] < losses[0]


@settings(max_examples=30, deadline=None)
@given(density=st.floats(0.02, 1.0), first_layer_dense=st.booleans(),
       widths=st.lists(st.integers(2, 40), min_size=2, max_size=5))
def test_erk_budget_met_within_one_weight_per_layer(density, first_layer_dense, widths):
    shapes = [(widths[0], 3, 3, 3)] + [(o, i, 3, 3) for i, o in zip(widths, widths[1:])]
    shapes.append((10, widths[-1]))
    numels = [math.prod(s) for s in shapes]
    try:
        densities = swat_densities(shapes, "erk", density, first_layer_dense=first_layer_dense)
    except ValueError as err:                     # budget smaller than the dense first layer
        assert first_layer_dense and numels[0] > density * sum(numels)
        assert "first_layer_dense" in str(err)
        return
    assert all(0.0 < d <= 1.0 for d in densities)
    if first_layer_dense:
        assert densities[0] == 1.0
    budget = density * sum(numels)
    assert math.isclose(sum(d * n for d, n in zip(densities, numels)), budget, rel_tol=1e-9)
    kept = sum(topk_count(n, d) for d, n in zip(densities, numels))
    assert budget - 1e-6 <= kept < budget + len(shapes)


def test_erk_matches_the_cost_model():
    model = _cnn()
    table = layer_table(model, (1, 14, 14))
    expected = layer_densities(table, "erk", 0.2)
    swatify(model, method="erk", density=0.2, first_layer_dense=False)
    got = {m.ledger_name: m.density for m in model if isinstance(m, SWATLayer)}
    assert got == pytest.approx(expected)


def test_swat_m_conserves_the_budget_and_follows_momentum():
    torch.manual_seed(0)
    model = swatify(_cnn(), method="m", density=0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    redistribution = SWATM(redistributable_layers(model), optimizer)
    assert redistribution.names == ["2", "6", "8"]              # the dense first layer stays out
    budget = redistribution.budget
    assert budget == pytest.approx(0.2 * sum(redistribution.numels))
    for step in range(4):
        _step(model, optimizer, seed=step)
        assert redistribution.step() == {}                      # moves no connections
        densities = redistribution.densities()
        numels = redistribution.numels
        assert sum(d * n for d, n in zip(densities.values(), numels)) == pytest.approx(budget)
        assert all(0.0 < d <= 1.0 for d in densities.values())
    assert model[0].density == 1.0
    assert len(set(densities.values())) > 1                   # no longer uniform
    scores = redistribution.scores()
    free = [d < 1.0 for d in densities.values()]
    ratios = [d / s for d, s, f in zip(densities.values(), scores, free) if f]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-6)  # density ∝ mean |momentum|


def test_swat_m_needs_momentum():
    model = swatify(_cnn(), method="m", density=0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    redistribution = SWATM(redistributable_layers(model), optimizer)
    _step(model, optimizer)
    with pytest.raises(ValueError, match="momentum"):
        redistribution.step()
    with pytest.raises(ValueError, match="swatify"):
        SWATM(redistributable_layers(_cnn()), optimizer)


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(density=0.0), "density"), (dict(density=2.0), "density"),
    (dict(density=0.5, method="v"), "method"), (dict(density=0.5, mode="sparse"), "mode"),
    (dict(density=0.5, period=0), "period"), (dict(density=0.5, structured="block"), "structured"),
    (dict(density=0.5, index_format="coo"), "index_format"),
])
def test_swatify_bad_arguments_name_the_argument(kwargs, name):
    model = _cnn()
    with pytest.raises(ValueError, match=name):
        swatify(model, **kwargs)
    assert isinstance(model[0], nn.Conv2d) and not isinstance(model[0], SWATLayer)


def test_swatify_needs_layers():
    with pytest.raises(ValueError, match="nn.Linear"):
        swatify(nn.Sequential(nn.ReLU()), density=0.5)


# --- measured ledger ---------------------------------------------------------------------------

def _measured(model, batch=16):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, 1, 14, 14, generator=g), torch.randint(0, 10, (batch,), generator=g)
    ledger = MeasuredLedger()
    with ledger, ledger.watch(model):
        F.cross_entropy(model(x), y).backward()
        ledger.end_step(batch)
    return ledger.ledger()


def _by_key(ledger):
    return {(e.layer, e.phase): e for e in ledger.entries}


@pytest.mark.parametrize("density", [0.1, 0.3, 0.7])
def test_measured_ledger_equals_nominal(density):
    torch.manual_seed(0)
    model = swatify(_cnn(act=nn.Tanh), density=density)
    measured = _measured(model)
    table = layer_table(model, (1, 14, 14))
    nominal = nominal_ledger(table, plan(table, "swat-u", density, batch_size=16), 16)
    got, want = _by_key(measured), _by_key(nominal)
    assert set(got) == set(want)
    for key, entry in want.items():
        # Top-K keeps k = ceil(density·numel): at most one element per tensor above nominal.
        for role in ("weight", "act"):
            nominal_density = getattr(entry, f"density_{role}")
            numel = getattr(entry, f"numel_{role}")
            assert (nominal_density - 1e-9 <= getattr(got[key], f"density_{role}")
                    <= nominal_density + 1.0 / numel + 1e-9), (key, role)
        if density >= 0.3:
            assert got[key].density_out == entry.density_out == 1.0, key
        else:
            # At 10 % some input columns of a 784×32 W_s keep no weight at all, so dX — and the
            # dY of the layer below — has structural zeros: measured work below nominal.
            assert 0.5 < got[key].density_out <= 1.0, key
    assert measured.extra_flops(("topk",)) == pytest.approx(nominal.extra_flops(("topk",)))


def test_density_one_ledger_matches_dense():
    torch.manual_seed(0)
    dense = _cnn()
    swat = swatify(_cnn(), density=1.0)
    swat.load_state_dict(dense.state_dict(), strict=False)
    got, want = _by_key(_measured(swat)), _by_key(_measured(dense))
    assert got == want


def test_swatified_model_has_a_layer_table():
    table = layer_table(swatify(_cnn(), density=0.5), (1, 14, 14))
    assert [row.kind for row in table].count("act") == 3
    assert [row.name for row in table if row.kind in ("conv", "linear")] == ["0", "2", "6", "8"]
