"""FLOP ledger of one training step of a pre-LN transformer encoder with an MLM head (SPEC §8).

The conv / linear rules of :mod:`swatlib.costmodel.ledger` apply to every ``nn.Linear`` — the
encoder's ``q``, ``k``, ``v``, ``out``, ``fc1``, ``fc2`` and the MLM decoder — with ``M`` = rows ×
in × out dense MACs per phase. A sparse encoder linear of density ``d`` performs ``M·d`` in every
phase: forward and input gradient use only the existing weights, and the weight gradient is needed
only at the existing connections (a truly sparse layer computes exactly those, an SDDMM). The decoder
runs on the ``masked`` positions only (the loss needs nothing else), and is dense.

Everything else is an extra (FLOPs; a special function such as exp or erf counts as one FLOP, a
gather or a copy as none):

==================  ===============================================  ==========================
kind                forward                                           backward
==================  ===============================================  ==========================
``attention``       ``QKᵀ`` and ``PV``: 2 products of                 4 products (dQ, dK, dP, dV)
                    ``2·B·T²·width`` FLOPs per block
``softmax``         :data:`SOFTMAX_FLOPS` per score ``B·heads·T²``    (scale, max, exp, sum, divide
                                                                      forward; ``P⊙(dP − Σ dP⊙P)``)
``layernorm``       per element, BatchNorm's counts (same arithmetic over features instead of
                    the batch): :data:`~swatlib.costmodel.ledger.BN_FLOPS`
``activation``      GELU, :data:`GELU_FLOPS` per FFN element
``residual``        2 adds per block and element                      2 (gradient fan-in)
``embedding``       the position add (token gather: 0)                the position gradient's sum
``loss``            log-softmax + pick, :data:`LOSS_FLOPS` per        softmax − one-hot
                    logit
``optimizer``       —                                                 AdamW, :data:`ADAMW_FLOPS_PER_PARAMETER`
                                                                      per trainable parameter
``dense_gradient``  —                                                 RigL's growth step: the missing
                                                                      ``(1 − d)·M`` weight-gradient MACs
``topk``            SWAT only: selecting W and X of every sparse      —
                    layer, :class:`~swatlib.costmodel.TopKCost` per
                    element
==================  ===============================================  ==========================

A **SWAT** step (``topk`` given) has the same products at density ``d`` — Top-K weights forward, Top-K
weights (input gradient) and Top-K activations (weight gradient) backward — but AdamW updates every
weight, kept or not, and the selections cost their own FLOPs.

A test checks the linear and attention-product part against
:class:`torch.utils.flop_counter.FlopCounterMode` on the dense model (with the math attention
kernel, whose products the counter sees); the other extras are counted here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from swatlib.checks import check_choices

from .ledger import BN_FLOPS, ExtraEntry, FlopLedger, LedgerEntry
from .methods import TopKCost

__all__ = ["ADAMW_FLOPS_PER_PARAMETER", "GELU_FLOPS", "LOSS_FLOPS", "SOFTMAX_FLOPS", "TransformerShape",
           "model_densities", "model_ledger", "model_shape", "model_topk", "rigl_growth_flops",
           "transformer_ledger"]

#: AdamW per parameter: decay ``w·(1 − lr·wd)`` 1; ``m.lerp_(g)`` 3; ``v·β₂ + (1 − β₂)·g²`` 4;
#: ``√v / √bc₂ + ε`` 3; ``w − step·m / denom`` 3 (torch's implementation, bias corrections are scalars).
ADAMW_FLOPS_PER_PARAMETER = 14.0
#: Softmax per attention score: scale, max, exp(x − max), sum, divide (forward);
#: ``P⊙(dP − rowsum(dP⊙P))``: multiply, sum, subtract, multiply (backward).
SOFTMAX_FLOPS = {"forward": 5.0, "backward": 4.0}
#: GELU ``x·Φ(x)`` per element: scale, erf, add, two multiplies (forward); Φ again (3), the density
#: ``φ(x)`` (square, scale, exp, scale: 4), ``Φ + x·φ`` (2), times the gradient (1) (backward).
GELU_FLOPS = {"forward": 5.0, "backward": 10.0}
#: Cross-entropy per logit: max, exp(x − max), sum, (log, pick: per row) (forward);
#: softmax − one-hot, scaled by 1/n (backward).
LOSS_FLOPS = {"forward": 3.0, "backward": 2.0}


@dataclass(frozen=True)
class TransformerShape:
    """Sizes of a :class:`~swatlib.models.ToyBERT`-like model and of one training step.

    Attributes
    ----------
    vocab, width, depth, heads, ffn
        Model sizes.
    seq, batch
        Sequence length and sequences per step.
    masked
        Positions per step that reach the decoder and the loss.
    """

    vocab: int
    width: int
    depth: int
    heads: int
    ffn: int
    seq: int
    batch: int
    masked: float

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``(out, in)`` of every encoder linear by qualified name, in forward order."""
        w, f = self.width, self.ffn
        one = {"attn.q": (w, w), "attn.k": (w, w), "attn.v": (w, w), "attn.out": (w, w),
               "fc1": (f, w), "fc2": (w, f)}
        return {f"blocks.{i}.{name}": shape for i in range(self.depth) for name, shape in one.items()}

    def other_parameters(self) -> int:
        """Trainable parameters outside the encoder linears' weights: their biases, the position
        embedding, the LayerNorms and the decoder (the input embedding is frozen)."""
        w, f = self.width, self.ffn
        per_block = 4 * w + f + w + 2 * 2 * w
        return self.depth * per_block + self.seq * w + 2 * w + self.vocab * (w + 1)


