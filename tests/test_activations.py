"""All-ReLU's sign convention (SPEC §2), SReLU, and the activation factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from swatlib.activations import AllReLU, LeakyReLU, ReLU, SReLU, make_activation


@pytest.mark.parametrize(("layer_index", "slope"), [(1, -0.6), (2, 0.6), (3, -0.6), (4, 0.6)])
def test_all_relu_alternates_starting_with_minus_alpha(layer_index, slope):
    act = AllReLU(0.6, layer_index)
    assert act.slope == slope
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0], requires_grad=True)
    y = act(x)
    torch.testing.assert_close(y, torch.tensor([-2.0 * slope, -0.5 * slope, 0.0, 0.5, 3.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([slope, slope, slope, 1.0, 1.0]))
    assert list(act.parameters()) == []


def test_first_hidden_layer_maps_negative_inputs_to_positive_outputs():
    # The authors' code: slopes (-α, +α, -α) for three hidden layers.
    x = torch.full((4,), -1.0)
    outputs = [AllReLU(0.75, layer)(x)[0].item() for layer in (1, 2, 3)]
    assert outputs == [0.75, -0.75, 0.75]


def test_srelu_piecewise_definition_and_parameter_count():
    act = SReLU(3, dtype=torch.float64)
    with torch.no_grad():
        act.t_left.copy_(torch.tensor([-1.0, 0.0, 0.5]))
        act.a_left.copy_(torch.tensor([0.1, 0.2, 0.3]))
        act.t_right.copy_(torch.tensor([2.0, -1.0, 1.0]))   # right threshold = t_left + |t_right|
        act.a_right.copy_(torch.tensor([0.5, 2.0, 1.0]))
    assert sum(p.numel() for p in act.parameters()) == 4 * 3
    x = torch.tensor([[-3.0, -1.0, 0.0], [0.5, 0.5, 1.0], [4.0, 3.0, 2.0]], dtype=torch.float64)
    t_l, a_l = act.t_left.detach(), act.a_left.detach()
    t_r, a_r = t_l + act.t_right.detach().abs(), act.a_right.detach()
    expected = torch.where(x >= t_r, t_r + a_r * (x - t_r), torch.where(x <= t_l, t_l + a_l * (x - t_l), x))
    torch.testing.assert_close(act(x), expected)
    assert act(x)[0, 0].item() == pytest.approx(-1.0 + 0.1 * -2.0)   # left branch
    assert act(x)[2, 0].item() == pytest.approx(1.0 + 0.5 * 3.0)    # right branch (t_r = 1)


def test_srelu_gradcheck_and_default_init():
    act = SReLU(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.count_nonzero(act.t_left) == 0 and bool((act.a_right == 1).all())
    assert bool(((act.a_left >= 0) & (act.a_left <= 1)).all())
    assert bool(((act.t_right >= 0) & (act.t_right <= 5)).all())
    x = (torch.randn(4, 5, dtype=torch.float64) * 3).requires_grad_()
    params = dict(act.named_parameters())

    def run(x, *values):
        return torch.func.functional_call(act, dict(zip(params, values)), (x,))

    assert torch.autograd.gradcheck(run, (x, *(p.detach().clone().requires_grad_() for p in params.values())))


def test_srelu_select_features_shrinks_parameters_and_state():
    act = SReLU(6, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(act.parameters())
    act(torch.randn(3, 6)).sum().backward()
    opt.step()
    keep = torch.tensor([0, 2, 5])
    before = {name: (p.detach()[keep].clone(), opt.state[p]["exp_avg"][keep].clone())
              for name, p in act.named_parameters()}
    act.select_features(keep, opt)
    assert act.num_features == 3
    for name, param in act.named_parameters():
        assert torch.equal(param.detach(), before[name][0])
        assert torch.equal(opt.state[param]["exp_avg"], before[name][1])
    act(torch.randn(2, 3)).sum().backward()
    opt.step()


def test_factory_and_reexports():
    assert isinstance(make_activation("relu"), ReLU) and ReLU is nn.ReLU
    leaky = make_activation("leaky_relu", alpha=0.05)
    assert isinstance(leaky, LeakyReLU) and leaky.negative_slope == 0.05
    all_relu = make_activation("all_relu", alpha=0.6, layer_index=2)
    assert isinstance(all_relu, AllReLU) and all_relu.slope == 0.6
    assert make_activation("srelu", num_features=7).num_features == 7


@pytest.mark.parametrize(("call", "name"), [
    (lambda: AllReLU(-0.1, 1), "alpha"),
    (lambda: AllReLU(0.5, 0), "layer_index"),
    (lambda: AllReLU(0.5, 1.5), "layer_index"),
    (lambda: make_activation("swish"), "name"),
    (lambda: make_activation("leaky_relu", alpha=-1.0), "alpha"),
    (lambda: make_activation("srelu"), "num_features"),
    (lambda: SReLU(0), "num_features"),
    (lambda: SReLU(3)(torch.zeros(2, 4)), "input"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
