"""The transformer FLOP ledger: against torch's FlopCounterMode on the dense toy BERT, and its invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from swatlib.costmodel import (ADAMW_FLOPS_PER_PARAMETER, TopKCost, TransformerShape, model_ledger, model_topk,
                               rigl_growth_flops, transformer_ledger)
from swatlib.costmodel.ledger import EXTRA_KINDS
from swatlib.models import ToyBERT
from swatlib.models.toy_bert import mask_tokens, sparsify

SIZES = dict(width=32, depth=2, heads=4, ffn=64, max_seq=16)
V, B = 50, 4


def model_and_batch(seed: int = 0):
    model = ToyBERT(V, **SIZES, generator=torch.Generator().manual_seed(seed))
    x = torch.randint(3, V, (B, SIZES["max_seq"]), generator=torch.Generator().manual_seed(seed))
    corrupted, positions = mask_tokens(x, V, 2, torch.Generator().manual_seed(seed + 1))
    return model, corrupted, positions, x[positions]


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_matmul_flops_equal_flop_counter(seed):
    """Linears (encoder + decoder) and attention products, forward and backward, against FlopCounterMode
    with the math attention kernel (the CPU fused kernel's products are invisible to the counter)."""
    model, corrupted, positions, targets = model_and_batch(seed)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(corrupted, positions), targets).backward()
    ledger = model_ledger(model, B, int(positions.sum()))
    ours = ledger.training_flops() + ledger.extra_flops(("attention",))
    assert ours == counter.get_total_flops()


def test_sparse_layers_shrink_only_their_share():
    model, _, positions, _ = model_and_batch()
    dense = model_ledger(model, B, int(positions.sum()))
    sparsify(model, {name: 0.25 for name in model.encoder_linears("ffn")}, generator=torch.Generator().manual_seed(0))
    sparse = model_ledger(model, B, int(positions.sum()))
    ffn = [e for e in dense.entries if e.layer.endswith(("fc1", "fc2"))]
    saved = sum(e.macs for e in ffn) * 0.75
    assert sparse.macs() == pytest.approx(dense.macs() - saved, rel=1e-3)   # nnz rounding
    assert sparse.extra_flops(("attention", "softmax", "layernorm")) == dense.extra_flops(("attention", "softmax", "layernorm"))
    assert sparse.extra_flops(("optimizer",)) < dense.extra_flops(("optimizer",))


def test_masked_and_sparse_models_have_equal_ledgers():
    ledgers = []
    for kind in ("sparse", "masked"):
        model, _, positions, _ = model_and_batch()
        sparsify(model, {n: 0.3 for n in model.encoder_linears()}, kind=kind, generator=torch.Generator().manual_seed(4))
        ledgers.append(model_ledger(model, B, 9))
    assert ledgers[0].training_flops(include_extras=True) == pytest.approx(ledgers[1].training_flops(include_extras=True))


def test_a_swat_step_has_sparse_products_dense_adamw_and_pays_for_its_top_k():
    """SWAT (kind="swat"): the products of a sparse model at the same densities, AdamW over every
    weight as the dense model, plus one Top-K of each sparse layer's W and X per step (period 1)."""
    densities = {"blocks.0.fc1": 0.25, "blocks.1.attn.q": 0.5}
    ledgers = {}
    for kind in ("dense", "sparse", "swat"):
        model, _, _, _ = model_and_batch()
        if kind != "dense":
            sparsify(model, densities, kind=kind, generator=torch.Generator().manual_seed(0))
        assert (model_topk(model) is not None) == (kind == "swat")
        ledgers[kind] = model_ledger(model, B, 9)
    assert ledgers["swat"].macs() == pytest.approx(ledgers["sparse"].macs(), rel=1e-3)   # nnz rounding
    assert ledgers["swat"].extra_flops(("optimizer",)) == ledgers["dense"].extra_flops(("optimizer",))
    rows = B * SIZES["max_seq"]
    selected = sum(o * i + rows * i for o, i in ((SIZES["ffn"], SIZES["width"]), (SIZES["width"], SIZES["width"])))
    assert ledgers["swat"].extra_flops(("topk",)) == TopKCost().per_element() * selected
    assert ledgers["dense"].extra_flops(("topk",)) == ledgers["sparse"].extra_flops(("topk",)) == 0


def test_adamw_counts_every_trainable_parameter_once():
    model, _, _, _ = model_and_batch()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ledger = model_ledger(model, B, 5)
    assert ledger.extra_flops(("optimizer",)) == ADAMW_FLOPS_PER_PARAMETER * trainable


def test_every_extra_kind_is_known_and_positive():
    shape = TransformerShape(vocab=4096, width=128, depth=2, heads=4, ffn=512, seq=64, batch=32, masked=0.15 * 2048)
    ledger = transformer_ledger(shape, dense_gradient_fraction=0.0)
    kinds = {x.kind for x in ledger.extras}
    assert kinds <= set(EXTRA_KINDS)
    assert {"attention", "softmax", "layernorm", "activation", "embedding", "residual", "loss", "optimizer"} <= kinds
    assert all(x.flops > 0 for x in ledger.extras)
    # SPEC §8: at the quick size the encoder linears are about 77 % of the step's matmul FLOPs
    encoder = 2 * sum(e.macs for e in ledger.entries if e.layer != "decoder")
    share = encoder / (ledger.training_flops() + ledger.extra_flops(("attention",)))
    assert 0.7 < share < 0.85


def test_rigl_dense_gradient_is_the_missing_weight_gradient():
    shape = TransformerShape(vocab=64, width=16, depth=1, heads=2, ffn=32, seq=8, batch=2, masked=3)
    densities = {"blocks.0.fc1": 0.2, "blocks.0.attn.q": 0.5}
    growth = rigl_growth_flops(shape, densities)
    assert growth == 2 * 16 * (0.8 * 16 * 32 + 0.5 * 16 * 16)
    ledger = transformer_ledger(shape, densities, dense_gradient_fraction=0.01)
    assert ledger.extra_flops(("dense_gradient",)) == pytest.approx(0.01 * growth)


def test_bad_densities():
    shape = TransformerShape(vocab=64, width=16, depth=1, heads=2, ffn=32, seq=8, batch=2, masked=3)
    with pytest.raises(ValueError, match="the layers of densities must be among .*; unknown: 'blocks.3.fc1'"):
        transformer_ledger(shape, {"blocks.3.fc1": 0.5})
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        transformer_ledger(shape, {"blocks.0.fc1": 0.0})
