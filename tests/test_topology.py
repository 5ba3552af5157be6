"""The topology protocol: schedules, state dicts, connection maps, and RigL truly sparse vs masked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from swatlib.models import SparseMLP
from swatlib.sparse import MaskedWeight, SparseLinear
from swatlib.topology import SET, ConnectionMap, ImportancePruning, RigL, grow_by_score, pruning_epochs


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- connection maps
def test_connection_map_gathers_survivors_and_fills_new_ones():
    change = ConnectionMap(torch.tensor([0, 2, -1, 3, -1]), old_count=4)
    assert change.new_count == 5
    assert change.grown.tolist() == [2, 4] and change.removed.tolist() == [1]
    old = torch.tensor([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5], [4.0, 4.5]])
    assert change.gather(old, fill=-1.0).tolist() == [[1.0, 1.5], [3.0, 3.5], [-1.0, -1.0], [4.0, 4.5],
                                                      [-1.0, -1.0]]
    with pytest.raises(ValueError, match="old_count|rows"):
        change.gather(torch.zeros(3))


def test_importance_pruning_exposes_the_map_of_every_shrunk_layer():
    model = SparseMLP([12, 20, 20, 3], epsilon=4, dropout=0.0, generator=_gen(0))
    before = [layer.connections()[2].clone() for layer in model.linears]
    pruning = ImportancePruning(model, start_epoch=1, every=1, percentile=30)
    changes = pruning.step()
    assert sorted(changes) == [0, 1, 2] and model.hidden_neurons == [14, 14]
    for index, change in changes.items():
        assert torch.equal(model.linears[index].connections()[2], change.gather(before[index]))
        assert change.grown.numel() == 0 and change.removed.numel() > 0


# ---------------------------------------------------------------- schedules and state
def test_set_schedule_every_and_until():
    layer = SparseLinear(10, 10, density=0.3, generator=_gen(0))
    evolution = SET([layer], every=2, until=5, generator=_gen(1))
    acted = [bool(evolution.step()) for _ in range(8)]
    assert acted == [False, True, False, True, False, False, False, False]


def test_importance_pruning_timings_paper_and_authors():
    assert pruning_epochs(200, 10, 500) == list(range(200, 501, 10))             # 31 events
    authors = pruning_epochs(200, 10, 500, timing="authors")
    assert authors == list(range(211, 492, 10)) and len(authors) == 29            # never after the last
    model = SparseMLP([6, 8, 2], epsilon=2, generator=_gen(0))
    pruning = ImportancePruning(model, start_epoch=2, every=2, percentile=25, timing="authors", epochs=7)
    assert [t for t in range(1, 8) if pruning.due(t)] == pruning_epochs(2, 2, 7, "authors") == [5]
    with pytest.raises(ValueError, match="timing"):
        pruning_epochs(1, 1, 3, timing="sometimes")


def test_resumed_set_continues_exactly_like_the_uninterrupted_run():
    def make():
        layer = SparseLinear(30, 20, density=0.2, generator=_gen(0), dtype=torch.float64)
        return layer, SET([layer], generator=_gen(1))

    layer_a, set_a = make()
    for _ in range(3):
        set_a.step()
    layer_b, set_b = make()
    set_b.step()
    set_b.step()
    saved_layer, saved_set = layer_b.state_dict(), set_b.state_dict()
    layer_c, set_c = make()                      # a fresh process: new objects, new generator
    layer_c.load_state_dict(saved_layer)
    set_c.load_state_dict(saved_set)
    assert set_c.t == 2
    set_c.step()
    assert torch.equal(layer_c.to_dense(), layer_a.to_dense())


class _Counting:
    """A topology algorithm that only records when it is called."""

    def __init__(self, when, calls):
        self.when, self.calls = when, calls

    def step(self):
        self.calls.append(self.when)
        return {}


def test_fit_steps_each_algorithm_where_it_declares():
    from types import SimpleNamespace

    from swatlib.train import fit

    x = torch.randn(40, 5, generator=_gen(0))
    data = SimpleNamespace(x_train=x, y_train=(x[:, 0] > 0).long(), x_test=x[:8], y_test=(x[:8, 0] > 0).long())
    calls = []
    model = nn.Linear(5, 2)
    fit(model, data, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, batch_size=10,
        generator=_gen(1), log=lambda _: None,
        topology=[_Counting("optimizer_step", calls), _Counting("epoch", calls)])
    assert calls == (["optimizer_step"] * 4 + ["epoch"]) * 2
    with pytest.raises(ValueError, match="topology"):
        fit(model, data, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=10,
            generator=_gen(1), topology=[object()])


# ---------------------------------------------------------------- RigL
def _brute_force_growth(scores: torch.Tensor, occupied: torch.Tensor, count: int) -> torch.Tensor:
    flat = scores.reshape(-1).clone().to(torch.float64)
    free = torch.ones_like(flat, dtype=torch.bool)
    free[occupied] = False
    candidates = free.nonzero().squeeze(1)
    order = torch.argsort(flat[candidates], descending=True, stable=True)[:count]
    return candidates[order].sort().values


@settings(max_examples=60, deadline=None)
@given(n_out=st.integers(1, 12), n_in=st.integers(1, 12), seed=st.integers(0, 2**31), rows=st.integers(1, 12),
       levels=st.sampled_from([0, 3]), data=st.data())
def test_growth_is_the_global_top_k_with_low_keys_winning_ties(n_out, n_in, seed, rows, levels, data):
    g = _gen(seed)
    scores = torch.rand(n_out, n_in, generator=g)
    if levels:                                   # few distinct values: many ties
        scores = torch.floor(scores * levels)
    occupied = torch.randperm(n_out * n_in, generator=g)[:data.draw(st.integers(0, n_out * n_in - 1))]
    occupied = occupied.sort().values
    count = data.draw(st.integers(0, n_out * n_in - occupied.numel()))
    blocks = ((first, scores[first:first + rows].clone()) for first in range(0, n_out, rows))
    grown = grow_by_score(blocks, occupied, n_in, count)
    assert torch.equal(grown, _brute_force_growth(scores, occupied, count))


def _twins(seed=0):
    """A truly sparse MLP and its masked twin (stock nn.Linear + MaskedWeight), equal in float64."""
    g = _gen(seed)
    sparse = nn.Sequential(SparseLinear(16, 24, density=0.3, generator=g, dtype=torch.float64), nn.Tanh(),
                           SparseLinear(24, 24, density=0.3, generator=g, dtype=torch.float64), nn.Tanh(),
                           SparseLinear(24, 4, density=1.0, generator=g, dtype=torch.float64))
    masked = nn.Sequential(nn.Linear(16, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 4)).double()
    wrapped = []
    with torch.no_grad():
        for s, m in zip(sparse[::2], masked[::2]):
            m.weight.copy_(s.to_dense())
            m.bias.copy_(s.bias)
            mask = torch.zeros_like(m.weight, dtype=torch.bool)
            mask[s.row_indices, s.col_indices] = True
            wrapped.append(MaskedWeight(m, mask=mask))
    return sparse, masked, list(sparse[::2]), wrapped


@pytest.mark.parametrize("native", [True, False])
def test_rigl_on_sparse_linear_equals_rigl_on_the_masked_twin(native, monkeypatch):
    if not native:
        monkeypatch.setenv("SWATLIB_NATIVE", "0")
    sparse, masked, sparse_layers, masked_layers = _twins()
    runs = []
    for model, layers in ((sparse, sparse_layers), (masked, masked_layers)):
        opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        runs.append((model, opt, RigL(layers, t_end=12, delta_t=3, alpha=0.4, optimizer=opt)))
    data = _gen(5)
    changed = 0
    for step in range(14):
        x = torch.randn(10, 16, generator=data, dtype=torch.float64)
        y = torch.randint(0, 4, (10,), generator=data)
        for model, opt, rigl in runs:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            changes = rigl.step()
        changed += bool(changes)
        for s, m in zip(sparse_layers, masked_layers):
            rows_s, cols_s, _ = s.connections()
            rows_m, cols_m, _ = m.connections()
            assert torch.equal(rows_s, rows_m) and torch.equal(cols_s, cols_m), f"step {step + 1}"
            torch.testing.assert_close(s.to_dense(), m.weight.detach(), rtol=1e-10, atol=1e-12)
    assert changed == 3              # steps 3, 6, 9 (at step 12 = t_end the drop fraction is 0)
    assert sparse_layers[0].nnz == masked_layers[0].nnz == round(0.3 * 16 * 24)


def test_rigl_drops_the_smallest_weights_and_grows_zeros_with_fresh_state():
    layer = SparseLinear(20, 10, density=0.5, generator=_gen(0))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    rigl = RigL([layer], t_end=10, delta_t=1, alpha=0.3, optimizer=opt)
    x = torch.randn(6, 20, generator=_gen(1))
    layer(x).square().sum().backward()
    opt.step()
    values_before = layer.values.detach().clone()
    momentum_before = opt.state[layer.values]["momentum_buffer"].clone()
    change = rigl.step()[0]
    count = int(0.3 * (1 + torch.cos(torch.tensor(torch.pi / 10))) / 2 * 100)
    assert change.grown.numel() == count == change.removed.numel()
    smallest = set(torch.argsort(values_before.abs(), stable=True)[:count].tolist())
    assert set(change.removed.tolist()) <= smallest
    assert bool((layer.values.detach()[change.grown] == 0).all())
    state = opt.state[layer.values]["momentum_buffer"]
    assert bool((state[change.grown] == 0).all())
    kept = change.source >= 0
    assert torch.equal(state[kept], momentum_before[change.source[kept]])


def test_rigl_manages_explicitly_chosen_layers_inside_a_transformer_block():
    block = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
    chosen = [MaskedWeight(block.linear1, 0.3, generator=_gen(0)), MaskedWeight(block.linear2, 0.3, generator=_gen(1))]
    opt = torch.optim.AdamW(block.parameters(), lr=1e-2)
    rigl = RigL(chosen, t_end=4, delta_t=2, optimizer=opt)
    nnz = [layer.nnz for layer in chosen]
    for _ in range(4):
        opt.zero_grad()
        block(torch.randn(3, 5, 16, generator=_gen(2))).square().mean().backward()
        opt.step()
        rigl.step()
    assert [layer.nnz for layer in chosen] == nnz
    assert all(bool((layer.weight[~layer.module.topology_mask] == 0).all()) for layer in chosen)


def test_rigl_bad_arguments_name_the_argument():
    layer = SparseLinear(4, 4, density=0.5)
    for kwargs, name in (({"t_end": 0}, "t_end"), ({"t_end": 5, "delta_t": 0}, "delta_t"),
                         ({"t_end": 5, "alpha": 2.0}, "alpha")):
        with pytest.raises(ValueError, match=name):
            RigL([layer], **kwargs)
    with pytest.raises(ValueError, match="MaskedWeight"):
        RigL([nn.Linear(3, 3)], t_end=5)


_RIGL_MEMORY_SCRIPT = textwrap.dedent("""
    import torch
    from swatlib.machine import peak_resident_bytes, reset_peak_resident, resident_bytes
    from swatlib.sparse import SparseLinear
    from swatlib.topology import RigL

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    layer = SparseLinear(20_000, 20_000, density=0.01, generator=g)
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    rigl = RigL([layer], t_end=10, delta_t=1, optimizer=opt)
    layer(torch.randn(64, 20_000, generator=g)).square().sum().backward()
    opt.step()
    reset_peak_resident()
    before = resident_bytes()
    change = rigl.step()[0]
    print(layer.nnz, change.grown.numel(), peak_resident_bytes() - before)
