"""Inverted dropout: keep rate, scaling, gradient, layout, reproducibility, native == torch fallback; the fused
All-ReLU + dropout against the two ops it replaces."""

from __future__ import annotations

import math

import pytest
import torch

import contextlib

import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from swatlib.dropout import inverted_dropout, keep_threshold, relu_dropout
from swatlib.models.mlp import SparseMLP
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


def _kernel_sets():
    return [contextlib.nullcontext, native.disabled] if native.available() else [native.disabled]


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), transposed=st.booleans(), double=st.booleans(),
       slope=st.sampled_from([-0.6, 0.6, 0.0]), p=st.sampled_from([0.3, 0.5]), seed=st.integers(0, 1000))
def test_relu_dropout_gives_the_bits_of_leaky_relu_then_dropout(rows, cols, transposed, double, slope, p, seed):
    dtype = torch.float64 if double else torch.float32
    base = torch.randn(cols, rows, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    base[0, 0] = 0.0  # the boundary: z = 0 takes the slope
    grad = torch.randn(rows, cols, dtype=dtype, generator=torch.Generator().manual_seed(seed + 1))
    for kernels in _kernel_sets():
        results = []
        for fused in (True, False):
            z = (base.t() if transposed else base.t().contiguous()).clone().requires_grad_()
            torch.manual_seed(seed)
            with kernels():
                y = relu_dropout(z, slope, p) if fused else inverted_dropout(F.leaky_relu(z, slope), p)
                y.backward(grad)
            results.append((y.detach(), z.grad, (y.is_contiguous(), y.t().is_contiguous())))  # layout kept
        (y1, g1, s1), (y2, g2, s2) = results
        assert torch.equal(y1, y2) and torch.equal(g1, g2) and s1 == s2


@pytest.mark.parametrize("threads", [1, 2])
def test_relu_dropout_of_a_wide_activation_is_the_unfused_one_on_any_thread_count(threads):
    # 2 x 65,541 elements: above the size where the native passes split the work over threads, and not
    # a multiple of 8 (the AVX2 path's scalar tail); NaN, ±0 and inf take torch's paths too.
    z0 = torch.randn(65541, 2, generator=torch.Generator().manual_seed(3))
    z0[:4, 0] = torch.tensor([float("nan"), 0.0, -0.0, float("inf")])
    grad = torch.randn(2, 65541, generator=torch.Generator().manual_seed(4))
    previous = torch.get_num_threads()
    results = []
    try:
        torch.set_num_threads(threads)
        for fused in (True, False):
            z = z0.t().clone().requires_grad_()
            torch.manual_seed(5)
            with contextlib.nullcontext() if fused else native.disabled():
                y = relu_dropout(z, -0.6, 0.4) if fused else inverted_dropout(F.leaky_relu(z, -0.6), 0.4)
                y.backward(grad)
            results.append((y.detach(), z.grad))
    finally:
        torch.set_num_threads(previous)
    (y1, g1), (y2, g2) = results
    torch.testing.assert_close(y1, y2, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(g1, g2)


def test_relu_dropout_keeps_one_bit_per_element_for_each_mask():
    z = torch.randn(128, 1000, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        relu_dropout(z, -0.6, 0.3)
    assert [(t.dtype, t.numel()) for t in saved] == [(torch.uint8, 128 * 1000 // 8)] * 2


def test_relu_dropout_gradcheck_float64():
    z = torch.randn(7, 9, dtype=torch.float64, requires_grad=True)

    def fixed_mask(t):
        torch.manual_seed(0)
        return relu_dropout(t, -0.6, 0.3)

    assert torch.autograd.gradcheck(fixed_mask, (z,))


def test_sparse_mlp_training_step_is_the_unfused_one():
    model = SparseMLP([30, 20, 20, 3], epsilon=3.0, dropout=0.3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(16, 30, generator=torch.Generator().manual_seed(1))

    def unfused():
        h = x
        for linear, activation in zip(model.linears, model.activations):
            h = inverted_dropout(activation(linear(h)), 0.3)
        return model.linears[-1](h)

    grads = []
    for forward in (model, lambda _: unfused()):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        out = forward(x)
        out.square().sum().backward()
        grads.append([out.detach()] + [p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
