"""The chunked SWAT products: gradients equal the reference formulas, and chunking changes no bit."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from swatlib.swat import SWATConv2d, SWATLinear, functions
from swatlib.swat.functions import batch_chunks
from swatlib.topk import topk_mask


@pytest.fixture(scope="module")
def small_chunks():
    """Products in chunks of 64 elements: every batch, channel and feature block is exercised."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(functions, "PRODUCT_CHUNK", 64)
        yield


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 7), i=st.integers(1, 40), o=st.integers(1, 40), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), padding=st.integers(0, 1), density=st.floats(0.05, 1.0),
       index_format=st.sampled_from(["bitmap", "indices"]), seed=st.integers(0, 2**16))
def test_chunked_conv_gradients_equal_reference_float64(small_chunks, batch, i, o, k, stride, padding,
                                                        density, index_format, seed):
    torch.manual_seed(seed)
    layer = SWATConv2d(i, o, k, stride=stride, padding=padding, density=density,
                       index_format=index_format, dtype=torch.float64)
    x = torch.randn(batch, i, 6, 6, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach()
    w_s, x_s = w * topk_mask(w, density), x.detach() * topk_mask(x, density)
    conf = dict(stride=stride, padding=padding)
    y = layer(x)
    torch.testing.assert_close(y, F.conv2d(x.detach(), w_s, layer.bias, **conf), rtol=1e-12, atol=1e-12)
    dy = torch.randn(y.shape, dtype=torch.float64)
    y.backward(dy)
    tight = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, torch.nn.grad.conv2d_input(x.shape, w_s, dy, **conf), **tight)
    torch.testing.assert_close(layer.weight.grad, torch.nn.grad.conv2d_weight(x_s, w.shape, dy, **conf),
                               **tight)
    torch.testing.assert_close(layer.bias.grad, dy.sum((0, 2, 3)), **tight)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), i=st.integers(1, 70), o=st.integers(1, 9), density=st.floats(0.05, 1.0),
       index_format=st.sampled_from(["bitmap", "indices"]), seed=st.integers(0, 2**16))
def test_chunked_linear_gradients_equal_reference_float64(small_chunks, rows, i, o, density,
                                                          index_format, seed):
    torch.manual_seed(seed)
    layer = SWATLinear(i, o, density=density, index_format=index_format, dtype=torch.float64)
    x = torch.randn(rows, i, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach()
    w_s, x_s = w * topk_mask(w, density), x.detach() * topk_mask(x, density)
    y = layer(x)
    dy = torch.randn(y.shape, dtype=torch.float64)
    y.backward(dy)
    tight = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, dy @ w_s, **tight)
    torch.testing.assert_close(layer.weight.grad, dy.t() @ x_s, **tight)
    torch.testing.assert_close(layer.bias.grad, dy.sum(0), **tight)


def _step(layer_factory, x, dy, chunk):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(functions, "PRODUCT_CHUNK", chunk)
        layer = layer_factory()
        x = x.clone().requires_grad_()
        y = layer(x)
        y.backward(dy)
    return y, x.grad, layer.weight.grad, layer.bias.grad


@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("shape", [(12, 16, 14, 14, 32), (9, 3, 9, 9, 5)])
def test_chunking_changes_no_bit_float32(density, shape):
    """The saving is in how SWAT stores and computes, not in what: same bits in one chunk or many."""
    n, c, h, w, o = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g).relu_()
    dy = torch.randn(n, o, h, w, generator=g)

    def factory():
        torch.manual_seed(0)
        return SWATConv2d(c, o, 3, padding=1, density=density)

    whole = _step(factory, x, dy, 1 << 30)
    chunked = _step(factory, x, dy, 2 * c * h * w)     # batch chunks of 2-3 examples
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)


@settings(max_examples=200, deadline=None)
@given(batch=st.integers(1, 300), per_example=st.integers(1, 10**6))
def test_batch_chunks_cover_the_batch_in_balanced_chunks_of_two_or_more(batch, per_example):
    chunks = batch_chunks(batch, per_example)
    assert chunks[0][0] == 0 and chunks[-1][1] == batch
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    sizes = [stop - start for start, stop in chunks]
    assert max(sizes) - min(sizes) <= 1
    assert len(chunks) == 1 or min(sizes) >= 2