""")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_truly_sparse_rigl_update_never_holds_a_dense_matrix():
    # 20,000 x 20,000 at density 0.01: 4 M connections. The update rebuilds the layer's index arrays
    # once (O(nnz) temporaries, a few hundred MB); one dense in x out float32 tensor alone is 1.6 GB.
    done = subprocess.run([sys.executable, "-c", _RIGL_MEMORY_SCRIPT], capture_output=True, text=True)
    if done.returncode and "clear_refs" in done.stderr:
        pytest.skip("this kernel does not let a process reset its peak RSS")
    assert done.returncode == 0, done.stderr
    nnz, grown, peak_increase = map(int, done.stdout.split())
    assert nnz == 4_000_000 and grown > 100_000
    assert peak_increase < 800 * 2**20, f"peak RSS grew by {peak_increase / 2**20:.0f} MB during the update"


@pytest.mark.parametrize("layers, match", [
    ([], "layers must name at least one layer to manage"),
    ([nn.Linear(3, 3)], r"layers\[0\] \(Linear\) lacks connections, set_connections.*wrap a stock layer in MaskedWeight"),
    (SparseLinear(4, 3, density=0.5), r"layers must be a sequence of layers, got a SparseLinear: pass \[layer\]"),
    (SparseMLP([4, 3, 2], epsilon=1), "layers must be a sequence of layers, got a SparseMLP: .*evolvable_layers"),
])
def test_topology_algorithms_name_what_is_wrong_with_their_layers(layers, match):
    for build in (lambda: SET(layers), lambda: RigL(layers, t_end=10)):
        with pytest.raises(ValueError, match=match):
            build()
