"""Inverted dropout: keep rate, scaling, gradient, layout, reproducibility, native == torch fallback."""

from __future__ import annotations

import math

import pytest
import torch

from swatlib.dropout import inverted_dropout, keep_threshold
from swatlib.sparse import native


def test_threshold_quantises_p_in_steps_of_two_to_the_minus_sixteen():
    assert keep_threshold(0.0) == -32768  # every int16 is kept
    assert keep_threshold(0.3) == round(0.3 * 65536) - 32768
    assert keep_threshold(0.5) == 0
    assert keep_threshold(1 - 1e-9) == 32767  # still keeps 1 in 65536


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_probability_names_p(p):
    with pytest.raises(ValueError, match="p must be in"):
        inverted_dropout(torch.ones(3), p)


def test_zero_probability_is_the_identity():
    x = torch.randn(4, 5)
    assert inverted_dropout(x, 0.0) is x


@pytest.mark.parametrize("p", [0.1, 0.3, 0.8])
def test_keep_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.rand(400, 500) + 1.0  # no zeros, so a zero output means dropped
    y = inverted_dropout(x, p)
    kept = y != 0
    n = x.numel()
    # within 5 binomial standard deviations of 1 - p
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[kept], x[kept] * (1 / (1 - p)), rtol=0, atol=0)


@pytest.mark.parametrize("transposed", [False, True])
def test_gradient_is_the_same_mask_and_scale(transposed):
    torch.manual_seed(1)
    x = (torch.randn(60, 30) if transposed else torch.randn(30, 60)).abs().add(0.1)
    x = (x.t() if transposed else x).requires_grad_()
    y = inverted_dropout(x, 0.4)
    g = torch.randn(30, 60)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * (1 / 0.6) * (y.detach() != 0), rtol=0, atol=0)
    assert y.is_contiguous() == (not transposed)  # a feature-major activation stays feature-major
    assert y.t().is_contiguous() == transposed


def test_reproducible_under_manual_seed():
    x = torch.randn(64, 33)
    torch.manual_seed(5)
    a = inverted_dropout(x, 0.3)
    torch.manual_seed(5)
    b = inverted_dropout(x, 0.3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_native_and_torch_fallback_are_bit_identical(dtype, transposed):
    if not native.available():
        pytest.skip("native kernels unavailable")
    base = torch.randn(37, 129, dtype=dtype)
    results = []
    for context in (native.disabled, _nothing):
        x = (base.t() if transposed else base).clone().requires_grad_()
        torch.manual_seed(7)
        with context():
            y = inverted_dropout(x, 0.3)
            y.backward(torch.ones_like(y))
        results.append((y.detach(), x.grad))
    for fallback, fast in zip(*results):
        assert torch.equal(fallback, fast)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
