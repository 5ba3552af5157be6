"""``TopK``: magnitude Top-K selection with a threshold that can be reused for ``period`` steps.

SPEC §5: keep the ``k = ceil(density·numel)`` entries of largest ``|x|`` over the whole tensor
(threshold θ = the k-th largest ``|x|``, keep ``|x| >= θ``, ties kept — :mod:`swatlib.topk`).
Finding θ is the expensive part (a selection over the whole tensor), so SWAT's authors recompute
it only every 10–20 iterations on CIFAR and reuse it in between: the mask of a reused θ is
``|x| >= θ_old`` on the *new* tensor, which may keep a few more or fewer than k entries.

One :class:`TopK` module selects one tensor role of one layer (its weights, its input
activations, or — meProp — its output gradients). The threshold and the step counter are module
**buffers** and the density is module *extra state*, so ``state_dict()`` / ``load_state_dict()``
round-trip a run exactly; there are no files and no globals.

Steps: a call with ``advance=True`` is one training step — θ is recomputed when ``step % period
== 0`` and reused otherwise, and the counter moves on. A call with ``advance=False`` (evaluation,
``torch.no_grad``) selects with a freshly computed θ and leaves the state untouched.

Structured Top-K (weights only): ``"channel"`` ranks whole kernel slices ``W[o, i, :, :]`` and
``"filter"`` whole filters ``W[o]`` by their L1 norm and keeps the ``ceil(density·groups)``
largest groups; for a linear weight a kernel slice is a single weight (so ``"channel"`` equals
unstructured Top-K) and a filter is a row.

Each call reports its selection work to the measured FLOP ledger
(:func:`swatlib.costmodel.ledger.record_extra`, kind ``topk``) with the per-element costs of
:class:`swatlib.costmodel.methods.TopKCost`: the mask on every call, the selection of θ only
when it is recomputed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from swatlib.checks import check_choice, check_int
from swatlib.costmodel.ledger import EXTRA_PHASES, record_extra
from swatlib.costmodel.methods import TopKCost
from swatlib.topk import check_density, magnitude_mask, topk_threshold

__all__ = ["STRUCTURES", "TopK", "check_period", "check_structured"]

#: Structured Top-K variants (weights only).
STRUCTURES = ("channel", "filter")


def check_period(period: int) -> int:
    """Return ``period`` if it is an integer >= 1, else raise a ValueError naming it."""
    return check_int(period, "period (steps between threshold recomputations)")


def check_structured(structured: str | None) -> str | None:
    """Return ``structured`` if it is None or one of :data:`STRUCTURES`, else raise a ValueError."""
    return None if structured is None else check_choice(structured, STRUCTURES, "structured")


class TopK(nn.Module):
    """Magnitude Top-K of one tensor role, with threshold reuse.

    Parameters
    ----------
    density : float
        Kept fraction in (0, 1].
    period : int
        Training steps between threshold recomputations (>= 1; 1 = every step).
    structured : {None, "channel", "filter"}
        Unstructured (default) or group-wise selection by L1 norm (see the module docstring).
    phase : {"forward", "backward"}
        Ledger phase of the selection work (``backward`` for output gradients).

    Attributes
    ----------
    threshold : torch.Tensor
        Buffer, 0-d float64: the current θ (NaN before the first training step).
    step : torch.Tensor
        Buffer, 0-d int64: training steps taken.
    """

    threshold: torch.Tensor
    step: torch.Tensor

    def __init__(self, density: float = 1.0, period: int = 1, *, structured: str | None = None,
                 phase: str = "forward") -> None:
        super().__init__()
        check_choice(phase, EXTRA_PHASES, "phase")
        self.period = check_period(period)
        self.structured = check_structured(structured)
        self.phase = phase
        self._density = check_density(density)
        self.register_buffer("threshold", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("step", torch.tensor(0, dtype=torch.int64))

    @property
    def density(self) -> float:
        """Kept fraction; a new value takes effect when θ is next computed."""
        return self._density

    @density.setter
    def density(self, density: float) -> None:
        self._density = check_density(density)

    def get_extra_state(self) -> dict[str, float]:
        """The density, for ``state_dict()`` (SWAT-M changes it during training)."""
        return {"density": self._density}

    def set_extra_state(self, state: dict[str, float]) -> None:
        """Restore the density from ``state_dict()`` without touching θ or the step counter."""
        self._density = check_density(state["density"])

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """What is ranked: ``x`` itself (by magnitude), or the L1 norm of each kernel slice / filter.

        Unstructured selection ranks ``|x|`` without computing it whole (:mod:`swatlib.topk`).
        """
        if self.structured is None:
            return x.detach()
        magnitude = x.detach().abs()
        if x.dim() < 2:
            raise ValueError(f"structured Top-K needs a weight of >= 2 dimensions, got {x.dim()}")
        groups = magnitude.reshape(x.shape[0], x.shape[1], -1)
        if self.structured == "channel":
            return groups.sum(dim=2)
        return groups.sum(dim=(1, 2))

    def _threshold(self, scores: torch.Tensor) -> torch.Tensor:
        """θ: the k-th largest ``|score|`` (:func:`swatlib.topk.topk_threshold`)."""
        return topk_threshold(scores, self._density)

    def _mask(self, scores: torch.Tensor, threshold: torch.Tensor,
              shape: torch.Size) -> torch.Tensor:
        """``|scores| >= θ``, expanded from groups to the elements of a tensor of ``shape``."""
        kept = magnitude_mask(scores, threshold)
        if self.structured is None:
            return kept
        groups = kept.reshape(shape[0], -1 if self.structured == "channel" else 1, 1)
        return groups.expand(shape[0], shape[1], math.prod(shape[2:])).reshape(shape)

    def current_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The mask of the stored θ (a fresh one before the first training step), nothing recorded.

        What the last training step kept, applied to ``x`` as it is now (SWAT-M reads it).
        """
        scores = self.scores(x)
        stored = not math.isnan(float(self.threshold))
        threshold = self.threshold.to(scores.dtype) if stored else self._threshold(scores)
        return self._mask(scores, threshold, x.shape)

    def select(self, x: torch.Tensor, *, advance: bool) -> torch.Tensor:
        """θ of this call, for an unstructured selection: keep ``|x| >= θ`` (no mask is built).

        Threshold reuse, step counting and the ledger record are :meth:`forward`'s; a SWAT layer
        passes θ of its input activation to :func:`~swatlib.swat.compressed.compress`, which
        applies it chunk by chunk.

        Raises
        ------
        ValueError
            For a structured selection, whose θ ranks groups, not entries.
        """
        if self.structured is not None:
            raise ValueError("select() is for unstructured Top-K; structured selections need forward()")
        return self._select(x.detach(), x.numel(), advance)

    def _select(self, scores: torch.Tensor, numel: int, advance: bool) -> torch.Tensor:
        recompute = not advance or int(self.step) % self.period == 0
        if recompute:
            threshold = self._threshold(scores)
            if advance:
                self.threshold.copy_(threshold)
        else:
            threshold = self.threshold.to(scores.dtype)
        if advance:
            self.step.add_(1)
        cost = TopKCost()
        record_extra("topk", self.phase, cost.mask_flops * numel
                     + (cost.select_flops * scores.numel() if recompute else 0.0))
        return threshold

    def forward(self, x: torch.Tensor, *, advance: bool) -> torch.Tensor:
        """Boolean mask of the kept entries of ``x``.

        Parameters
        ----------
        x : torch.Tensor
            The tensor to select from (weights, activations or gradients).
        advance : bool
            True for a training step (reuse or recompute θ, count the step); False to select
            with a fresh θ and leave the state untouched.

        Returns
        -------
        torch.Tensor
            Boolean, shape of ``x``.
        """
        scores = self.scores(x)
        return self._mask(scores, self._select(scores, x.numel(), advance), x.shape)
