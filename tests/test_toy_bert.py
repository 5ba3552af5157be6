"""Tests of the toy BERT, its sparsification and its masked-language-model task (tiny sizes)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from swatlib.models import MaskedLM, ToyBERT
from swatlib.models.toy_bert import mask_tokens, sparsify
from swatlib.sparse import SparseLinear
from swatlib.swat import SWATLinear
from swatlib.topk import topk_mask
from swatlib.topology import RigL
from swatlib.train import fit

V, W, T = 40, 16, 8


def tiny(seed: int = 0, **kw) -> ToyBERT:
    return ToyBERT(V, width=W, depth=2, heads=2, ffn=32, max_seq=T, generator=torch.Generator().manual_seed(seed), **kw)


def tokens(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, V, (n, T), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_decoder_at_positions_only():
    model = tiny()
    x = tokens()
    full = model(x)
    assert full.shape == (3, T, V)
    positions = torch.zeros(3, T, dtype=torch.bool)
    positions[0, 2] = positions[2, 5] = True
    picked = model(x, positions)
    assert picked.shape == (2, V)
    torch.testing.assert_close(picked, full[positions])


def test_embedding_is_frozen_and_decoder_untied():
    embedding = torch.randn(V, W, generator=torch.Generator().manual_seed(3))
    model = tiny(embedding=embedding)
    assert torch.equal(model.embed.weight, embedding) and not model.embed.weight.requires_grad
    assert model.decoder.weight.data_ptr() != model.embed.weight.data_ptr()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    F.cross_entropy(model(tokens()).reshape(-1, V), tokens().reshape(-1)).backward()
    optimizer.step()
    assert torch.equal(model.embed.weight, embedding)


def test_same_generator_same_model():
    a, b = tiny(5), tiny(5)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, T + 1, dtype=torch.int64), "max_seq"),
    (torch.full((2, T), V, dtype=torch.int64), "vocab_size"),
    (torch.zeros(2, T), "int64"),
])
def test_bad_tokens(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny()(bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"heads": 3}, "heads"), ({"width": 0}, "width"), ({"embedding": torch.zeros(V + 1, W)}, "embedding"),
])
def test_bad_construction(kwargs, match):
    options = dict(width=W, heads=2, max_seq=T) | kwargs
    with pytest.raises(ValueError, match=match):
        ToyBERT(V, **options)


@pytest.mark.parametrize("density", [0.0, 1.5, -0.2])
def test_sparsify_rejects_density_outside_0_1(density):
    with pytest.raises(ValueError, match=r"densities\['blocks.0.fc1'\] must be in \(0, 1\]"):
        sparsify(tiny(), {"blocks.0.fc1": density})


def test_sparsify_rejects_unknown_layers_and_kinds():
    with pytest.raises(ValueError, match="the layers of densities must be among .*; unknown: 'decoder'"):
        sparsify(tiny(), {"decoder": 0.5})
    with pytest.raises(ValueError, match="kind"):
        sparsify(tiny(), {"blocks.0.fc1": 0.5}, kind="dense")


def test_swat_layers_share_the_weights_and_compute_with_the_top_k_weights():
    """kind="swat": the SWAT layer keeps the Linear's Parameters; its forward (float64) is the dense model's
    with each sparse layer's weights cut to their Top-K magnitudes, and every weight gets a gradient."""
    model, reference = tiny(3).double(), tiny(3).double()
    weight = model.blocks[0].fc1.weight
    layers = sparsify(model, {"blocks.0.fc1": 0.25, "blocks.1.attn.v": 0.5}, kind="swat")
    assert all(isinstance(layer, SWATLinear) for layer in layers) and model.blocks[0].fc1.weight is weight
    assert layers[0].ledger_name == "blocks.0.fc1"
    with torch.no_grad():
        for name, density in (("blocks.0.fc1", 0.25), ("blocks.1.attn.v", 0.5)):
            w = reference.get_submodule(name).weight
            w.mul_(topk_mask(w, density))
    x = tokens()
    torch.testing.assert_close(model(x), reference(x))
    model(x).pow(2).sum().backward()
    assert bool((weight.grad != 0).float().mean() > 0.9)       # dense update: unkept weights learn too


