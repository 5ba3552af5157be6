"""``SWATLinear`` and ``SWATConv2d``: drop-in ``nn.Linear`` / ``nn.Conv2d`` trained with SWAT.

Each layer owns :class:`~swatlib.swat.topk_state.TopK` modules for the tensor roles its
``mode`` sparsifies — ``weight_topk``, ``act_topk`` and (meProp) ``grad_topk`` — and runs its
product through :class:`~swatlib.swat.functions.SWATFunction` (SPEC §5):

=================================  ============================================================
``mode``                           what is Top-K'd (density = the layer's ``density``)
=================================  ============================================================
``"swat"`` (default)               forward W; backward W and X (saved compressed)
``"fwd-weights"``                  forward W; backward dense
``"fwd-activations"``              forward X; backward dense
``"bwd-weights-activations"``      forward dense; backward W and X (saved compressed), as SWAT
``"bwd-output-grad"``              forward dense; backward dY (meProp-style, whole-tensor Top-K)
=================================  ============================================================

The activation density equals the weight density (SPEC §5). The parameters are the stock
``weight`` and ``bias`` — the optimizer updates every weight, kept or not — and the layers are
subclasses of the stock modules, so layer tables and ``isinstance`` checks see them as such.
With ``density=1`` nothing is selected and the layer computes exactly what the stock layer
computes, forward and backward.

A training step is a forward pass in training mode with autograd enabled: it advances the
Top-K step counters (threshold reuse, ``period``). Evaluation and ``torch.no_grad`` passes select
with fresh thresholds, leave the counters alone, and skip the backward-only selections.

The layers report their nonzeros to the measured FLOP ledger themselves
(``reports_to_ledger = True``, so :meth:`MeasuredLedger.watch` skips them) under
:attr:`ledger_name`, which :func:`name_swat_layers` (called by ``swatify``) sets to the module's
qualified name in its model.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from swatlib.checks import check_choice

from .compressed import INDEX_FORMATS
from .functions import Conv2dOp, LinearOp, Op, Selection, swat_op
from .topk_state import TopK

__all__ = ["MODES", "SWATLayer", "SWATLinear", "SWATConv2d", "name_swat_layers"]

#: Accepted values of ``mode``.
MODES = ("swat", "fwd-weights", "fwd-activations", "bwd-weights-activations", "bwd-output-grad")

_WEIGHT_MODES = ("swat", "fwd-weights", "bwd-weights-activations")
_ACT_MODES = ("swat", "fwd-activations", "bwd-weights-activations")


class SWATLayer(nn.Module):
    """What :class:`SWATLinear` and :class:`SWATConv2d` share: Top-K state, mode, ledger name.

    Attributes
    ----------
    reports_to_ledger : bool
        True: the layer records its own ledger entries.
    mode : str
        One of :data:`MODES`.
    index_format : str
        Index of the compressed saved tensors (``"bitmap"`` or ``"indices"``).
    ledger_name : str
        Name of the layer in the measured ledger (the class name until
        :func:`name_swat_layers` sets the qualified name).
    weight_topk, act_topk, grad_topk : TopK or None
        Selections of W, X and dY (None where the mode does not select that role).
    """

    reports_to_ledger = True
    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_swat(self, density: float, period: int, mode: str, structured: str | None,
                   index_format: str) -> None:
        self.mode = check_choice(mode, MODES, "mode")
        self.index_format = check_choice(index_format, INDEX_FORMATS, "index_format")
        self.ledger_name = type(self).__name__
        self.weight_topk = (TopK(density, period, structured=structured)
                            if mode in _WEIGHT_MODES else None)
        self.act_topk = TopK(density, period) if mode in _ACT_MODES else None
        self.grad_topk = (TopK(density, period, phase="backward")
                          if mode == "bwd-output-grad" else None)
        if structured is not None and self.weight_topk is None:
            raise ValueError(f"structured applies to weights; mode {mode!r} selects none")

    def _topks(self) -> list[TopK]:
        return [t for t in (self.weight_topk, self.act_topk, self.grad_topk) if t is not None]

    @property
    def density(self) -> float:
        """Kept fraction of every selected role (SWAT-M changes it during training)."""
        return self._topks()[0].density

    @density.setter
    def density(self, density: float) -> None:
        for topk in self._topks():
            topk.density = density

    @property
    def period(self) -> int:
        """Training steps between threshold recomputations."""
        return self._topks()[0].period

    @property
    def structured(self) -> str | None:
        """Structured weight Top-K (``"channel"``, ``"filter"``) or None."""
        return None if self.weight_topk is None else self.weight_topk.structured

    def _selection(self, x: torch.Tensor) -> Selection:
        grad_path = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters(recurse=False)))
        advance = self.training and grad_path
        name, fmt = self.ledger_name, self.index_format
        if self.density >= 1.0:
            return Selection(index_format=fmt, name=name)
        if self.mode == "bwd-output-grad":
            return Selection(output_grad=partial(self.grad_topk, advance=advance) if grad_path
                             else None, index_format=fmt, name=name)
        if self.mode == "fwd-activations":
            return Selection(act_forward=self.act_topk(x, advance=advance), index_format=fmt,
                             name=name)
        forward_w = self.mode in ("swat", "fwd-weights")
        backward_wa = grad_path and self.mode in ("swat", "bwd-weights-activations")
        weight_mask = (self.weight_topk(self.weight, advance=advance)
                       if forward_w or backward_wa else None)
        return Selection(
            weight_forward=weight_mask if forward_w else None,
            weight_backward=weight_mask if backward_wa else None,
            act_backward=self.act_topk.select(x, advance=advance) if backward_wa else None,
            index_format=fmt, name=name)

    def _swat_forward(self, x: torch.Tensor, op: Op) -> torch.Tensor:
        return swat_op(x, self.weight, self.bias, op, self._selection(x))

    def swat_repr(self) -> str:
        """``density=…, period=…, mode=…`` for ``extra_repr``."""
        extra = f", structured={self.structured!r}" if self.structured else ""
        return f"density={self.density:g}, period={self.period}, mode={self.mode!r}{extra}"


class SWATLinear(nn.Linear, SWATLayer):
    """``nn.Linear`` trained with SWAT.

    Parameters
    ----------
    in_features, out_features, bias, device, dtype
        As for ``nn.Linear``.
    density : float
        Kept fraction of the selected tensors, in (0, 1].
    period : int
        Training steps between Top-K threshold recomputations (>= 1).
    mode : str
        One of :data:`MODES` (module docstring).
    structured : {None, "channel", "filter"}
        Structured weight Top-K (a linear "channel" is one weight, a "filter" one row).
    index_format : {"bitmap", "indices"}
        Index of the compressed saved tensors.

    Raises
    ------
    ValueError
        For a density outside (0, 1], a period < 1, or an unknown mode, structure or format.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
                 density: float, period: int = 1, mode: str = "swat",
                 structured: str | None = None, index_format: str = "bitmap") -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_swat(density, period, mode, structured, index_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Y = X W_sᵀ + b`` (module docstring)."""
        return self._swat_forward(x, LinearOp())

    def extra_repr(self) -> str:
        """Stock representation plus the SWAT settings."""
        return f"{super().extra_repr()}, {self.swat_repr()}"


class SWATConv2d(nn.Conv2d, SWATLayer):
    """``nn.Conv2d`` trained with SWAT.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        As for ``nn.Conv2d`` (string paddings and non-zero padding modes pad the input before
        the product, as the stock layer does).
    device, dtype
        As for ``nn.Conv2d``.
    density, period, mode, structured, index_format
        As for :class:`SWATLinear`; a "channel" is a kernel slice ``W[o, i]``, a "filter" ``W[o]``.

    Raises
    ------
    ValueError
        For a density outside (0, 1], a period < 1, or an unknown mode, structure or format.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: str | int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
                 density: float, period: int = 1, mode: str = "swat",
                 structured: str | None = None, index_format: str = "bitmap") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)
        self._init_swat(density, period, mode, structured, index_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Y = conv(X, W_s) + b`` (module docstring); 3-D input is one unbatched example."""
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        padding = self.padding
        if isinstance(padding, str) or self.padding_mode != "zeros":
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
            padding = (0, 0)
        op = Conv2dOp(_pair(self.stride), _pair(padding), _pair(self.dilation), self.groups)
        return self._swat_forward(x, op)

    def extra_repr(self) -> str:
        """Stock representation plus the SWAT settings."""
        return f"{super().extra_repr()}, {self.swat_repr()}"


def name_swat_layers(model: nn.Module) -> None:
    """Set every SWAT layer's :attr:`~SWATLayer.ledger_name` to its qualified name in ``model``.

    The cost model's layer tables use the same names (the root module is ``"model"``), so
    measured and nominal ledgers line up.
    """
    for name, module in model.named_modules():
        if isinstance(module, SWATLayer):
            module.ledger_name = name or "model"