def transformer_ledger(shape: TransformerShape, densities: Mapping[str, float] | None = None, *,
                       dense_gradient_fraction: float = 0.0, topk: TopKCost | None = None) -> FlopLedger:
    """Nominal ledger of one training step (module docstring).

    Parameters
    ----------
    shape
        Model and step sizes.
    densities
        Density of each encoder linear by qualified name (missing: dense).
    dense_gradient_fraction
        Share of steps on which RigL computes the full dense weight gradient of its sparse
        layers (``1/ΔT`` while it is updating, 0 after ``t_end``).
    topk
        The sparse layers are SWAT layers whose Top-K costs this much (module docstring); None:
        they are sparse layers whose optimizer sees only the kept weights.

    Raises
    ------
    ValueError
        For a density outside (0, 1] or a layer name the shape does not have.
    """
    from swatlib.densities import check_density

    densities = dict(densities or {})
    linears = shape.linear_shapes()
    check_choices(densities, linears, "the layers of densities")
    rows = shape.batch * shape.seq
    entries, extras = [], []
    weights_updated, dense_gradient = 0.0, 0.0
    for name, (n_out, n_in) in linears.items():
        d = check_density(densities.get(name, 1.0), f"densities[{name!r}]")
        macs = float(rows * n_in * n_out)
        for phase in ("forward", "input_grad", "weight_grad"):
            entries.append(LedgerEntry(name, phase, macs, macs * d, float(n_in * n_out), float(rows * n_in),
                                       float(rows * n_out), d, 1.0, 1.0))
        weights_updated += (1.0 if topk else d) * n_in * n_out
        dense_gradient += (1.0 - d) * macs
        if topk and d < 1.0:
            extras.append(ExtraEntry("topk", "forward", topk.per_element() * (n_in * n_out + rows * n_in)))
    macs = float(shape.masked * shape.width * shape.vocab)
    for phase in ("forward", "input_grad", "weight_grad"):
        entries.append(LedgerEntry("decoder", phase, macs, macs, float(shape.width * shape.vocab),
                                   float(shape.masked * shape.width), float(shape.masked * shape.vocab),
                                   1.0, 1.0, 1.0))
    elements = float(rows * shape.width)
    scores = float(shape.batch * shape.heads * shape.seq ** 2)
    products = 2.0 * shape.batch * shape.seq ** 2 * shape.width        # one product, one block
    layernorms = 2 * shape.depth + 1
    for phase, factor in (("forward", 1.0), ("backward", 2.0)):
        extras += [
            ExtraEntry("attention", phase, shape.depth * 2 * factor * products),
            ExtraEntry("softmax", phase, shape.depth * SOFTMAX_FLOPS[phase] * scores),
            ExtraEntry("layernorm", phase, layernorms * BN_FLOPS[phase] * elements),
            ExtraEntry("activation", phase, shape.depth * GELU_FLOPS[phase] * rows * shape.ffn),
            ExtraEntry("residual", phase, shape.depth * 2 * elements),
            ExtraEntry("embedding", phase, elements),
            ExtraEntry("loss", phase, LOSS_FLOPS[phase] * shape.masked * shape.vocab),
        ]
    updated = weights_updated + shape.other_parameters()
    extras.append(ExtraEntry("optimizer", "update", ADAMW_FLOPS_PER_PARAMETER * updated))
    if dense_gradient_fraction:
        extras.append(ExtraEntry("dense_gradient", "backward", 2.0 * dense_gradient_fraction * dense_gradient))
    return FlopLedger(tuple(entries), tuple(extras), steps=1, examples=shape.batch)


