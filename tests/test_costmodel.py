"""Cost model: FLOP ledger, density assignment, memory arithmetic and accelerator model."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from swatlib.costmodel import (CALIBRATED_LOAD_IMBALANCE, AcceleratorConfig, MeasuredLedger,
                               analyse, arch_table, backward_memory, build_ledger, calibrate,
                               calibrate_load_imbalance, layer_densities, layer_table,
                               method_names, nominal_ledger, plan, record, simulate, speedups,
                               tensor_bytes, utilisation)
from swatlib.models import build_model

# ---------------------------------------------------------------- FlopCounterMode cross-check


@pytest.mark.parametrize("name, batch", [("resnet18", 1), ("vgg16", 2), ("wrn16_8", 1),
                                         ("densenet121", 1), ("resnet50", 1)])
def test_dense_ledger_matches_flop_counter(name, batch, one_thread):
    torch.manual_seed(0)
    model = build_model(name, device="cpu")
    x = torch.randn(batch, *model.input_shape)
    measured = MeasuredLedger()
    with FlopCounterMode(display=False) as counter, measured, measured.watch(model):
        model(x).sum().backward()
        measured.end_step(batch)
    table = layer_table(build_model(name))
    nominal = nominal_ledger(table, plan(table, "dense", 1.0, batch_size=batch), batch)
    assert nominal.training_flops() == pytest.approx(counter.get_total_flops(), rel=0.01)
    assert 2 * measured.ledger().dense_macs() == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_linear_network_flops_by_hand():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    table = layer_table(model, (8,))
    ledger = nominal_ledger(table, plan(table, "dense", 1.0, batch_size=3), 3)
    # forward 3·(32 + 8), input gradient only for the second layer 3·8, weight gradient 3·40.
    assert ledger.macs() == 3 * 40 + 3 * 8 + 3 * 40


# ---------------------------------------------------------------- methods


def test_swat_u_first_layer_dense_others_at_density():
    table = list(arch_table("resnet18"))
    plans = plan(table, "swat-u", 0.3)
    assert plans[0].density == 1.0 and "input_grad" not in plans[0].phases
    assert all(p.density == 0.3 for p in plans[1:])
    assert plans[-1].layer.kind == "linear" and plans[-1].weight_density == 0.3
    middle = plans[5].phases
    assert middle["forward"].mac_fraction == pytest.approx(0.3)
    assert middle["input_grad"].mac_fraction == pytest.approx(0.3)
    assert middle["weight_grad"].weight == 1.0 and middle["weight_grad"].act == 0.3


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "densenet121"])
@pytest.mark.parametrize("distribution", ["erk", "er"])
@pytest.mark.parametrize("density", [0.05, 0.2, 0.5, 0.9])
def test_scaled_distributions_meet_budget(arch, distribution, density):
    table = list(arch_table(arch))
    densities = layer_densities(table, distribution, density)
    numel = {row.name: row.weight_numel for row in table if row.kind in ("conv", "linear")}
    kept = sum(densities[name] * n for name, n in numel.items())
    assert kept == pytest.approx(density * sum(numel.values()), rel=1e-9)
    assert all(0.0 < d <= 1.0 for d in densities.values())
    # uncapped layers keep the ERK proportions exactly
    rows = {row.name: row for row in table}
    ratios = set()
    for name, d in densities.items():
        out_ch, in_ch, *kernel = rows[name].weight_shape
        extra = sum(kernel) if distribution == "erk" else 0
        score = (out_ch + in_ch + extra) / (out_ch * in_ch * math.prod(kernel))
        if d < 1.0:
            ratios.add(round(d / score, 6))
    assert len(ratios) == 1


def test_erk_favours_small_layers_over_wide_3x3_convolutions():
    densities = layer_densities(list(arch_table("resnet50")), "erk", 0.2)
    assert densities["stages.0.0.conv1"] == 1.0  # 64→64 1×1: capped
    assert densities["stem.0"] > 0.2 > densities["fc"] > densities["stages.3.0.conv2"]


@pytest.mark.parametrize("method", [m for m in method_names() if m != "dense"])
@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_training_flop_reduction_monotone_in_density(method, arch):
    reductions = [analyse(arch, method, d).training_flop_reduction
                  for d in (1.0, 0.9, 0.7, 0.5, 0.3, 0.1)]
    assert reductions[0] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(reductions, reductions[1:]))


def test_phase_formulas_on_a_hidden_linear_layer():
    # the second layer of two: M = 100 MACs per example in each phase.
    table = layer_table(nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10)), (10,))

    def second(method):
        ledger = nominal_ledger(table, plan(table, method, 0.25, batch_size=1), 1)
        return {row["phase"]: row["macs"] for row in ledger.rows() if row["layer"] == "1"}

    assert second("dense") == {"forward": 100, "input_grad": 100, "weight_grad": 100}
    assert second("swat-u") == pytest.approx({"forward": 25, "input_grad": 25, "weight_grad": 25})
    assert second("set") == pytest.approx({"forward": 25, "input_grad": 25, "weight_grad": 25})
    assert second("rigl") == pytest.approx(
        {"forward": 25, "input_grad": 25, "weight_grad": 100 * (0.25 * 100 + 1) / 101})
    assert second("meprop") == pytest.approx(
        {"forward": 100, "input_grad": 25, "weight_grad": 25})


def test_meprop_keeps_inference_dense_and_rigl_matches_spec_formula():
    meprop = analyse("resnet18", "meprop", 0.2)
    assert meprop.inference_flop_reduction == 0.0 and meprop.weight_memory_reduction == 0.0
    # RigL per step: (3·f_S·ΔT + 2·f_S + f_D)/(ΔT + 1), the first layer's dX excluded in both.
    table = list(arch_table("vgg16"))
    plans = plan(table, "rigl", 0.2, batch_size=1)
    f_s = sum(p.layer.macs * p.weight_density for p in plans)
    f_d = sum(p.layer.macs for p in plans)
    first_dx = plans[0].layer.macs  # first layer is dense under RigL's uniform distribution
    expected = (3 * f_s * 100 + 2 * f_s + f_d) / 101 - first_dx
    assert nominal_ledger(table, plans, 1).macs() == pytest.approx(expected, rel=1e-12)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        analyse("resnet18", "swat-u", 0.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        analyse("resnet18", "swat-u", 1.5)
    with pytest.raises(ValueError, match="swat-u"):
        analyse("resnet18", "swat", 0.5)
    with pytest.raises(ValueError, match="resnet50"):
        analyse("resnet", "swat-u", 0.5)
    with pytest.raises(ValueError, match="bitmap"):
        analyse("resnet18", "swat-u", 0.5, index_format="ell")


# ---------------------------------------------------------------- measured ledger


def test_measured_ledger_equals_nominal_when_fed_nominal_nnz():
    table = list(arch_table("resnet18"))
    nominal = nominal_ledger(table, plan(table, "swat-u", 0.3, batch_size=4), 4)
    ledger = MeasuredLedger()
    with ledger:
        for _ in range(2):  # two identical steps average to one
            for e in nominal.entries:
                record(e.layer, e.phase, e.macs_dense, e.density_weight * e.numel_weight,
                       e.numel_weight, e.density_act * e.numel_act, e.numel_act,
                       e.density_out * e.numel_out, e.numel_out)
            ledger.end_step(4)
    measured = ledger.ledger()
    for phases in (("forward",), ("input_grad",), ("weight_grad",)):
        assert measured.macs(phases) == pytest.approx(nominal.macs(phases), rel=1e-12)
    assert measured.batch_size == 4
    # the accelerator sees the same conv / linear work (the nominal extras were not recorded)
    conv_only = replace(nominal, extras=())
    dense = simulate(build_ledger("resnet18", "dense", 1.0, batch_size=4))
    assert speedups(dense, simulate(measured)) == pytest.approx(
        speedups(dense, simulate(conv_only)), rel=1e-9)


def test_record_outside_a_ledger_is_a_no_op_and_bad_records_fail():
    record("x", "forward", 10, 1, 1, 1, 1, 1, 1)  # nothing active: ignored
    ledger = MeasuredLedger()
    with pytest.raises(ValueError, match="phase"):
        ledger.record("x", "backward", 10, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="nnz"):
        ledger.record("x", "forward", 10, 2, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="end_step"):
        ledger.ledger()


def test_watch_counts_natural_zeros(one_thread):
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]))
    x = torch.tensor([[1.0, 2.0, 0.0, 0.0]])
    ledger = MeasuredLedger()
    with ledger, ledger.watch(layer):
        layer(x).sum().backward()
        ledger.end_step(1)
    measured = ledger.ledger()
    assert measured.dense_macs() == 12 + 12  # forward and dW (x needs no gradient)
    assert measured.macs(("forward",)) == pytest.approx(12 * 0.25 * 0.5)
    assert measured.macs(("weight_grad",)) == pytest.approx(12 * 0.5)


# ---------------------------------------------------------------- memory model


def _two_layer():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    return layer_table(model, (8,))


@pytest.mark.parametrize("index_format, sparse_tensor", [
    ("none", 4 * 4),                      # 4 values of 4 bytes
    ("bitmap", 4 * 4 + 1),                # + 8 elements / 8 bits
    ("csr", 4 * 4 + 4 * 4 + (2 + 1) * 4),  # + 4 column indices + 3 row pointers
    ("coo", 4 * 4 + 4 * 2 * 4),           # + 4 (row, column) pairs
])
def test_memory_arithmetic_two_layer_network(index_format, sparse_tensor):
    table = _two_layer()
    plans = plan(table, "swat-u", 0.5, batch_size=2)
    memory = backward_memory(
        table, batch_size=2, index_format=index_format,
        weight_density={p.layer.name: p.weight_density for p in plans},
        activation_density={p.layer.name: p.saved_act_density for p in plans})
    dense = backward_memory(table, batch_size=2, index_format=index_format)
    # batch 2: first input 2·8 fp32 (dense: first layer), ReLU mask 8 bits, second input 2·4.
    assert dense.activation_bytes == 64 + 1 + 32
    assert memory.activation_bytes == 64 + 1 + sparse_tensor
    # weights 8·4 and 4·2 fp32, biases 4 and 2 fp32 (dense in both).
    assert dense.weight_bytes == 128 + 16 + 32 + 8
    assert memory.weight_bytes == 128 + 16 + sparse_tensor + 8


def test_tensor_bytes_and_shared_inputs():
    assert tensor_bytes(100, 1.0, 10, "coo") == 400
    assert tensor_bytes(100, 0.1, 10, "csr") == 10 * 4 + 10 * 4 + 11 * 4
    assert tensor_bytes(100, 0.01, 10, "bitmap") == 4 + 13
    # a block input that feeds a convolution and the projection shortcut is saved once
    table = list(arch_table("resnet18"))
    memory = backward_memory(table, batch_size=1, index_format="none")
    inputs = [t for t in memory.saved if t.what == "input"]
    convs = [row for row in table if row.kind in ("conv", "linear")]
    assert len(inputs) == len({row.input_id for row in convs}) < len(convs)


def test_memory_reductions_track_density():
    for density in (0.5, 0.2, 0.1):
        plain = analyse("vgg16", "swat-u", density, index_format="none")
        with_index = analyse("vgg16", "swat-u", density, index_format="bitmap")
        assert 0.0 < with_index.weight_memory_reduction < plain.weight_memory_reduction
        assert plain.weight_memory_reduction < 1.0 - density
        assert 0.0 < plain.activation_memory_reduction < 1.0 - density
    assert analyse("vgg16", "set", 0.2).activation_memory_reduction == 0.0


# ---------------------------------------------------------------- accelerator model


def test_utilisation_shape():
    assert utilisation(1.0, 0.5) == 1.0
    assert utilisation(0.2, 0.0) == 1.0
    assert utilisation(0.1, 0.3) < utilisation(0.5, 0.3) < 1.0


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("method", method_names())
def test_speedups_between_one_and_inverse_density(arch, method):
    for density in (0.5, 0.2, 0.1):
        report = analyse(arch, method, density)
        table = list(arch_table(arch))
        smallest = min(d.mac_fraction for p in plan(table, method, density)
                       for d in p.phases.values())
        for key in ("forward_speedup", "backward_speedup", "training_speedup"):
            assert 1.0 - 1e-12 <= getattr(report, key) <= 1.0 / smallest + 1e-12


def test_more_imbalance_means_less_speedup():
    values = [analyse("resnet50", "swat-u", 0.2,
                      accelerator=AcceleratorConfig(load_imbalance=k)).training_speedup
              for k in (0.0, 0.1, 0.3, 1.0)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_calibration_reproduces_published_speedup():
    kappa = calibrate()
    assert kappa == pytest.approx(CALIBRATED_LOAD_IMBALANCE, abs=1e-3)
    report = analyse("resnet50", "swat-u", 0.2)
    assert report.training_speedup == pytest.approx(3.3, rel=0.02)
    assert report.load_imbalance == CALIBRATED_LOAD_IMBALANCE
    refit = analyse("resnet50", "swat-u", 0.2,
                    accelerator=replace(AcceleratorConfig(), load_imbalance=kappa))
    assert refit.training_speedup == pytest.approx(3.3, rel=1e-6)


def test_unreachable_calibration_target_is_an_error():
    dense = build_ledger("resnet18", "dense", 1.0)
    sparse = build_ledger("resnet18", "swat-u", 0.5)
    with pytest.raises(ValueError, match="not reachable"):
        calibrate_load_imbalance(dense, sparse, 100.0)


def test_dense_method_costs_nothing_extra():
    report = analyse("wrn16_8", "dense", 0.3)
    assert report.training_flops == report.dense_training_flops
    assert report.activation_memory_reduction == 0.0 == report.weight_memory_reduction
    assert report.training_speedup == pytest.approx(1.0)


def test_watch_records_only_while_the_ledger_is_active(one_thread):
    layer = nn.Linear(4, 3)
    ledger = MeasuredLedger()
    with ledger.watch(layer):
        layer(torch.ones(2, 4))  # e.g. an evaluation pass outside the training block
        with ledger:
            layer(torch.ones(2, 4))
            ledger.end_step(2)
    assert ledger.ledger().dense_macs() == 2 * 12  # the forward inside the block only
