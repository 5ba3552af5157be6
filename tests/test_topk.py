"""Magnitude Top-K (SPEC §5)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swatlib.topk import check_density, topk_count, topk_mask, topk_threshold


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    density=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_keeps_exactly_k_largest_without_ties(shape, density, seed):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mask = topk_mask(x, density)
    k = math.ceil(density * x.numel() - 1e-9)
    assert int(mask.sum()) == max(1, k)
    if not mask.all():
        assert x.abs()[mask].min() > x.abs()[~mask].max()


def test_ties_at_the_threshold_are_kept():
    x = torch.tensor([3.0, -1.0, 1.0, 1.0, 0.5])
    assert topk_threshold(x, 0.4).item() == 1.0
    assert topk_mask(x, 0.4).tolist() == [True, True, True, True, False]


def test_density_one_keeps_everything():
    x = torch.randn(5, 7)
    assert topk_mask(x, 1.0).all()
    assert topk_count(10, 1.0) == 10


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", True, None])
def test_bad_density_names_the_argument(bad):
    with pytest.raises(ValueError, match="density"):
        check_density(bad)
    with pytest.raises(ValueError, match="density"):
        topk_mask(torch.ones(3), bad)
