"""The authors' decoupled SGD and the optimizer-state remapping used by topology changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from swatlib.optim import DecoupledSGD, make_optimizer, replace_parameter


def test_update_rule_is_the_authors_decoupled_one():
    lr, m, wd = 0.05, 0.9, 0.01
    layer = nn.Linear(3, 2)
    opt = DecoupledSGD(layer.parameters(), lr=lr, momentum=m, weight_decay=wd)
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    v_w, v_b = torch.zeros_like(weight), torch.zeros_like(bias)
    for step in range(4):
        x = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        layer(x).square().sum().backward()
        g_w, g_b = layer.weight.grad.clone(), layer.bias.grad.clone()
        opt.step()
        v_w, v_b = m * v_w - lr * g_w, m * v_b - lr * g_b
        weight, bias = (1 - wd) * weight + v_w, (1 - wd) * bias + v_b   # bias decays too, wd not × lr
        torch.testing.assert_close(layer.weight.detach(), weight)
        torch.testing.assert_close(layer.bias.detach(), bias)
        torch.testing.assert_close(opt.state[layer.weight]["momentum_buffer"], v_w)


@pytest.mark.parametrize("weight_decay", [0.0, 2e-4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_has_the_bits_of_the_per_tensor_update_and_skips_parameters_without_gradient(weight_decay, dtype):
    g = torch.Generator().manual_seed(0)
    sizes = [7, 1, 300, 5]
    params = [nn.Parameter(torch.randn(n, generator=g, dtype=dtype)) for n in sizes]
    expected = [p.detach().clone() for p in params]
    velocities = [torch.zeros_like(p) for p in expected]
    opt = DecoupledSGD(params, lr=0.03, momentum=0.9, weight_decay=weight_decay)
    for _ in range(3):
        grads = [torch.randn(n, generator=g, dtype=dtype) for n in sizes]
        for i, (param, grad) in enumerate(zip(params, grads)):
            param.grad = None if i == 1 else grad   # the second parameter never has a gradient
        opt.step()
        for i, grad in enumerate(grads):
            if i == 1:
                continue
            velocities[i].mul_(0.9).add_(grad, alpha=-0.03)
            if weight_decay:
                expected[i].mul_(1.0 - weight_decay)
            expected[i].add_(velocities[i])
    for param, value in zip(params, expected):
        assert torch.equal(param.detach(), value)
    assert params[1] not in opt.state   # no gradient: no state, no decay


def test_without_weight_decay_it_matches_torch_sgd():
    models = [nn.Linear(4, 3, dtype=torch.float64) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [DecoupledSGD(models[0].parameters(), lr=0.1, momentum=0.9, weight_decay=0.0),
                  torch.optim.SGD(models[1].parameters(), lr=0.1, momentum=0.9)]
    for step in range(5):
        x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        for model, opt in zip(models, optimizers):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(models[0].weight, models[1].weight, rtol=1e-12, atol=1e-12)


def test_weight_decay_differs_from_torch_coupled_decay():
    params = [nn.Parameter(torch.ones(1)) for _ in range(2)]
    authors = make_optimizer("authors", [params[0]], lr=0.1, momentum=0.0, weight_decay=0.01)
    coupled = make_optimizer("torch", [params[1]], lr=0.1, momentum=0.0, weight_decay=0.01)
    assert isinstance(authors, DecoupledSGD) and isinstance(coupled, torch.optim.SGD)
    for param, opt in zip(params, (authors, coupled)):
        param.grad = torch.zeros(1)
        opt.step()
    assert params[0].item() == pytest.approx(0.99)    # (1 − wd)·W
    assert params[1].item() == pytest.approx(0.999)   # W − lr·wd·W


def test_replace_parameter_remaps_per_element_state_only():
    param = nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    opt = torch.optim.Adam([param], lr=0.1)
    param.grad = torch.tensor([0.1, 0.2, 0.3, 0.4])
    opt.step()
    exp_avg = opt.state[param]["exp_avg"].clone()
    step = opt.state[param]["step"].clone()
    replace_parameter(param, torch.tensor([9.0, 8.0, 7.0]), torch.tensor([3, -1, 0]), opt)
    state = opt.state[param]
    assert param.grad is None and torch.equal(param.detach(), torch.tensor([9.0, 8.0, 7.0]))
    assert torch.equal(state["exp_avg"], torch.stack([exp_avg[3], torch.tensor(0.0), exp_avg[0]]))
    assert state["exp_avg_sq"].shape == (3,) and state["exp_avg_sq"][1] == 0
    assert torch.equal(state["step"], step)
    param.grad = torch.ones(3)
    opt.step()


def test_resizing_works_while_the_last_loss_is_still_referenced():
    # Autograd caches a gradient accumulator per parameter for as long as the last graph lives; a
    # resized parameter must not be checked against the old shape in the next backward.
    layer = nn.Linear(4, 3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    loss = layer(torch.randn(2, 4)).sum()
    loss.backward()
    opt.step()
    weight = layer.weight
    replace_parameter(layer.weight, layer.weight.detach()[:2].clone(), torch.arange(8), opt)
    replace_parameter(layer.bias, layer.bias.detach()[:2].clone(), torch.arange(2), opt)
    loss = layer(torch.randn(2, 4)).sum()
    loss.backward()
    opt.step()
    assert layer.weight is weight and layer.weight.grad.shape == (2, 4)


def test_resizing_a_parameter_saved_by_a_live_graph_is_refused():
    bias = nn.Parameter(torch.ones(3))
    pending = (bias * bias).sum()  # saves ``bias`` for a backward that never runs
    with pytest.raises(RuntimeError, match="live autograd graph"):
        replace_parameter(bias, torch.zeros(2), torch.arange(2))
    assert bias.shape == (3,)
    del pending
    replace_parameter(bias, torch.zeros(2), torch.arange(2))
    assert bias.shape == (2,)


@pytest.mark.parametrize(("call", "name"), [
    (lambda p: DecoupledSGD(p, lr=-0.1), "lr"),
    (lambda p: DecoupledSGD(p, lr=0.1, momentum=1.0), "momentum"),
    (lambda p: DecoupledSGD(p, lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (lambda p: make_optimizer("adamw", p, lr=0.1), "name"),
    (lambda p: replace_parameter(p[0], torch.zeros(2), torch.tensor([0])), "source"),
    (lambda p: replace_parameter(p[0], torch.zeros(2), torch.tensor([0, 5])), "source"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call([nn.Parameter(torch.ones(3))])
