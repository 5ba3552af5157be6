"""SET topology evolution (Mocanu et al. 2018; SPEC §1): prune the weakest connections, regrow at random.

Per managed layer it removes the fraction ζ of the *positive* weights closest to zero and ζ of the
*negative* weights closest to zero (connections whose weight is exactly zero go too, as with the
authors' thresholds), then adds the same number of connections at positions drawn uniformly at random
among those not held by a kept weight — a just-removed position may be drawn again, and is then a new
connection. nnz is conserved exactly.

New weights come from the layer's init distribution (``regrow_init="init"``, the authors' choice; a
:class:`~swatlib.sparse.MaskedWeight` draws like torch's default init) or are zero (``"zero"``).
Optimizer state of removed connections is dropped and new connections start with zero state
(momentum, Adam moments): the layers' ``set_connections`` does this through
:func:`swatlib.optim.replace_parameter`. Work and memory are O(nnz) per layer: nothing of the dense
``in × out`` size is created for a :class:`~swatlib.sparse.SparseLinear`.

SET runs at the end of an epoch (``when = "epoch"``), every ``every``-th call, and not after call
``until`` (the authors evolve after every epoch but the last: ``until = epochs - 1``). Which layers
evolve is the caller's choice; :func:`evolvable_layers` gives the paper's — every sparse layer of an
MLP but the output layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from swatlib.checks import check_choice, check_int, check_number
from swatlib.sparse import MaskedLinear, SparseLinear
from swatlib.sparse.erdos_renyi import flat_keys, sample_free_positions
from swatlib.sparse.init import draw_values
from swatlib.topology.base import ConnectionMap, TopologyAlgorithm, check_connection_layers

__all__ = ["REGROW_INITS", "SET", "evolvable_layers"]

#: Accepted values of ``regrow_init``.
REGROW_INITS = ("init", "zero")

_SPARSE_TYPES = (SparseLinear, MaskedLinear)


def evolvable_layers(model: nn.Module) -> list[SparseLinear | MaskedLinear]:
    """The layers SET evolves in an MLP (the paper's choice): every sparse linear layer except the output layer.

    Parameters
    ----------
    model
        A model exposing ``linears`` (its ordered linear layers), or any module whose linear layers
        are registered in forward order (e.g. ``nn.Sequential``).
    """
    linears = getattr(model, "linears", None)
    if linears is None:
        linears = [m for m in model.modules() if isinstance(m, (nn.Linear, *_SPARSE_TYPES))]
    return [layer for layer in list(linears)[:-1] if isinstance(layer, _SPARSE_TYPES)]


def _check_schedule(every: int, until: int | None) -> tuple[int, int | None]:
    """Validate a topology schedule: act every ``every``-th call (≥ 1), not after call ``until`` (≥ 0 or None)."""
    return check_int(every, "every"), None if until is None else check_int(until, "until", 0)


class SET(TopologyAlgorithm):
    """Sparse Evolutionary Training's prune-and-regrow step (module docstring).

    Parameters
    ----------
    layers
        The layers to evolve (connection interface: :mod:`swatlib.topology.base`), e.g.
        :func:`evolvable_layers` of an MLP.
    zeta
        Fraction ζ ∈ [0, 1] of the positive and, separately, of the negative weights removed per
        evolution (paper: 0.3). ``floor(ζ·count)`` weights of each sign go.
    regrow_init
        ``"init"`` (default, authors): new weights drawn from the layer's ``init`` distribution;
        ``"zero"``: new weights start at 0.
    every, until
        Evolve at calls ``every, 2·every, …`` up to call ``until`` (``None``: no end).
    optimizer
        Optimizer whose state follows the connections.
    generator
        Source of all randomness of the regrowth (``None``: torch's default generator).

    Raises
    ------
    ValueError
        If ``zeta`` ∉ [0, 1], ``regrow_init`` is unknown, the schedule is invalid, or a layer lacks
        the connection interface.
    """

    when = "epoch"

    def __init__(
        self,
        layers: Sequence[Any],
        *,
        zeta: float = 0.3,
        regrow_init: str = "init",
        every: int = 1,
        until: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        check_number(zeta, "zeta", 0, 1)
        check_choice(regrow_init, REGROW_INITS, "regrow_init")
        super().__init__(check_connection_layers(layers), optimizer=optimizer, generator=generator)
        self.zeta = float(zeta)
        self.regrow_init = regrow_init
        self.every, self.until = _check_schedule(every, until)

    def due(self, t: int) -> bool:
        """Every ``every``-th call, up to call ``until``."""
        return t % self.every == 0 and (self.until is None or t <= self.until)

    def _update(self) -> dict[int, ConnectionMap]:
        return {index: self.evolve_layer(layer) for index, layer in enumerate(self.layers)}

    @torch.no_grad()
    def evolve_layer(self, layer: Any) -> ConnectionMap:
        """Prune and regrow one layer now (whatever the schedule); return its old → new map.

        O(nnz) apart from binary searches of sorted keys: the weakest weights are found by selection
        (no sort), and the kept connections (still row-major) are merged with the sorted new ones.
        """
        rows, cols, values = layer.connections()
        removed = values == 0
        for sign in (1.0, -1.0):
            same_sign = (values * sign > 0).nonzero().squeeze(1)
            count = math.floor(self.zeta * same_sign.numel() + 1e-9)  # 0.29 * 100 is 28.999…96 in floats
            removed[same_sign[smallest(values[same_sign] * sign, count)]] = True
        kept = (~removed).nonzero().squeeze(1)
        count = values.numel() - kept.numel()
        n_out, n_in = layer.out_features, layer.in_features
        kept_keys = flat_keys(rows[kept], cols[kept], n_in)
        new_keys = sample_free_positions(n_out, n_in, count, kept_keys.cpu(), self.generator).to(rows.device)
        if self.regrow_init == "init":
            new_values = draw_values(layer.init, n_in, n_out, count, self.generator, values.dtype)
            new_values = new_values.to(values.device)
        else:
            new_values = torch.zeros(count, dtype=values.dtype, device=values.device)
        at_new = torch.searchsorted(kept_keys, new_keys) + torch.arange(count, device=kept.device)
        keys = merge_sorted(kept_keys, new_keys, at_new)
        source = merge_sorted(kept, torch.full((count,), -1, dtype=torch.int64, device=kept.device), at_new)
        source = layer.set_connections(keys // n_in, keys % n_in, merge_sorted(values[kept], new_values, at_new),
                                       source=source, optimizer=self.optimizer)
        return ConnectionMap(source, values.numel())


def smallest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` smallest ``scores``, ties going to the lower index, in O(n) by selection.

    The same set as ``torch.argsort(scores, stable=True)[:count]``, in ascending index order.
    """
    if count <= 0:
        return torch.empty(0, dtype=torch.int64, device=scores.device)
    if count >= scores.numel():
        return torch.arange(scores.numel(), device=scores.device)
    threshold = torch.kthvalue(scores, count).values
    below = scores < threshold
    tied = (scores == threshold).nonzero().squeeze(1)[:count - int(below.sum())]
    below[tied] = True
    return below.nonzero().squeeze(1)


def merge_sorted(first: torch.Tensor, second: torch.Tensor, at_second: torch.Tensor) -> torch.Tensor:
    """Interleave ``first`` and ``second`` so that ``second[i]`` lands at position ``at_second[i]``."""
    merged = torch.empty(first.numel() + second.numel(), dtype=first.dtype, device=first.device)
    is_second = torch.zeros(merged.numel(), dtype=torch.bool, device=first.device)
    is_second[at_second] = True
    merged[at_second] = second
    merged[~is_second] = first
    return merged