def rigl_growth_flops(shape: TransformerShape, densities: Mapping[str, float]) -> float:
    """FLOPs of one RigL growth step beyond a sparse step: the missing dense weight-gradient MACs."""
    linears = shape.linear_shapes()
    rows = shape.batch * shape.seq
    return sum(2.0 * (1.0 - d) * rows * linears[name][0] * linears[name][1] for name, d in densities.items())


def model_shape(model, batch: int, masked: float) -> TransformerShape:
    """The :class:`TransformerShape` of a :class:`~swatlib.models.ToyBERT` on ``max_seq``-token windows."""
    first = model.blocks[0]
    return TransformerShape(vocab=model.vocab_size, width=model.width, depth=len(model.blocks),
                            heads=first.attn.heads, ffn=first.fc1.out_features, seq=model.max_seq,
                            batch=batch, masked=masked)


def model_densities(model) -> dict[str, float]:
    """Each sparse encoder linear's density as it is now: a ``SparseLinear``'s nnz, a masked layer's
    mask or a SWAT layer's Top-K density (the *measured* densities); dense layers are left out."""
    from swatlib.swat import SWATLayer

    densities = {}
    for name, layer in model.encoder_linears().items():
        mask = getattr(layer, "topology_mask", None)
        if isinstance(layer, SWATLayer):
            if layer.density < 1.0:
                densities[name] = layer.density
        elif mask is not None:
            densities[name] = float(mask.float().mean())
        elif hasattr(layer, "nnz"):
            densities[name] = layer.nnz / (layer.in_features * layer.out_features)
    return densities


def model_ledger(model, batch: int, masked: float, *, dense_gradient_fraction: float = 0.0) -> FlopLedger:
    """The ledger of one step of ``model`` as it is now (:func:`model_densities`).

    Parameters
    ----------
    model
        A :class:`~swatlib.models.ToyBERT`.
    batch, masked
        Sequences (of ``max_seq`` tokens) and decoder positions per step.
    dense_gradient_fraction
        As for :func:`transformer_ledger`.
    """
    return transformer_ledger(model_shape(model, batch, masked), model_densities(model),
                              dense_gradient_fraction=dense_gradient_fraction, topk=model_topk(model))


def model_topk(model) -> TopKCost | None:
    """The Top-K cost of a model's sparse SWAT encoder linears (their threshold period), or None if it
    has none: what :func:`transformer_ledger` needs to count a SWAT step."""
    from swatlib.swat import SWATLayer

    periods = {layer.period for layer in model.encoder_linears().values()
               if isinstance(layer, SWATLayer) and layer.density < 1.0}
    if len(periods) > 1:
        raise ValueError(f"SWAT layers with different periods {sorted(periods)}: one ledger counts one period")
    return TopKCost(period=periods.pop()) if periods else None
