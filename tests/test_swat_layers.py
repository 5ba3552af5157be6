"""SWAT layers, Top-K state and compressed saved tensors (SPEC §5)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from swatlib.swat import (CompressedTensor, MaskReLU, SavedTensorMeter, SWATConv2d, SWATLinear,
                          TopK, compress)
from swatlib.swat.compressed import pack_bits, unpack_bits
from swatlib.topk import topk_mask


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def _linear(i, o, density, seed, **kw):
    torch.manual_seed(seed)
    return SWATLinear(i, o, density=density, dtype=torch.float64, **kw)


def _conv(i, o, k, density, seed, **kw):
    torch.manual_seed(seed)
    return SWATConv2d(i, o, k, density=density, dtype=torch.float64, **kw)


# --- gradients equal the reference formulas --------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 6), i=st.integers(1, 9), o=st.integers(1, 9),
       density=st.floats(0.05, 1.0), seed=st.integers(0, 2**16), bias=st.booleans())
def test_linear_gradients_equal_reference(batch, i, o, density, seed, bias):
    layer = _linear(i, o, density, seed, bias=bias)
    g = _generator(seed)
    x = torch.randn(batch, i, dtype=torch.float64, generator=g, requires_grad=True)
    dy = torch.randn(batch, o, dtype=torch.float64, generator=g)
    w = layer.weight.detach()
    w_s = w * topk_mask(w, density)
    x_s = x.detach() * topk_mask(x, density)
    y = layer(x)
    torch.testing.assert_close(y, F.linear(x.detach(), w_s, layer.bias), rtol=1e-12, atol=1e-12)
    y.backward(dy)
    tight = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, dy @ w_s, **tight)                  # input_grad(W_s, dY)
    torch.testing.assert_close(layer.weight.grad, dy.t() @ x_s, **tight)   # weight_grad(X_s, dY)
    if bias:
        torch.testing.assert_close(layer.bias.grad, dy.sum(0), rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 3), groups=st.sampled_from([1, 2]), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), padding=st.integers(0, 1), dilation=st.integers(1, 2),
       density=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_conv_gradients_equal_reference(batch, groups, k, stride, padding, dilation, density, seed):
    layer = _conv(2 * groups, 2 * groups, k, density, seed, stride=stride, padding=padding,
                  dilation=dilation, groups=groups)
    g = _generator(seed)
    x = torch.randn(batch, 2 * groups, 7, 7, dtype=torch.float64, generator=g, requires_grad=True)
    w = layer.weight.detach()
    w_s = w * topk_mask(w, density)
    x_s = x.detach() * topk_mask(x, density)
    conf = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = layer(x)
    torch.testing.assert_close(y, F.conv2d(x.detach(), w_s, layer.bias, **conf))
    dy = torch.randn(y.shape, dtype=torch.float64, generator=g)
    y.backward(dy)
    torch.testing.assert_close(x.grad, torch.nn.grad.conv2d_input(x.shape, w_s, dy, **conf))
    torch.testing.assert_close(layer.weight.grad,
                               torch.nn.grad.conv2d_weight(x_s, w.shape, dy, **conf))
    torch.testing.assert_close(layer.bias.grad, dy.sum((0, 2, 3)))


# --- density 1 equals the stock layers exactly ------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_density_one_linear_is_stock_linear(shape):
    torch.manual_seed(0)
    stock = nn.Linear(7, 6)
    swat = SWATLinear(7, 6, density=1.0)
    swat.load_state_dict(stock.state_dict(), strict=False)
    x = torch.randn(*shape, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y2 = stock(x), swat(x2)
    dy = torch.randn_like(y)
    y.backward(dy)
    y2.backward(dy)
    assert torch.equal(y, y2) and torch.equal(x.grad, x2.grad)
    assert torch.equal(stock.weight.grad, swat.weight.grad)
    assert torch.equal(stock.bias.grad, swat.bias.grad)


@pytest.mark.parametrize("conf", [dict(padding=1), dict(stride=2, padding="valid"),
                                  dict(padding="same", dilation=2),
                                  dict(padding=1, padding_mode="reflect", groups=2)])
@pytest.mark.parametrize("input_grad", [True, False])
def test_density_one_conv_is_stock_conv(conf, input_grad):
    torch.manual_seed(0)
    stock = nn.Conv2d(4, 6, 3, **conf)
    swat = SWATConv2d(4, 6, 3, density=1.0, **conf)
    swat.load_state_dict(stock.state_dict(), strict=False)
    x = torch.randn(2, 4, 9, 9, requires_grad=input_grad)
    x2 = x.detach().clone().requires_grad_(input_grad)
    y, y2 = stock(x), swat(x2)
    dy = torch.randn_like(y)
    y.backward(dy)
    y2.backward(dy)
    assert torch.equal(y, y2)
    assert torch.equal(stock.weight.grad, swat.weight.grad)
    assert torch.equal(stock.bias.grad, swat.bias.grad)
    if input_grad:
        assert torch.equal(x.grad, x2.grad)


def test_unbatched_conv_input():
    layer = _conv(2, 3, 3, 0.5, 0)
    x = torch.randn(2, 6, 6, dtype=torch.float64)
    assert torch.equal(layer(x), layer(x.unsqueeze(0)).squeeze(0))


# --- the update is dense ----------------------------------------------------------------------

def test_masked_out_weights_still_change_after_a_step():
    torch.manual_seed(0)
    layer = SWATLinear(20, 10, density=0.1)
    dropped = ~topk_mask(layer.weight, 0.1)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(128, 20)).pow(2).sum().backward()
    optimizer.step()
    changed = layer.weight.detach() != before
    assert changed[dropped].all()


# --- modes of the sensitivity study ----------------------------------------------------------

def _mode_run(mode, density=0.3, seed=1):
    layer = _linear(8, 5, density, seed, mode=mode)
    g = _generator(seed)
    x = torch.randn(6, 8, dtype=torch.float64, generator=g, requires_grad=True)
    dy = torch.randn(6, 5, dtype=torch.float64, generator=g)
    y = layer(x)
    y.backward(dy)
    w = layer.weight.detach()
    return layer, x, dy, y, w, w * topk_mask(w, density), x.detach() * topk_mask(x, density)


def test_mode_fwd_weights_sparse_forward_dense_backward():
    layer, x, dy, y, w, w_s, _ = _mode_run("fwd-weights")
    torch.testing.assert_close(y, F.linear(x.detach(), w_s, layer.bias))
    torch.testing.assert_close(x.grad, dy @ w)
    torch.testing.assert_close(layer.weight.grad, dy.t() @ x.detach())


def test_mode_fwd_activations_sparse_forward_dense_backward():
    layer, x, dy, y, w, _, x_s = _mode_run("fwd-activations")
    torch.testing.assert_close(y, F.linear(x_s, w, layer.bias))
    torch.testing.assert_close(x.grad, dy @ w)
    torch.testing.assert_close(layer.weight.grad, dy.t() @ x.detach())


def test_mode_bwd_weights_activations_dense_forward_swat_backward():
    layer, x, dy, y, w, w_s, x_s = _mode_run("bwd-weights-activations")
    torch.testing.assert_close(y, F.linear(x.detach(), w, layer.bias))
    torch.testing.assert_close(x.grad, dy @ w_s)
    torch.testing.assert_close(layer.weight.grad, dy.t() @ x_s)


def test_mode_bwd_output_grad_is_meprop():
    layer, x, dy, y, w, _, _ = _mode_run("bwd-output-grad")
    dy_s = dy * topk_mask(dy, 0.3)
    torch.testing.assert_close(y, F.linear(x.detach(), w, layer.bias))
    torch.testing.assert_close(x.grad, dy_s @ w)
    torch.testing.assert_close(layer.weight.grad, dy_s.t() @ x.detach())
    torch.testing.assert_close(layer.bias.grad, dy_s.sum(0))


# --- Top-K state: period, buffers, eval ------------------------------------------------------

def test_thresholds_reused_for_period_steps_then_recomputed():
    topk = TopK(0.25, period=3)
    g = _generator(0)
    thresholds = []
    for _ in range(7):
        x = torch.randn(40, generator=g)
        mask = topk(x, advance=True)
        thresholds.append(float(topk.threshold))
        assert torch.equal(mask, x.abs() >= topk.threshold.float())
    assert thresholds[0] == thresholds[1] == thresholds[2]
    assert thresholds[3] == thresholds[4] == thresholds[5] != thresholds[2]
    assert thresholds[6] != thresholds[5]
    assert int(topk.step) == 7


def test_layer_reuses_weight_threshold_and_counts_only_training_steps():
    layer = SWATLinear(10, 10, density=0.3, period=2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    seen = []
    for _ in range(4):
        layer(torch.randn(4, 10)).sum().backward()
        seen.append(float(layer.weight_topk.threshold))
        optimizer.step()
    assert seen[0] == seen[1] != seen[2] == seen[3]
    layer.eval()
    with torch.no_grad():
        layer(torch.randn(4, 10))
    layer.train()
    with torch.no_grad():
        layer(torch.randn(4, 10))
    assert int(layer.weight_topk.step) == 4 and int(layer.act_topk.step) == 4


def test_state_dict_round_trips_thresholds_steps_and_density():
    layer = SWATLinear(6, 4, density=0.5, period=5)
    layer(torch.randn(3, 6)).sum().backward()
    layer.density = 0.25
    copy = SWATLinear(6, 4, density=0.9, period=5)
    copy.load_state_dict(layer.state_dict())
    assert copy.density == 0.25
    for name in ("weight_topk", "act_topk"):
        a, b = getattr(layer, name), getattr(copy, name)
        assert torch.equal(a.threshold, b.threshold) and int(a.step) == int(b.step) == 1
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), copy(x))


@pytest.mark.parametrize("structured", ["channel", "filter"])
def test_structured_weight_topk_keeps_whole_groups(structured):
    torch.manual_seed(0)
    layer = SWATConv2d(6, 8, 3, density=0.25, structured=structured)
    mask = layer.weight_topk(layer.weight, advance=False)
    groups = mask.reshape(8, 6, 9) if structured == "channel" else mask.reshape(8, 54)
    assert (groups.all(-1) | ~groups.any(-1)).all()          # each group all kept or all dropped
    count = 8 * 6 if structured == "channel" else 8
    assert int(groups.all(-1).sum()) == math.ceil(0.25 * count)
    norms = layer.weight.detach().abs().reshape(groups.shape[:-1] + (-1,)).sum(-1)
    assert norms[groups.all(-1)].min() >= norms[~groups.all(-1)].max()


def test_structured_applies_to_weights_only():
    layer = SWATConv2d(4, 4, 3, density=0.5, structured="filter")
    assert layer.act_topk.structured is None
    with pytest.raises(ValueError, match="structured"):
        SWATLinear(4, 4, density=0.5, structured="filter", mode="bwd-output-grad")


# --- compressed saved tensors ----------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), density=st.floats(0.01, 1.0),
       seed=st.integers(0, 2**16), index_format=st.sampled_from(["bitmap", "indices"]))
def test_compress_round_trip_and_bytes(shape, density, seed, index_format):
    x = torch.randn(*shape, generator=_generator(seed))
    x[x.abs() < 0.3] = 0.0                                  # natural zeros are not stored
    mask = topk_mask(x, density)
    c = compress(x, mask, index_format)
    assert torch.equal(c.decompress(), x * mask)
    nnz = int((x * mask).count_nonzero())
    assert c.nnz == nnz
    index_bytes = math.ceil(x.numel() / 8) if index_format == "bitmap" else 4 * nnz
    assert c.nbytes == 4 * nnz + index_bytes
    rebuilt = CompressedTensor.from_parts(c.parts, c.shape, c.index_format)
    assert torch.equal(rebuilt.mask(), mask & (x != 0))


def test_pack_bits_round_trip():
    mask = torch.rand(1001, generator=_generator(3)) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == 126
    assert torch.equal(unpack_bits(packed, 1001), mask)


@pytest.mark.parametrize("index_format", ["bitmap", "indices"])
def test_swat_layer_saves_only_compressed_tensors(index_format):
    layer = SWATLinear(256, 128, density=0.1, index_format=index_format)
    x = torch.randn(64, 256, requires_grad=True)
    with SavedTensorMeter(layer) as meter:
        y = layer(x)
    nnz_x, nnz_w = math.ceil(0.1 * x.numel()), math.ceil(0.1 * layer.weight.numel())
    index = ((lambda n, nnz: math.ceil(n / 8)) if index_format == "bitmap"
             else (lambda n, nnz: 4 * nnz))
    assert meter.result.activations == 4 * nnz_x + index(x.numel(), nnz_x)
    assert meter.result.weights == 4 * nnz_w + index(layer.weight.numel(), nnz_w)
    y.sum().backward()                               # and the graph still runs
    assert x.grad is not None


def test_mask_relu_matches_relu_and_saves_one_bit():
    x = torch.randn(4, 50, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    with SavedTensorMeter() as meter:
        y = MaskReLU()(x)
    y2 = nn.ReLU()(x2)
    dy = torch.randn_like(y)
    y.backward(dy)
    y2.backward(dy)
    assert torch.equal(y, y2) and torch.equal(x.grad, x2.grad)
    assert meter.result.total == 200 // 8
    z = torch.randn(4, 50)
    w = z.clone().requires_grad_()
    out = MaskReLU(inplace=True)(w * 1.0)
    assert torch.equal(out, z.clamp_min(0))


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(density=0.0), "density"), (dict(density=1.5), "density"),
    (dict(density=float("nan")), "density"), (dict(density=0.5, period=0), "period"),
    (dict(density=0.5, period=1.5), "period"), (dict(density=0.5, mode="dense"), "mode"),
    (dict(density=0.5, structured="row"), "structured"),
    (dict(density=0.5, index_format="csr"), "index_format"),
])
@pytest.mark.parametrize("make", [lambda **kw: SWATLinear(3, 3, **kw),
                                  lambda **kw: SWATConv2d(3, 3, 3, **kw)])
def test_bad_arguments_name_the_argument(make, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make(**kwargs)


def test_bad_density_assignment_names_density():
    layer = SWATLinear(3, 3, density=0.5)
    with pytest.raises(ValueError, match="density"):
        layer.density = 0
