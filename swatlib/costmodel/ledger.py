"""FLOP ledger: the MACs of every conv / linear layer per phase, and the extras beside them.

A MAC is one multiply-add; FLOPs = 2·MACs. For each conv / linear layer and each phase of a
training step — ``forward``, ``input_grad`` (dX), ``weight_grad`` (dW) — an entry records the
dense MACs M and the MACs a zero-skipping machine performs, ``M × d_weight × d_act × d_out``,
where the three densities belong to the tensors of the layer's three shape roles:

=============  ==================  ===================  ====================
phase          weight-shaped        input-shaped          output-shaped
=============  ==================  ===================  ====================
forward        W (operand)          X (operand)           Y (result)
input_grad     W (operand)          dX (result)           dY (operand)
weight_grad    dW (result)          X (operand)           dY (operand)
=============  ==================  ===================  ====================

An operand's density is its kept fraction; a *result's* density is the fraction of its
positions that are computed at all — 1 except for output-sampled kernels such as SET's
sparse weight gradient (an SDDMM). The product is exact when at most one factor is below 1
(every method here, nominally) and the expectation under independent zero positions
otherwise.

Everything that is not conv / linear work is kept as separate *extras*, never dropped:
``batchnorm``, ``activation``, ``pooling``, ``optimizer``, ``topk`` and ``redistribution``
(SWAT-M), each in phase ``forward``, ``backward`` or ``update``; a transformer adds
``attention`` (score and value products), ``softmax``, ``layernorm``, ``embedding``,
``residual``, ``loss`` and RigL's ``dense_gradient`` (:mod:`swatlib.costmodel.transformer`,
where GELU is an ``activation`` and AdamW the ``optimizer``). Per-element costs:

* BatchNorm (training mode): forward 4 FLOPs per element (sum and sum of squares for the
  statistics: 2; normalise-and-affine folded into one multiply-add: 2); backward 7 (the two
  reductions Σdy and Σdy·x̂: 3; ``s·(dy − m1 − x̂·m2)``: 4).
* ReLU / LeakyReLU: 1 FLOP per element forward (compare/select), 1 backward (mask).
* Max-pool: ``window − 1`` comparisons per output forward, 1 per output backward (route);
  average-pool: ``window`` per output forward (adds and one scale), 1 per input backward.
* Optimizer: 6 FLOPs per updated parameter (SGD with momentum and weight decay: three
  multiply-adds ``g + wd·w``, ``m·v + g``, ``w − lr·v``).

Two modes share :class:`FlopLedger`:

* **nominal** — :func:`nominal_ledger` from a layer table and a method's plans;
* **measured** — :class:`MeasuredLedger`, a context manager that collects what the layers of
  a real training step report through :func:`record` (SWAT / SET layers call it with the nnz
  of the tensors they really used), or what :meth:`MeasuredLedger.watch` reads from plain
  ``nn.Conv*`` / ``nn.Linear`` modules through hooks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass

import torch
from torch import nn

from swatlib.checks import check_choice

from .layers import LayerInfo
from .methods import PHASES, LayerPlan

__all__ = [
    "PHASES", "EXTRA_KINDS", "EXTRA_PHASES", "BN_FLOPS", "ACTIVATION_FLOPS",
    "OPTIMIZER_FLOPS_PER_PARAMETER", "LedgerEntry", "ExtraEntry", "FlopLedger",
    "nominal_ledger", "MeasuredLedger", "active_ledger", "record", "record_extra",
]

#: Kinds of work counted beside conv / linear MACs (the last seven are the transformer's:
#: :mod:`swatlib.costmodel.transformer`).
EXTRA_KINDS = ("batchnorm", "activation", "pooling", "optimizer", "topk", "redistribution",
               "attention", "softmax", "layernorm", "embedding", "residual", "loss", "dense_gradient")
#: Phases of the extras.
EXTRA_PHASES = ("forward", "backward", "update")
#: BatchNorm FLOPs per element, by phase.
BN_FLOPS = {"forward": 4.0, "backward": 7.0}
#: ReLU-family FLOPs per element, by phase.
ACTIVATION_FLOPS = {"forward": 1.0, "backward": 1.0}
#: FLOPs per updated parameter and step (SGD, momentum, weight decay).
OPTIMIZER_FLOPS_PER_PARAMETER = 6.0


@dataclass(frozen=True)
class LedgerEntry:
    """Conv / linear work of one layer in one phase, summed over the recorded steps.

    Attributes
    ----------
    layer, phase : str
        Layer name and one of :data:`PHASES`.
    macs_dense, macs : float
        Dense MACs and MACs performed with zero-skipping.
    numel_weight, numel_act, numel_out : float
        Elements of the weight-, input- and output-shaped tensors (whole batch).
    density_weight, density_act, density_out : float
        Their densities (see the module docstring for operands vs results).
    """

    layer: str
    phase: str
    macs_dense: float
    macs: float
    numel_weight: float
    numel_act: float
    numel_out: float
    density_weight: float
    density_act: float
    density_out: float


@dataclass(frozen=True)
class ExtraEntry:
    """Non-conv/linear FLOPs of one kind in one phase, summed over the recorded steps."""

    kind: str
    phase: str
    flops: float


@dataclass(frozen=True)
class FlopLedger:
    """Recorded work of ``steps`` training steps over ``examples`` examples.

    All queries return values **per step**; divide by :attr:`batch_size` for per example.

    Attributes
    ----------
    entries : tuple of LedgerEntry
    extras : tuple of ExtraEntry
    steps : int
    examples : int
    """

    entries: tuple[LedgerEntry, ...]
    extras: tuple[ExtraEntry, ...]
    steps: int = 1
    examples: int = 1

    @property
    def batch_size(self) -> float:
        """Examples per step."""
        return self.examples / self.steps

    def macs(self, phases: Sequence[str] = PHASES) -> float:
        """Performed conv / linear MACs per step in ``phases``."""
        return sum(e.macs for e in self.entries if e.phase in phases) / self.steps

    def dense_macs(self, phases: Sequence[str] = PHASES) -> float:
        """Dense conv / linear MACs per step in ``phases``."""
        return sum(e.macs_dense for e in self.entries if e.phase in phases) / self.steps

    def extra_flops(self, kinds: Sequence[str] = EXTRA_KINDS,
                    phases: Sequence[str] = EXTRA_PHASES) -> float:
        """Extra FLOPs per step of the given kinds and phases."""
        return sum(x.flops for x in self.extras
                   if x.kind in kinds and x.phase in phases) / self.steps

    def training_flops(self, include_extras: bool = False) -> float:
        """FLOPs per step: 2·MACs of all phases, plus all extras if asked."""
        return 2.0 * self.macs() + (self.extra_flops() if include_extras else 0.0)

    def inference_flops(self) -> float:
        """Conv / linear FLOPs per step of the forward phase (2·MACs)."""
        return 2.0 * self.macs(("forward",))

    def rows(self) -> list[dict[str, float | str]]:
        """One dict per entry, per step, for tables."""
        return [{"layer": e.layer, "phase": e.phase, "macs_dense": e.macs_dense / self.steps,
                 "macs": e.macs / self.steps, "density_weight": e.density_weight,
                 "density_act": e.density_act, "density_out": e.density_out}
                for e in self.entries]


def _structural_extras(table: list[LayerInfo], batch_size: int) -> list[ExtraEntry]:
    extras = []
    for row in table:
        n_in, n_out = batch_size * row.input_numel, batch_size * row.output_numel
        if row.kind == "bn":
            extras += [ExtraEntry("batchnorm", p, BN_FLOPS[p] * n_in) for p in BN_FLOPS]
        elif row.kind == "act":
            extras += [ExtraEntry("activation", p, ACTIVATION_FLOPS[p] * n_in)
                       for p in ACTIVATION_FLOPS]
        elif row.kind == "maxpool":
            extras += [ExtraEntry("pooling", "forward", (row.window - 1) * n_out),
                       ExtraEntry("pooling", "backward", n_out)]
        elif row.kind == "avgpool":
            extras += [ExtraEntry("pooling", "forward", row.window * n_out),
                       ExtraEntry("pooling", "backward", n_in)]
    return extras


def nominal_ledger(table: list[LayerInfo], plans: list[LayerPlan], batch_size: int) -> FlopLedger:
    """Ledger of one training step from a layer table and a method's plans.

    Parameters
    ----------
    table : list of LayerInfo
        The network's layer table.
    plans : list of LayerPlan
        From :func:`swatlib.costmodel.methods.plan` on the same table.
    batch_size : int
        Examples per step.

    Returns
    -------
    FlopLedger
        One step of ``batch_size`` examples.
    """
    entries = []
    for p in plans:
        layer = p.layer
        for phase, d in p.phases.items():
            macs_dense = float(batch_size * layer.macs)
            entries.append(LedgerEntry(
                layer.name, phase, macs_dense, macs_dense * d.mac_fraction,
                float(layer.weight_numel), float(batch_size * layer.input_numel),
                float(batch_size * layer.output_numel), d.weight, d.act, d.out))
    extras = _structural_extras(table, batch_size)
    weights = sum(p.layer.weight_numel for p in plans)
    other_params = sum(row.params for row in table) - weights
    updated = sum(p.updated_fraction * p.layer.weight_numel for p in plans) + other_params
    extras.append(ExtraEntry("optimizer", "update", OPTIMIZER_FLOPS_PER_PARAMETER * updated))
    extras += [ExtraEntry(*x) for p in plans for x in p.extras]
    return FlopLedger(tuple(entries), tuple(extras), steps=1, examples=batch_size)


_ACTIVE: ContextVar[MeasuredLedger | None] = ContextVar("swatlib_measured_ledger", default=None)


def active_ledger() -> MeasuredLedger | None:
    """The :class:`MeasuredLedger` whose ``with`` block is running, if any."""
    return _ACTIVE.get()


def record(layer: str, phase: str, macs_dense: float, nnz_weight: float, numel_weight: float,
           nnz_act: float, numel_act: float, nnz_out: float, numel_out: float) -> None:
    """Report one layer-phase to the active :class:`MeasuredLedger`; a no-op without one.

    This is the call sparse layers make (see :meth:`MeasuredLedger.record` for the meaning
    of the arguments), so that they need no reference to a ledger.
    """
    ledger = _ACTIVE.get()
    if ledger is not None:
        ledger.record(layer, phase, macs_dense, nnz_weight, numel_weight,
                      nnz_act, numel_act, nnz_out, numel_out)


def record_extra(kind: str, phase: str, flops: float) -> None:
    """Report extra FLOPs (e.g. a Top-K) to the active :class:`MeasuredLedger`, if any."""
    ledger = _ACTIVE.get()
    if ledger is not None:
        ledger.record_extra(kind, phase, flops)


class MeasuredLedger:
    """Collects the work that real training steps performed.

    Use it as a context manager around training steps; layers report through the module-level
    :func:`record` / :func:`record_extra` (or :meth:`watch` attaches hooks to plain layers),
    and :meth:`end_step` closes each step::

        ledger = MeasuredLedger()
        with ledger, ledger.watch(model):
            for x, y in batches:
                loss_fn(model(x), y).backward()
                optimizer.step()
                ledger.end_step(len(x))
        ledger.ledger().macs()          # performed MACs per step

    Records are summed per (layer, phase) and per (kind, phase); densities are the
    recorded nnz over the recorded elements.
    """

    def __init__(self) -> None:
        self._work: dict[tuple[str, str], list[float]] = {}
        self._extras: dict[tuple[str, str], float] = {}
        self._token: Token[MeasuredLedger | None] | None = None
        self.steps = 0
        self.examples = 0

    def __enter__(self) -> MeasuredLedger:
        if self._token is not None:
            raise RuntimeError("this MeasuredLedger is already active")
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._token)
        self._token = None

    def record(self, layer: str, phase: str, macs_dense: float, nnz_weight: float,
               numel_weight: float, nnz_act: float, numel_act: float, nnz_out: float,
               numel_out: float) -> None:
        """Add one layer-phase of one step.

        Parameters
        ----------
        layer : str
            Layer name (the module's qualified name, to match the layer table).
        phase : {"forward", "input_grad", "weight_grad"}
            Which product this is.
        macs_dense : float
            Dense MACs of the product for the whole batch.
        nnz_weight, numel_weight : float
            Nonzeros and elements of the weight-shaped tensor: W (forward, input_grad) or the
            computed positions of dW (weight_grad; ``nnz = numel`` for a dense gradient).
        nnz_act, numel_act : float
            Of the input-shaped tensor: X (forward, weight_grad) or the computed positions
            of dX (input_grad).
        nnz_out, numel_out : float
            Of the output-shaped tensor: the computed positions of Y (forward) or dY
            (input_grad, weight_grad).

        Raises
        ------
        ValueError
            For an unknown phase, an empty tensor or nnz outside [0, numel].
        """
        check_choice(phase, PHASES, "phase")
        counts = [float(v) for v in (nnz_weight, numel_weight, nnz_act, numel_act,
                                     nnz_out, numel_out)]
        fraction = 1.0
        for nnz, numel in zip(counts[::2], counts[1::2]):
            if numel <= 0 or not 0 <= nnz <= numel:
                raise ValueError(f"{layer}/{phase}: need 0 <= nnz <= numel and numel > 0, "
                                 f"got nnz={nnz}, numel={numel}")
            fraction *= nnz / numel
        work = self._work.setdefault((layer, phase), [0.0] * 8)
        macs_dense = float(macs_dense)
        for i, value in enumerate([macs_dense, macs_dense * fraction, *counts]):
            work[i] += value

    def record_extra(self, kind: str, phase: str, flops: float) -> None:
        """Add extra FLOPs of a kind (see :data:`EXTRA_KINDS`) in a phase."""
        check_choice(kind, EXTRA_KINDS, "kind")
        check_choice(phase, EXTRA_PHASES, "phase")
        self._extras[(kind, phase)] = self._extras.get((kind, phase), 0.0) + float(flops)

    def end_step(self, batch_size: int) -> None:
        """Close a training step of ``batch_size`` examples."""
        self.steps += 1
        self.examples += int(batch_size)

    def ledger(self) -> FlopLedger:
        """The records so far as a :class:`FlopLedger`.

        Raises
        ------
        ValueError
            If no step was closed with :meth:`end_step`.
        """
        if self.steps == 0:
            raise ValueError("no step recorded: call end_step(batch_size) after each step")
        entries = []
        for (layer, phase), w in self._work.items():
            macs_dense, macs, nnz_w, numel_w, nnz_a, numel_a, nnz_o, numel_o = w
            entries.append(LedgerEntry(layer, phase, macs_dense, macs, numel_w, numel_a,
                                       numel_o, nnz_w / numel_w, nnz_a / numel_a,
                                       nnz_o / numel_o))
        extras = tuple(ExtraEntry(k, p, f) for (k, p), f in self._extras.items())
        return FlopLedger(tuple(entries), extras, steps=self.steps, examples=self.examples)

    @contextlib.contextmanager
    def watch(self, model: nn.Module) -> Iterator[MeasuredLedger]:
        """Record every plain conv / linear module of ``model`` through hooks.

        The forward hook counts the nonzeros of W and X; a hook on the output's gradient
        counts those of dY and records both backward phases (``input_grad`` only if X needs
        a gradient). Results (Y, dX, dW) are recorded as fully computed. Modules with a
        true ``reports_to_ledger`` attribute report themselves and are skipped.
        Zero-skipping counts the natural zeros too (e.g. after a ReLU). The hooks record only
        while this ledger is the active one (inside its ``with`` block), so evaluation passes
        run outside it are not counted.
        """
        handles = [module.register_forward_hook(self._forward_hook(name))
                   for name, module in model.named_modules()
                   if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
                   and not getattr(module, "reports_to_ledger", False)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _forward_hook(self, name: str) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if _ACTIVE.get() is not self:
                return
            x, w = inputs[0].detach(), module.weight.detach()
            macs = output.numel() * (w[0].numel() if w.dim() > 2 else w.shape[1])
            nnz_w, nnz_x = int(w.count_nonzero()), int(x.count_nonzero())
            self.record(name, "forward", macs, nnz_w, w.numel(), nnz_x, x.numel(),
                        output.numel(), output.numel())
            if not output.requires_grad:
                return
            needs_dx, needs_dw = inputs[0].requires_grad, module.weight.requires_grad

            def grad_hook(grad: torch.Tensor) -> None:
                nnz_g = int(grad.count_nonzero())
                if needs_dx:
                    self.record(name, "input_grad", macs, nnz_w, w.numel(), x.numel(),
                                x.numel(), nnz_g, grad.numel())
                if needs_dw:
                    self.record(name, "weight_grad", macs, w.numel(), w.numel(), nnz_x,
                                x.numel(), nnz_g, grad.numel())

            output.register_hook(grad_hook)
        return hook
