"""MaskMaxPool2d: nn.MaxPool2d bit for bit, keeping only a 1-byte argmax per output for backward."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from swatlib.models import SmallCNN
from swatlib.swat import MaskMaxPool2d, SavedTensorMeter, functions, mask_max_pool2d, swatify

#: nn.MaxPool2d settings: plain, ResNet's overlapping stem pool, stride 1, ceil_mode, dilation,
#: rectangular windows, and a window of 256 elements (the largest a byte holds).
CONFIGS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=2, stride=2, padding=1, dilation=3),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), ceil_mode=True),
    dict(kernel_size=16, stride=3, padding=8),
]


@pytest.fixture(scope="module")
def small_chunks():
    """Batch chunks of 64 elements (two examples at least): every test batch of 4+ runs in chunks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(functions, "PRODUCT_CHUNK", 64)
        yield


def _twins(x, config):
    """Outputs and input gradients of nn.MaxPool2d and MaskMaxPool2d for one output gradient."""
    stock, ours = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    y_stock, y_ours = nn.MaxPool2d(**config)(stock), MaskMaxPool2d(**config)(ours)
    dy = torch.randn(y_stock.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    y_stock.backward(dy)
    y_ours.backward(dy)
    return (y_stock, stock.grad), (y_ours, ours.grad)


def _assert_identical(stock, ours):
    for a, b in zip(stock, ours):
        assert torch.equal(a, b) and a.stride() == b.stride()


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("layout", ["batch", "channels_last", "unbatched"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bit_identical_to_max_pool(small_chunks, config, layout, dtype):
    x = torch.randn(5, 3, 17, 19, generator=torch.Generator().manual_seed(0)).to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "unbatched":
        x = x[0]
    _assert_identical(*_twins(x, config))


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 6), channels=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), ph=st.integers(0, 2), pw=st.integers(0, 2),
       ceil_mode=st.booleans(), channels_last=st.booleans(), levels=st.sampled_from([3, 1000]),
       seed=st.integers(0, 2**16))
def test_bit_identical_over_shapes_and_ties(small_chunks, batch, channels, h, w, kh, kw, sh, sw, dh, dw,
                                            ph, pw, ceil_mode, channels_last, levels, seed):
    """Random shapes and settings; with 3 levels most windows hold tied maxima."""
    assume(2 * ph <= kh and 2 * pw <= kw)               # ATen: padding at most half the kernel
    assume(h + 2 * ph >= dh * (kh - 1) + 1 and w + 2 * pw >= dw * (kw - 1) + 1)
    x = torch.randint(levels, (batch, channels, h, w), generator=torch.Generator().manual_seed(seed)).float()
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    config = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                  ceil_mode=ceil_mode)
    if torch.isinf(F.max_pool2d(x, **config)).any():
        # A window covers only padding: PyTorch's argmax points outside it, so it is refused.
        with pytest.raises(ValueError, match="padding or dilation"):
            MaskMaxPool2d(**config)(x.requires_grad_())
    else:
        _assert_identical(*_twins(x, config))


def test_ties_route_the_gradient_to_torchs_argmax(small_chunks):
    x = torch.zeros(3, 2, 6, 6)                       # every window is one tie
    x[:, :, 2:4, 2:4] = 1.0                           # and some windows tie at 1
    _, index = F.max_pool2d(x, 3, 1, 1, return_indices=True)
    routed = torch.zeros(3, 2, 36).scatter_add_(2, index.flatten(2), torch.ones(3, 2, 36))
    leaf = x.clone().requires_grad_()
    MaskMaxPool2d(3, 1, 1)(leaf).backward(torch.ones(index.shape))
    assert torch.equal(leaf.grad, routed.view(x.shape))


def test_empty_batch():
    _assert_identical(*_twins(torch.randn(0, 3, 8, 8), dict(kernel_size=3, stride=2, padding=1)))


def test_float64_gradcheck():
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mask_max_pool2d(t, 3, 2, 1, ceil_mode=True), (x,))
    assert torch.autograd.gradcheck(lambda t: mask_max_pool2d(t, (2, 3), 1, (1, 0), (2, 1)), (x,))


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_saves_only_a_byte_per_output(small_chunks, config):
    saved = []
    x = torch.randn(4, 3, 17, 19, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = MaskMaxPool2d(**config)(x)
    assert [(t.dtype, t.shape) for t in saved] == [(torch.int8, y.shape)]
    assert sum(t.untyped_storage().nbytes() for t in saved) == y.numel()


def test_without_grad_nothing_is_saved():
    saved = []
    x = torch.randn(2, 3, 8, 8)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = MaskMaxPool2d(3, 2, 1)(x)
    assert saved == [] and torch.equal(y, F.max_pool2d(x, 3, 2, 1))


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(kernel_size=2, return_indices=True), "return_indices"), (dict(kernel_size=17), "kernel_size"),
    (dict(kernel_size=(1, 257)), "kernel_size")])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MaskMaxPool2d(**kwargs)


def _swatified_cnn(stock_pools):
    torch.manual_seed(0)
    model = swatify(SmallCNN(width=4), density=0.3)
    if stock_pools:                                   # put nn.MaxPool2d back
        for name, module in list(model.features.named_children()):
            if isinstance(module, MaskMaxPool2d):
                model.features[int(name)] = nn.MaxPool2d(module.kernel_size)
    return model


def test_swatify_swaps_max_pools_and_leaves_the_ones_it_cannot():
    model = swatify(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                                  nn.MaxPool2d(2, return_indices=True), nn.MaxPool2d(17)), density=0.5)
    assert [type(m) for m in model[1:]] == [MaskMaxPool2d, nn.MaxPool2d, nn.MaxPool2d]
    pool = model[1]
    assert (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode) == (3, 2, 1, True)


def test_swatified_small_cnn_trains_bit_identically_and_saves_less():
    ours, stock = _swatified_cnn(False), _swatified_cnn(True)
    pools = [m for m in ours.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 2 and all(type(m) is MaskMaxPool2d for m in pools)
    assert not any(isinstance(m, MaskMaxPool2d) for m in stock.modules())
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    # What the pools save: the stock one its dense float32 input and an int64 argmax per output.
    with SavedTensorMeter(ours) as meter_ours:
        ours(x)
    with SavedTensorMeter(stock) as meter_stock:
        stock(x)
    inputs = [16 * 4 * 28 * 28, 16 * 8 * 14 * 14]    # the two pools' inputs (width 4)
    outputs = [n // 4 for n in inputs]
    assert meter_stock.result.activations - meter_ours.result.activations == sum(
        4 * i + 8 * o - o for i, o in zip(inputs, outputs))
    assert meter_stock.result.weights == meter_ours.result.weights
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ours, stock)]
    for _ in range(3):
        losses = []
        for model, optimizer in zip((ours, stock), optimizers):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[0] == losses[1]
    for a, b in zip(ours.state_dict().values(), stock.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)   # unset thresholds are NaN
