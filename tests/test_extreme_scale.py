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


# --- measured Table 4 rows --------------------------------------------------------------------------

from swatlib.experiments import extreme_scale as ext  # noqa: E402
from swatlib.experiments.runs import RunResult  # noqa: E402

TINY = 0.0005  # 33-250-250-2 and 33-2500x10-2


def test_scaled_sizes_shrink_every_width_but_the_classes():
    assert ext.scaled_sizes("65536-0.5M-0.5M-2", TINY) == (33, 250, 250, 2)
    assert ext.scaled_sizes("65536-5Mx10-2") == ARCHITECTURES["65536-5Mx10-2"][0]


@pytest.mark.parametrize("arguments, match", [
    ({"architecture": "65536-1M-2"}, "architecture must be one of 65536-0.5M-0.5M-2, .*, got '65536-1M-2'"),
    ({"scale": 0.0}, r"scale must be in \(0, 1\], got 0.0"),
    ({"train_batches": 0}, r"train_batches \(None for all\) must be a positive integer, got 0"),
    ({"inference_batches": 1.5}, r"inference_batches \(None for all\) must be a positive integer"),
    ({"micro_batch_size": 0}, "micro_batch_size must be a positive integer"),
    ({"threads": True}, "threads must be a positive integer"),
])
def test_bad_row_specs_are_named(arguments, match):
    arguments = {"architecture": "65536-0.5M-0.5M-2", **arguments}
    with pytest.raises(ValueError, match=match):
        ext.make_spec(arguments.pop("architecture"), **arguments)


def test_cli_bad_argument_is_one_line_and_status_2(capsys):
    assert ext._main(["65536-0.5M-0.5M-2", "--threads", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "error: threads must be a positive integer, got 0" and captured.out == ""


def test_dense_training_bytes_count_weight_gradient_and_momentum():
    dense = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 2))
    assert ext.dense_training_bytes((5, 4, 2)) == 12 * sum(p.numel() for p in dense.parameters())


def test_fewer_wasap_workers_fit_as_the_micro_batch_grows():
    sizes, epsilon = ARCHITECTURES["65536-5M-5M-2"]
    fits = [ext.replicas_that_fit(sizes, epsilon=epsilon, batch_size=b, available=24 * 2**30) for b in (16, 32, 128)]
    assert fits[0] > fits[1] > fits[2] >= 0
    state = training_memory(sizes, epsilon=epsilon, batch_size=16).state_bytes
    assert ext.replicas_that_fit(sizes, epsilon=epsilon, batch_size=16, available=state) == 0


@pytest.mark.slow
def test_a_row_is_measured_in_its_own_process_and_tabulated():
    spec = ext.make_spec("65536-0.5M-0.5M-2", scale=TINY, train_batches=None, micro_batch_size=32, threads=1)
    lines = []
    result = ext._compute(spec, lines.append)
    model = SparseMLP([33, 250, 250, 2], epsilon=10.0, generator=torch.Generator().manual_seed(0))
    assert result["connections"] == model.nnz and result["connections_per_layer"] == [l.nnz for l in model.linears]
    assert result["full_epoch"] and result["timed_batches"] == result["epoch_batches"] == 55  # ceil(7000 / 128)
    assert len(result["losses"]) == 55 and result["epoch_seconds"] == result["train_seconds"]
    assert result["inferred_samples"] == result["test_samples"] == 3000
    assert result["peak_rss_bytes"] >= result["baseline_rss_bytes"] > 0
    assert any("SET evolution" in line for line in lines)
    table = ext.table4([RunResult(spec, "ok", result)], available=24 * 2**30)
    row = table.iloc[0]
    assert row["connections (ours)"] == model.nnz and row["timed batches"] == "full epoch"
    assert row["epsilon x (n_in + n_out) summed"] == round(10 * (283 + 500 + 252))


def test_a_row_that_fails_names_the_row_and_the_reason():
    spec = ext.make_spec("65536-0.5M-0.5M-2", scale=TINY, train_batches=1, threads=1)
    spec["dataset"] = "no-such-set"
    with pytest.raises(RuntimeError, match=r"^Table 4 row 65536-0.5M-0.5M-2 × 0.0005 failed: .*no-such-set"):
        ext._compute(spec, lambda line: None)
