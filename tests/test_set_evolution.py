"""SET evolution: the removal rule, regrowth, conserved nnz, optimizer state, and O(nnz) memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from swatlib.optim import DecoupledSGD
from swatlib.sparse import MaskedLinear, SparseLinear
from swatlib.topology import SET, evolvable_layers


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _layer_with_values(values: list[float], n_in: int = 10, n_out: int = 10, layer_type=SparseLinear):
    """A layer whose connections are the first ``len(values)`` positions, holding ``values``."""
    layer = layer_type(n_in, n_out, density=0.5, generator=_gen(0), dtype=torch.float64)
    keys = torch.arange(len(values))
    layer.set_connections(keys // n_in, keys % n_in, torch.tensor(values, dtype=torch.float64))
    return layer


def _connection_set(layer) -> dict[tuple[int, int], float]:
    rows, cols, values = layer.connections()
    return {(int(r), int(c)): float(v) for r, c, v in zip(rows, cols, values)}


@pytest.mark.parametrize("layer_type", [SparseLinear, MaskedLinear])
def test_removes_zeta_of_smallest_positive_and_largest_negative(layer_type):
    positives = [0.1 * k for k in range(1, 11)]          # 10 positives: 3 smallest go
    negatives = [-0.05 * k for k in range(1, 21)]        # 20 negatives: 6 closest to zero go
    layer = _layer_with_values(positives + negatives, layer_type=layer_type)
    before = _connection_set(layer)
    change = SET([layer], zeta=0.3, regrow_init="zero", generator=_gen(1)).evolve_layer(layer)
    assert change.grown.numel() == 9 and change.removed.numel() == 9 and layer.nnz == 30
    after = _connection_set(layer)
    removed = {value for key, value in before.items() if after.get(key) != value}
    expected = set(positives[:3]) | set(negatives[:6])
    assert removed == expected
    kept = {key: value for key, value in before.items() if value not in expected}
    assert all(after[key] == value for key, value in kept.items())
    assert sorted(v for k, v in after.items() if k not in kept) == [0.0] * 9


def test_exact_zeros_are_removed_and_replaced():
    layer = _layer_with_values([0.0, 0.0, 1.0, 2.0, -1.0])
    assert SET([layer], zeta=0.0, generator=_gen(0)).evolve_layer(layer).grown.numel() == 2
    assert layer.nnz == 5 and torch.count_nonzero(layer.values) == 5  # regrown from he-uniform


@pytest.mark.parametrize("regrow_init", ["init", "zero"])
def test_regrown_values_follow_regrow_init(regrow_init):
    layer = SparseLinear(400, 300, density=0.05, generator=_gen(0))
    before = _connection_set(layer)
    SET([layer], regrow_init=regrow_init, generator=_gen(1)).step()
    new = [v for k, v in _connection_set(layer).items() if before.get(k) != v]
    assert len(new) > 1000
    if regrow_init == "zero":
        assert set(new) == {0.0}
    else:
        bound = (6 / 400) ** 0.5
        assert all(0 < abs(v) <= bound for v in new)


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=0.01),
    lambda p: DecoupledSGD(p, lr=0.1),
])
def test_optimizer_state_dropped_for_removed_and_zero_for_new(make_opt):
    # Density 1: every free position is a just-removed one, so regrowth re-draws removed positions,
    # which must still count as new connections with fresh state.
    layer = SparseLinear(8, 6, density=1.0, generator=_gen(0))
    opt = make_opt(layer.parameters())
    for _ in range(2):
        layer(torch.randn(5, 8, generator=_gen(2))).square().sum().backward()
        opt.step()
        opt.zero_grad()
    values_before = layer.values.detach().clone()
    state_before = {k: v.clone() for k, v in opt.state[layer.values].items() if v.shape == values_before.shape}
    SET(evolvable_layers(nn.Sequential(layer, nn.Linear(6, 2))), zeta=0.3, optimizer=opt, generator=_gen(3)).step()
    assert layer.nnz == 48
    state = opt.state[layer.values]
    values = layer.values.detach()
    removed_values = set()
    for sign in (1, -1):
        same = values_before[values_before * sign > 0]
        removed_values |= set(same[(same * sign).argsort()[: int(0.3 * same.numel())]].tolist())
    for k in range(48):  # row-major position k is the same before and after at density 1
        if float(values_before[k]) in removed_values:
            assert all(float(state[key][k]) == 0.0 for key in state_before), k
        else:
            assert float(values[k]) == float(values_before[k])
            assert all(float(state[key][k]) == float(state_before[key][k]) for key in state_before), k
    layer(torch.randn(5, 8)).sum().backward()
    opt.step()


def test_output_layer_is_never_evolved_and_layers_can_be_listed():
    g = _gen(0)
    model = nn.Sequential(SparseLinear(20, 20, density=0.3, generator=g), nn.ReLU(),
                          SparseLinear(20, 20, density=0.3, generator=g), nn.ReLU(),
                          SparseLinear(20, 5, density=0.5, generator=g))
    assert evolvable_layers(model) == [model[0], model[2]]
    output_before = model[4].to_dense().clone()
    changes = SET(evolvable_layers(model), generator=_gen(1)).step()
    assert sorted(changes) == [0, 1] and all(c.grown.numel() > 0 for c in changes.values())
    assert torch.equal(model[4].to_dense(), output_before)
    hidden_before = model[2].to_dense().clone()
    assert list(SET([model[0]], generator=_gen(2)).step()) == [0]
    assert torch.equal(model[2].to_dense(), hidden_before)

    class WithLinears(nn.Module):  # the explicit protocol: dense output layer, sparse hidden ones
        def __init__(self):
            super().__init__()
            self.linears = nn.ModuleList([SparseLinear(4, 6, density=0.5), MaskedLinear(6, 6, density=0.5),
                                          nn.Linear(6, 2)])

    with_linears = WithLinears()
    assert evolvable_layers(with_linears) == list(with_linears.linears[:2])


@settings(max_examples=40, deadline=None)
@given(n_in=st.integers(1, 40), n_out=st.integers(1, 40), density=st.floats(0.01, 1.0),
       zeta=st.floats(0.0, 1.0), regrow=st.sampled_from(["init", "zero"]), seed=st.integers(0, 2**31),
       layer_type=st.sampled_from([SparseLinear, MaskedLinear]))
def test_evolution_conserves_nnz_and_keeps_indices_valid(n_in, n_out, density, zeta, regrow, seed, layer_type):
    layer = layer_type(n_in, n_out, density=density, generator=_gen(seed))
    nnz = layer.nnz
    evolution = SET([layer], zeta=zeta, regrow_init=regrow, generator=_gen(seed + 1))
    for _ in range(3):
        before = layer.connections()[2].clone()
        change = evolution.step()[0]
        rows, cols, values = layer.connections()
        survived = change.source >= 0  # the map says where every survivor went
        assert torch.equal(values[survived], before[change.source[survived]])
        assert change.removed.numel() == change.grown.numel()
        keys = rows * n_in + cols
        assert layer.nnz == nnz == keys.numel()
        assert bool((keys[1:] > keys[:-1]).all())
        assert 0 <= int(rows.min()) and int(rows.max()) < n_out
        assert 0 <= int(cols.min()) and int(cols.max()) < n_in
        if isinstance(layer, SparseLinear):  # derived CSR buffers agree with the connections
            torch.testing.assert_close(layer(torch.eye(n_in)), layer.to_dense().t() + layer.bias)


def test_twin_training_with_evolution_matches_masked():
    sizes = [12, 16, 16, 3]
    models, optimizers = [], []
    for layer_type in (SparseLinear, MaskedLinear):
        g = _gen(4)
        linears = [layer_type(a, b, density=0.4, generator=g, dtype=torch.float64)
                   for a, b in zip(sizes[:-1], sizes[1:])]
        model = nn.Sequential(linears[0], nn.Tanh(), linears[1], nn.Tanh(), linears[2])
        models.append(model)
        optimizers.append(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3))
    evolutions = [SET(evolvable_layers(model), optimizer=opt, generator=_gen(9))
                  for model, opt in zip(models, optimizers)]
    data = _gen(0)
    for epoch in range(3):
        for _ in range(4):
            x = torch.randn(8, 12, generator=data, dtype=torch.float64)
            y = torch.randint(0, 3, (8,), generator=data)
            losses = []
            for model, opt in zip(models, optimizers):
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            assert losses[0] == pytest.approx(losses[1], rel=1e-12, abs=1e-12)
        for evolution in evolutions:
            evolution.step()
    for s_layer, m_layer in zip(models[0][::2], models[1][::2]):
        torch.testing.assert_close(s_layer.to_dense(), m_layer.to_dense(), rtol=1e-11, atol=1e-12)


def test_bad_arguments_name_the_argument():
    layer = SparseLinear(4, 4, density=0.5)
    with pytest.raises(ValueError, match="zeta"):
        SET([layer], zeta=1.5)
    with pytest.raises(ValueError, match="regrow_init"):
        SET([layer], regrow_init="random")
    with pytest.raises(ValueError, match="every"):
        SET([layer], every=0)
    with pytest.raises(ValueError, match="MaskedWeight"):
        SET([nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="layers"):
        SET([])


_MEMORY_SCRIPT = textwrap.dedent("""
    import torch
    from swatlib.machine import peak_resident_bytes
    from swatlib.optim import DecoupledSGD
    from swatlib.sparse import SparseLinear
    from swatlib.topology import SET

    torch.zeros(1).sum()
    baseline = peak_resident_bytes()
    g = torch.Generator().manual_seed(0)
    layer = SparseLinear(200_000, 200_000, epsilon=1, generator=g)
    optimizer = DecoupledSGD(layer.parameters(), lr=0.01)
    layer.values.grad = torch.ones_like(layer.values)
    optimizer.step()
    change = SET([layer], optimizer=optimizer, generator=g).step()[0]
    print(layer.nnz, change.grown.numel(), peak_resident_bytes() - baseline)
