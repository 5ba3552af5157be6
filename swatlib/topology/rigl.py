"""RigL (Evci et al. 2020; SPEC §6): drop the weakest connections, grow where the dense gradient is largest.

Every ``delta_t`` optimizer steps up to step ``t_end``, per managed layer that is not dense: drop the
``floor(f·nnz)`` connections of smallest ``|w|`` with ``f = α·(1 + cos(π·t/t_end))/2``, then grow as
many among the positions not held by a kept connection (a just-dropped one may come back) with the
largest magnitude of the *dense* gradient of the batch of step ``t``; new weights are zero and their
optimizer state starts at zero. Ties are broken towards the lower row-major position, in both steps.

Where the dense gradient comes from:

* **truly sparse** (:class:`~swatlib.sparse.SparseLinear`, and :class:`~swatlib.sparse.MaskedLinear`,
  whose autograd only yields the masked gradient): before a due step RigL records the layer's input
  ``a`` and output gradient ``δ`` of that step's batch (a forward hook; nothing is kept on other steps).
  After the optimizer step it scores the inactive positions block by block of output rows —
  ``|δ[:, rows]ᵀ · a|``, one ``rows × in`` block at a time — keeping a running top-k, so memory stays
  O(nnz + batch·(in + out) + block) and no ``in × out`` tensor ever exists;
* **masked** stock layers (:class:`~swatlib.sparse.MaskedWeight`): the dense gradient is already
  computed by autograd (that is what makes them masked); RigL reads it before the mask is applied.

Both paths meet in one selection routine, so RigL on a ``SparseLinear`` and on its masked twin grow the
same positions (a test checks this in float64). Which layers are managed, and their densities (uniform
or ERK, first layer dense only when asked: :func:`swatlib.densities.distribute`), is the caller's choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from swatlib.checks import check_int, check_number
from swatlib.sparse import MaskedWeight
from swatlib.sparse.erdos_renyi import flat_keys
from swatlib.topology.base import ConnectionMap, TopologyAlgorithm, check_connection_layers

__all__ = ["RigL", "grow_by_score"]

#: Elements of one block of dense-gradient scores (16 MiB in float32).
BLOCK_ELEMENTS = 1 << 22


def _best(scores: torch.Tensor, keys: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` entries of largest score, the lower key first among equal scores (any order)."""
    if scores.numel() <= count:
        return scores, keys
    cut = torch.topk(scores, count, sorted=False).values.min()
    above = (scores > cut).nonzero().squeeze(1)
    tied = (scores == cut).nonzero().squeeze(1)
    tied = tied[torch.argsort(keys[tied], stable=True)[:count - above.numel()]]
    chosen = torch.cat([above, tied])
    return scores[chosen], keys[chosen]


def grow_by_score(blocks: Iterator[tuple[int, torch.Tensor]], occupied: torch.Tensor, n_in: int,
                  count: int) -> torch.Tensor:
    """The ``count`` free positions of largest score, as sorted row-major flat keys.

    Parameters
    ----------
    blocks
        ``(first_row, scores)`` pairs covering the layer's rows in increasing order; ``scores`` is a
        ``rows × n_in`` block of non-negative scores (it is modified).
    occupied
        Sorted flat keys that must not be chosen.
    n_in
        Columns of the layer.
    count
        How many positions to choose (at most the number of free positions).

    Ties are broken towards the lower flat key, so the result does not depend on the block size. A
    running selection of at most ``count`` candidates is all that is kept between blocks.
    """
    best_scores = torch.empty(0, dtype=torch.float64)
    best_keys = torch.empty(0, dtype=torch.int64)
    if count == 0:
        return best_keys
    for first_row, scores in blocks:
        offset = first_row * n_in
        flat = scores.reshape(-1)
        lo, hi = torch.searchsorted(occupied, torch.tensor([offset, offset + flat.numel()])).tolist()
        flat[occupied[lo:hi] - offset] = -1.0
        # Only entries that can enter the selection: at least the block's own k-th best, and at
        # least the worst of a full selection so far.
        floor = max(0.0, float(torch.topk(flat, min(count, flat.numel()), sorted=False).values.min()))
        if best_scores.numel() == count:
            floor = max(floor, float(best_scores.min()))
        candidates = (flat >= floor).nonzero().squeeze(1)
        best_scores, best_keys = _best(torch.cat([best_scores, flat[candidates].to(torch.float64)]),
                                       torch.cat([best_keys, candidates + offset]), count)
    return best_keys.sort().values