def test_encoder_linears_selection():
    model = tiny()
    assert list(model.encoder_linears("ffn")) == ["blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2"]
    assert len(model.encoder_linears()) == 12 and len(model.encoder_linears("attention")) == 8
    with pytest.raises(ValueError, match="which"):
        model.encoder_linears("decoder")


def test_sparse_and_masked_twins_agree_in_float64():
    """Truly sparse and masked layers from one generator: same forward, same gradients."""
    models, layers = [], []
    for kind in ("sparse", "masked"):
        model = tiny(2).double()
        densities = {name: 0.3 for name in model.encoder_linears()}
        layers.append(sparsify(model, densities, kind=kind, generator=torch.Generator().manual_seed(9)))
        models.append(model)
    assert all(isinstance(layer, SparseLinear) for layer in layers[0])
    x = tokens()
    positions = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    outs = [model(x, positions) for model in models]
    torch.testing.assert_close(outs[0], outs[1])
    for model, out in zip(models, outs):
        out.pow(2).sum().backward()
    for sparse, masked in zip(layers[0], layers[1]):
        rows, cols, values = sparse.connections()
        m_rows, m_cols, m_values = masked.connections()
        assert torch.equal(rows, m_rows) and torch.equal(cols, m_cols) and torch.equal(values, m_values)
        torch.testing.assert_close(sparse.values.grad, masked.module.weight.grad[rows, cols])
        assert sparse.nnz == pytest.approx(0.3 * sparse.in_features * sparse.out_features, abs=1)


def test_gradcheck_float64():
    """Gradients through attention, LayerNorm, GELU and truly sparse layers, w.r.t. the position embedding."""
    model = tiny(4).double()
    sparsify(model, {"blocks.0.fc1": 0.5, "blocks.1.attn.q": 0.5}, generator=torch.Generator().manual_seed(1))
    x = tokens(2)
    position = model.position.detach().clone().requires_grad_()
    f = lambda pos: torch.func.functional_call(model, {"position": pos}, (x,)).pow(2).mean(-1)
    assert torch.autograd.gradcheck(f, (position,), eps=1e-6, atol=1e-5)


def test_mask_tokens_rates():
    x = torch.randint(3, V, (400, 50), generator=torch.Generator().manual_seed(0))
    corrupted, picked = mask_tokens(x, V, 2, torch.Generator().manual_seed(1))
    assert picked.any(1).all()
    assert torch.equal(corrupted[~picked], x[~picked])
    rate = picked.float().mean().item()
    assert 0.14 < rate < 0.17
    masked = (corrupted[picked] == 2).float().mean().item()
    kept = (corrupted[picked] == x[picked]).float().mean().item()
    assert 0.77 < masked < 0.83 and 0.08 < kept < 0.13   # 10 % kept + random draws of the same id
    assert int(corrupted.min()) >= 2


def make_task(**kw) -> MaskedLM:
    train = torch.randint(3, V, (64, T), generator=torch.Generator().manual_seed(0))
    held = torch.randint(3, V, (16, T), generator=torch.Generator().manual_seed(1))
    return MaskedLM(train, held, vocab_size=V, mask_id=2, steps_per_epoch=5, **kw)


def test_task_fixed_held_out_masks_and_loss_at_picked_positions_only():
    a, b = make_task(), make_task()
    assert torch.equal(a.eval_tokens, b.eval_tokens) and torch.equal(a.eval_positions, b.eval_positions)
    model = tiny()
    assert a.evaluate(model) == a.evaluate(model) == b.evaluate(model)
    batch = next(a.batches(4, torch.Generator().manual_seed(0)))
    corrupted, positions, targets = batch
    assert targets.numel() == positions.sum()
    expected = F.cross_entropy(model(corrupted)[positions], targets)
    torch.testing.assert_close(a.loss(model, batch), expected)