""")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_huge_layer_evolves_in_memory_proportional_to_nnz():
    # 200,000 x 200,000 at ε = 1: 400,000 connections; a dense float32 weight would be 160 GB.
    done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, check=True)
    nnz, replaced, peak_increase = map(int, done.stdout.split())
    assert nnz == 400_000 and replaced > 100_000
    assert peak_increase < 400 * 2**20, f"peak RSS grew by {peak_increase / 2**20:.0f} MB"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=120), st.data())
def test_smallest_is_the_stable_sort_prefix(scores, data):
    """Selection (no sort) picks the same weights as a stable argsort, ties to the lower index."""
    from swatlib.topology.set_evolution import smallest

    scores = torch.tensor(scores, dtype=torch.float32)
    count = data.draw(st.integers(0, scores.numel()))
    expected = torch.argsort(scores, stable=True)[:count].sort().values
    assert torch.equal(smallest(scores, count), expected)


def test_merge_sorted_keeps_both_orders():
    from swatlib.topology.set_evolution import merge_sorted

    first, second = torch.tensor([1, 4, 9]), torch.tensor([0, 5, 10, 11])
    at_second = torch.searchsorted(first, second) + torch.arange(4)
    assert merge_sorted(first, second, at_second).tolist() == [0, 1, 4, 5, 9, 10, 11]