class RigL(TopologyAlgorithm):
    """Rigging the Lottery: magnitude drop, dense-gradient growth (module docstring).

    Parameters
    ----------
    layers
        The layers to manage: ``SparseLinear``, ``MaskedLinear`` or ``MaskedWeight``. Dense ones
        (every connection present) are left alone.
    t_end
        Last optimizer step that may change the topology (RigL: about 0.75 of training).
    delta_t
        Steps between topology updates (paper: 100).
    alpha
        Initial drop fraction α (paper: 0.3).
    optimizer
        Optimizer whose state follows the connections.
    block_elements
        Size of one block of gradient scores on the truly sparse path.

    Raises
    ------
    ValueError
        On a bad schedule or fraction, or a layer without the connection interface.
    """

    when = "optimizer_step"

    def __init__(self, layers: Sequence[Any], *, t_end: int, delta_t: int = 100, alpha: float = 0.3,
                 optimizer: torch.optim.Optimizer | None = None,
                 block_elements: int = BLOCK_ELEMENTS) -> None:
        for name, value in (("t_end", t_end), ("delta_t", delta_t), ("block_elements", block_elements)):
            check_int(value, name)
        check_number(alpha, "alpha", 0, 1)
        super().__init__(check_connection_layers(layers), optimizer=optimizer)
        self.t_end, self.delta_t, self.alpha = int(t_end), int(delta_t), float(alpha)
        self.block_elements = int(block_elements)
        self._captured: dict[int, Any] = {}
        self._handles = []
        for index, layer in enumerate(self.layers):
            if isinstance(layer, MaskedWeight):
                layer.observe_gradient(self._keep_dense_gradient(index))
            else:
                self._handles.append(layer.register_forward_hook(self._keep_input_and_delta(index)))

    def due(self, t: int) -> bool:
        """Every ``delta_t`` steps, up to ``t_end``."""
        return t % self.delta_t == 0 and t <= self.t_end

    def drop_fraction(self, t: int) -> float:
        """``α·(1 + cos(π·t/t_end))/2`` at step ``t``."""
        return self.alpha * (1.0 + math.cos(math.pi * t / self.t_end)) / 2.0

    # ------------------------------------------------------------------ gradient capture
    def _keep_dense_gradient(self, index: int):
        def observe(grad: torch.Tensor) -> None:
            if self.due(self.t + 1):
                self._captured[index] = grad.detach().abs()
        return observe

    def _keep_input_and_delta(self, index: int):
        def hook(module, inputs, output) -> None:
            if not (self.due(self.t + 1) and output.requires_grad):
                return
            x = inputs[0].detach().reshape(-1, module.in_features)

            def keep_delta(grad: torch.Tensor) -> None:
                self._captured[index] = (x, grad.detach().reshape(-1, module.out_features))
            output.register_hook(keep_delta)
        return hook

    def _score_blocks(self, layer: Any, captured: Any) -> Iterator[tuple[int, torch.Tensor]]:
        n_out, n_in = layer.out_features, layer.in_features
        if isinstance(captured, torch.Tensor):        # a masked layer's dense gradient
            yield 0, captured.reshape(n_out, n_in)
            return
        x, delta = captured
        rows = max(1, self.block_elements // n_in)
        for first in range(0, n_out, rows):
            yield first, (delta[:, first:first + rows].t() @ x).abs_()

    # ------------------------------------------------------------------ update
    def _update(self) -> dict[int, ConnectionMap]:
        captured, self._captured = self._captured, {}
        changes = {}
        for index, layer in enumerate(self.layers):
            grads = captured.get(index)
            rows, cols, values = layer.connections()
            n_out, n_in = layer.out_features, layer.in_features
            if grads is None or values.numel() == n_out * n_in:
                continue
            count = math.floor(self.drop_fraction(self.t) * values.numel())
            if count == 0:
                continue
            dropped = torch.argsort(values.abs(), stable=True)[:count]
            alive = torch.ones(values.numel(), dtype=torch.bool, device=values.device)
            alive[dropped] = False
            kept = alive.nonzero().squeeze(1)
            occupied = flat_keys(rows[kept], cols[kept], n_in).cpu()
            grown = grow_by_score(self._score_blocks(layer, grads), occupied, n_in, count).to(rows.device)
            source = torch.cat([kept, torch.full((count,), -1, dtype=torch.int64, device=kept.device)])
            source = layer.set_connections(
                torch.cat([rows[kept], grown // n_in]), torch.cat([cols[kept], grown % n_in]),
                torch.cat([values[kept], values.new_zeros(count)]), source=source, optimizer=self.optimizer)
            changes[index] = ConnectionMap(source, values.numel())
        return changes

    def remove(self) -> None:
        """Detach the forward hooks (a ``MaskedWeight``'s own gradient hook stays)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