def test_task_validation():
    train = torch.randint(3, V, (8, T))
    with pytest.raises(ValueError, match="vocab_size"):
        MaskedLM(train, train, vocab_size=V - 10, mask_id=2)
    with pytest.raises(ValueError, match="rate"):
        MaskedLM(train, train, vocab_size=V, mask_id=2, rate=1.0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        MaskedLM(train, train, vocab_size=V, mask_id=2, steps_per_epoch=0)


def test_task_batches_cover_the_windows_before_repeating():
    task = make_task()
    seen = []
    original = task.train
    for corrupted, positions, targets in task.batches(8, torch.Generator().manual_seed(0)):
        seen.append(corrupted)
    assert len(seen) == 5
    # 5 batches of 8 from 64 windows: 40 distinct windows (compare the unmasked positions)
    assert task._order.numel() == 64 - 40
    assert original is task.train


def test_fit_learns_with_rigl_on_truly_sparse_layers():
    torch.manual_seed(0)
    model = tiny(1)
    layers = sparsify(model, {n: 0.5 for n in model.encoder_linears("ffn")}, generator=torch.Generator().manual_seed(2))
    # A learnable task: every window is the same sequence.
    train = torch.arange(3, 3 + T).repeat(32, 1)
    task = MaskedLM(train, train[:4], vocab_size=V, mask_id=2, steps_per_epoch=20)
    before = task.evaluate(model)["test_loss"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    rigl = RigL(layers, t_end=30, delta_t=10, optimizer=optimizer)
    nnz = [layer.nnz for layer in layers]
    history = fit(model, task, optimizer, epochs=2, batch_size=8, generator=torch.Generator().manual_seed(3),
                  topology=[rigl], log=lambda _: None)
    assert history[-1]["test_loss"] < before - 1.0
    assert [layer.nnz for layer in layers] == nnz
    assert rigl.t == 40


# ----------------------------------------------------------------------------- gradual magnitude pruning
from swatlib.topology import GradualMagnitudePruning  # noqa: E402


def test_gmp_cubic_schedule():
    layer = SparseLinear(10, 10, density=1.0, generator=torch.Generator().manual_seed(0))
    gmp = GradualMagnitudePruning([layer], final_density=0.2, t_start=10, t_end=50, delta_t=10)
    assert gmp.density(0) == 1.0 and gmp.density(10) == 1.0 and gmp.density(60) == pytest.approx(0.2)
    assert gmp.density(30) == pytest.approx(0.2 + 0.8 * 0.5 ** 3)
    assert [t for t in range(1, 70) if gmp.due(t)] == [10, 20, 30, 40, 50]


@pytest.mark.parametrize("kind", ["sparse", "masked"])
def test_gmp_prunes_smallest_magnitudes_to_the_schedule(kind):
    model = tiny(3)
    layers = sparsify(model, {n: 1.0 for n in model.encoder_linears("ffn")}, kind=kind,
                      generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    gmp = GradualMagnitudePruning(layers, final_density=0.25, t_start=2, t_end=6, delta_t=2, optimizer=optimizer)
    before = [layer.connections()[2].abs() for layer in layers]
    for t in range(1, 9):
        changes = gmp.step()
        if t == 2:
            for layer, old, (index, change) in zip(layers, before, sorted(changes.items())):
                kept = layer.connections()[2].abs()
                assert kept.numel() == math.ceil(gmp.density(2) * old.numel() - 1e-9)
                assert kept.min() >= old[change.removed].max()     # only the smallest went
    for layer in layers:
        assert layer.connections()[2].numel() == math.ceil(0.25 * layer.in_features * layer.out_features - 1e-9)


def test_gmp_validation():
    layer = SparseLinear(4, 4, density=1.0)
    with pytest.raises(ValueError, match="final_density"):
        GradualMagnitudePruning([layer], final_density=0.0, t_start=0, t_end=5)
    with pytest.raises(ValueError, match="initial_density"):
        GradualMagnitudePruning([layer], final_density=0.5, initial_density=0.4, t_start=0, t_end=5)
    with pytest.raises(ValueError, match="t_end"):
        GradualMagnitudePruning([layer], final_density=0.5, t_start=5, t_end=5)


def test_masked_layers_stay_masked_under_rigl_and_adamw():
    """AdamW's moments and decay must not revive weights outside a masked layer's topology."""
    model = tiny(0)
    layers = sparsify(model, {n: 0.3 for n in model.encoder_linears()}, kind="masked",
                      generator=torch.Generator().manual_seed(1))
    task = make_task()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    rigl = RigL(layers, t_end=20, delta_t=5, optimizer=optimizer)
    fit(model, task, optimizer, epochs=5, batch_size=8, generator=torch.Generator().manual_seed(2),
        topology=[rigl], log=lambda _: None)
    for layer in layers:
        outside = (layer.module.weight != 0) & ~layer.module.topology_mask
        assert not outside.any()
        assert layer.nnz == math.ceil(0.3 * layer.module.weight.numel() - 1e-9)
