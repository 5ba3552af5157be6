"""Memory of truly sparse training: the estimate made before allocating against what is really held."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swatlib.models.mlp import SparseMLP
from swatlib.optim import DecoupledSGD
from swatlib.sparse import native
from swatlib.sparse.memory import (
    SAVED_BYTES_PER_HIDDEN_UNIT,
    MemoryEstimate,
    available_memory,
    check_fits,
    state_bytes,
    training_memory,
)

SIZES = [300, 120, 80, 5]
EPSILON = 4.0
BATCH = 32


def _model() -> SparseMLP:
    return SparseMLP(SIZES, epsilon=EPSILON, dropout=0.3, generator=torch.Generator().manual_seed(0))


def _batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, SIZES[0], generator=generator), torch.randint(0, SIZES[-1], (BATCH,),
                                                                           generator=generator)


def test_connection_counts_are_the_models():
    estimate = training_memory(SIZES, epsilon=EPSILON, batch_size=BATCH)
    assert list(estimate.connections) == [layer.nnz for layer in _model().linears]


def test_paper_first_row_has_the_erdos_renyi_count():
    # Table 4's 65536-0.5M-0.5M-2 at epsilon 10: the Erdős–Rényi rule gives 16.7 M connections.
    estimate = training_memory([65536, 500_000, 500_000, 2], epsilon=10, batch_size=128)
    assert sum(estimate.connections) == 16_655_360


@pytest.mark.skipif(not native.available(), reason="native kernels unavailable (no C compiler)")
def test_state_estimate_is_exactly_what_model_and_optimizer_hold_in_training():
    model = _model()
    optimizer = DecoupledSGD(model.parameters(), lr=0.01)
    x, y = _batch()
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert state_bytes(model, optimizer) == training_memory(SIZES, epsilon=EPSILON, batch_size=BATCH).state_bytes


def test_activation_estimate_bounds_what_backward_keeps():
    model = _model()
    held = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in held:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    x, y = _batch()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    kept = sum(saved.values())
    estimate = training_memory(SIZES, epsilon=EPSILON, batch_size=BATCH)
    # the input copy and the per-hidden-unit terms are really kept, and the estimate covers everything
    assert BATCH * (4 * SIZES[0] + SAVED_BYTES_PER_HIDDEN_UNIT * sum(SIZES[1:-1])) <= kept
    assert kept <= estimate.activation_bytes


def test_a_configuration_that_does_not_fit_is_refused_in_one_line_naming_both_amounts():
    estimate = training_memory([65536, 5_000_000, 5_000_000, 2], epsilon=5, batch_size=128)
    with pytest.raises(MemoryError) as error:
        check_fits(estimate, available=4 * 2**30, what="65536-5M-5M-2")
    message = str(error.value)
    assert "\n" not in message and "65536-5M-5M-2" in message
    assert f"{estimate.peak_bytes / 2**30:.2f} GiB" in message and "4.00 GiB is available" in message
    check_fits(estimate, available=estimate.peak_bytes)  # exactly enough: accepted


def test_peak_is_the_larger_of_initialisation_and_training():
    estimate = MemoryEstimate((10,), state_bytes=100, init_bytes=500, activation_bytes=300)
    assert estimate.peak_bytes == 500
    assert MemoryEstimate((10,), 100, 50, 300).peak_bytes == 400


def test_available_memory_is_positive():
    assert available_memory() > 0


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(sizes=[10], epsilon=1.0, batch_size=4), "sizes"),
    (dict(sizes=[10, 0, 2], epsilon=1.0, batch_size=4), "sizes"),
    (dict(sizes=[10, 5, 2], epsilon=1.0, batch_size=0), "batch_size"),
    (dict(sizes=[10, 5, 2], epsilon=-1.0, batch_size=4), "epsilon"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        training_memory(kwargs.pop("sizes"), **kwargs)
