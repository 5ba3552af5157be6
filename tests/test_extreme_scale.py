"""Extreme-scale SET-MLPs: Table 4's architectures are built only once their estimated peak fits."""

from __future__ import annotations

import pytest
import torch

from swatlib.experiments.extreme_scale import ARCHITECTURES, accumulated_step, build_model, describe
from swatlib.models.mlp import SparseMLP
from swatlib.optim import DecoupledSGD
from swatlib.sparse.memory import training_memory


def test_architectures_are_table_4s():
    assert list(ARCHITECTURES) == ["65536-0.5M-0.5M-2", "65536-2.5M-2.5M-2", "65536-5M-5M-2", "65536-5Mx4-2",
                                   "65536-5Mx10-2"]
    neurons = [sum(sizes[1:-1]) for sizes, _ in ARCHITECTURES.values()]
    assert neurons == [1_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000]
    assert [eps for _, eps in ARCHITECTURES.values()] == [10, 5, 5, 1, 1]


def test_the_largest_model_is_refused_before_anything_is_allocated():
    sizes, epsilon = ARCHITECTURES["65536-5Mx10-2"]
    with pytest.raises(MemoryError, match=r"^65536-5000000-.*-2 at epsilon 1, batch 128 needs an estimated "
                                          r"[0-9.]+ GiB .* but only 24.00 GiB is available"):
        build_model(sizes, epsilon=epsilon, batch_size=128, available=24 * 2**30)


def test_a_model_that_fits_is_the_sparse_mlp_of_the_same_generator():
    sizes = (200, 64, 64, 2)
    needed = training_memory(sizes, epsilon=3.0, batch_size=16).peak_bytes
    model = build_model(sizes, epsilon=3.0, batch_size=16, generator=torch.Generator().manual_seed(0),
                        available=needed)
    twin = SparseMLP(list(sizes), epsilon=3.0, generator=torch.Generator().manual_seed(0))
    for a, b in zip(model.linears, twin.linears):
        assert all(torch.equal(s, t) for s, t in zip(a.connections(), b.connections()))
    assert describe(sizes) == "200-64-64-2"


def _trained(micro_batch_size: int, dropout: float, dtype=torch.float64):
    torch.manual_seed(0)
    model = SparseMLP([40, 24, 24, 3], epsilon=3.0, dropout=dropout, generator=torch.Generator().manual_seed(0))
    model.to(dtype)
    optimizer = DecoupledSGD(model.parameters(), lr=0.05)
    x = torch.randn(50, 40, generator=torch.Generator().manual_seed(1), dtype=dtype)
    y = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(2))
    losses = [accumulated_step(model, optimizer, x, y, micro_batch_size) for _ in range(3)]
    return losses, [p.detach().clone() for p in model.parameters()]


def test_micro_batches_accumulate_the_batch_gradient():
    whole_losses, whole = _trained(50, dropout=0.0)
    micro_losses, micro = _trained(16, dropout=0.0)  # 16 + 16 + 16 + 2
    assert micro_losses == pytest.approx(whole_losses, rel=1e-12)
    for a, b in zip(whole, micro):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_one_micro_batch_is_exactly_the_ordinary_step():
    losses, params = _trained(64, dropout=0.3, dtype=torch.float32)
    torch.manual_seed(0)
    model = SparseMLP([40, 24, 24, 3], epsilon=3.0, dropout=0.3, generator=torch.Generator().manual_seed(0))
    optimizer = DecoupledSGD(model.parameters(), lr=0.05)
    x = torch.randn(50, 40, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(2))
    plain = []
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        plain.append(float(loss.detach()))
    assert plain == losses and all(torch.equal(a, b) for a, b in zip(params, model.parameters()))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_micro_batch_size_is_named(bad):
    model = SparseMLP([4, 3, 2], epsilon=1.0)
    with pytest.raises(ValueError, match="micro_batch_size"):
        accumulated_step(model, DecoupledSGD(model.parameters(), lr=0.1), torch.zeros(2, 4),
                         torch.zeros(2, dtype=torch.long), bad)
