"""The authors' momentum SGD with decoupled weight decay, and optimizer-state surgery for topology changes.

SPEC §1: the SET authors update ``v = m·v − lr·g; W = (1 − wd)·W + v`` — weight decay *decoupled*
from the gradient and **not** scaled by the learning rate, applied to biases too. ``torch.optim.SGD``'s
``weight_decay`` is coupled (``g + wd·W``, then scaled by lr); :func:`make_optimizer` offers both under
named options, ``"authors"`` (default, :class:`DecoupledSGD`) and ``"torch"``.

Topology algorithms (SET evolution, Importance Pruning) replace a parameter's elements: a sparse layer's
``values`` gain and lose connections, a pruned neuron's bias disappears. Optimizers key their state by
the parameter *object*, so those algorithms keep the same ``nn.Parameter``, assign new ``.data``, and
move every per-element state tensor (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, …) to the new
index set with :func:`replace_parameter` — kept elements keep their state, new ones start at zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from swatlib.checks import check_choice

__all__ = ["OPTIMIZERS", "DecoupledSGD", "make_optimizer", "replace_parameter"]

#: Names accepted by :func:`make_optimizer`.
OPTIMIZERS = ("authors", "torch")


class DecoupledSGD(torch.optim.Optimizer):
    """Momentum SGD with decoupled, lr-independent weight decay (the SET authors' update rule).

    Per parameter ``W`` with gradient ``g``::

        v ← m·v − lr·g
        W ← (1 − wd)·W + v

    The velocity ``v`` lives in ``state["momentum_buffer"]`` (zero before the first step), so
    :func:`replace_parameter` remaps it like torch's own momentum. Parameters whose ``grad`` is ``None``
    are skipped entirely (no decay either).

    Parameters
    ----------
    params
        Parameters or parameter groups, as for any ``torch.optim.Optimizer``.
    lr
        Learning rate (≥ 0).
    momentum
        Momentum ``m`` in [0, 1) (paper: 0.9).
    weight_decay
        Decoupled decay ``wd`` in [0, 1) (paper: 2·10⁻⁴).
    """

    def __init__(
        self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 2e-4
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not 0.0 <= weight_decay < 1.0:
            raise ValueError(f"weight_decay must be in [0, 1), got {weight_decay!r}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Apply one update; ``closure`` (optional) re-evaluates the loss, as in ``torch.optim``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            params = [param for param in group["params"] if param.grad is not None]
            if not params:
                continue
            if any(param.grad.is_sparse for param in params):
                raise RuntimeError("DecoupledSGD does not support sparse gradients")
            velocities = []
            for param in params:
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                velocities.append(state["momentum_buffer"])
            # One call per operation for the whole group (torch's foreach kernels, as torch.optim.SGD
            # uses them): the same element-wise arithmetic as a loop over the tensors, without the
            # per-tensor call overhead that dominates for a model of a few small tensors.
            torch._foreach_mul_(velocities, momentum)
            torch._foreach_add_(velocities, [param.grad for param in params], alpha=-lr)
            if decay:
                torch._foreach_mul_(params, 1.0 - decay)
            torch._foreach_add_(params, velocities)
        return loss


def make_optimizer(
    name: str,
    params: Iterable,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 2e-4,
) -> torch.optim.Optimizer:
    """Build the SET-MLP optimizer by name.

    Parameters
    ----------
    name
        ``"authors"``: :class:`DecoupledSGD` (decoupled weight decay, not scaled by lr — SPEC §1 default);
        ``"torch"``: ``torch.optim.SGD`` with the same momentum and its coupled ``weight_decay``.
    params
        Parameters or parameter groups.
    lr, momentum, weight_decay
        Hyper-parameters passed through (their meaning for ``weight_decay`` differs, see above).

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    """
    if check_choice(name, OPTIMIZERS, "name") == "authors":
        return DecoupledSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@torch.no_grad()
def replace_parameter(
    param: torch.nn.Parameter,
    new_data: torch.Tensor,
    source: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Give ``param`` new data (any shape) and carry its optimizer state over element by element.

    Every state tensor of ``optimizer`` for ``param`` that has the parameter's (old) shape is treated
    as per-element state and rebuilt for the new shape: new element ``j`` takes the old state of
    flat element ``source[j]``, or zero where ``source[j] == -1`` (a new element). Other state entries
    (Adam's scalar ``step``) are left alone. The parameter object is kept, so the optimizer still holds
    it (a resized one gets a fresh tensor body through ``torch.utils.swap_tensors``, because autograd
    would otherwise keep checking gradients against the old shape); its stale ``grad`` is cleared.

    Parameters
    ----------
    param
        The parameter to update in place.
    new_data
        Its new values.
    source
        int64 tensor with ``new_data.numel()`` entries: index into the old, flattened parameter, or -1.
    optimizer
        Optimizer whose state follows (``None``: only the data changes).

    Raises
    ------
    ValueError
        If ``source`` does not have one entry per new element or points outside the old parameter.
    RuntimeError
        If the shape changes while an autograd graph that saved ``param`` for backward is alive.
    """
    if source.numel() != new_data.numel():
        raise ValueError(f"source must have {new_data.numel()} entries (one per new element), "
                         f"got {source.numel()}")
    old_numel = param.numel()
    if source.numel() and (int(source.min()) < -1 or int(source.max()) >= old_numel):
        raise ValueError(f"source entries must be -1 or indices in [0, {old_numel})")
    old_shape = param.shape
    if new_data.shape == old_shape:
        param.data = new_data
    else:
        # Autograd caches a per-parameter gradient accumulator that remembers the old shape (it stays
        # alive as long as the last loss does), so a resized parameter gets a fresh tensor body.
        resized = torch.nn.Parameter(new_data, requires_grad=param.requires_grad)
        resized.__dict__.update(param.__dict__)
        try:
            torch.utils.swap_tensors(param, resized)
        except RuntimeError as error:
            raise RuntimeError(
                "cannot resize a parameter that a live autograd graph has saved for backward: change "
                "the topology after backward(), without keeping outputs computed with grad enabled"
            ) from error
    param.grad = None
    if optimizer is not None and param in optimizer.state:
        state = optimizer.state[param]
        kept = source >= 0
        for key, old in list(state.items()):
            if torch.is_tensor(old) and old.shape == old_shape:
                new = torch.zeros(new_data.shape, dtype=old.dtype, device=old.device)
                new.view(-1)[kept] = old.reshape(-1)[source[kept]]
                state[key] = new
