"""The one protocol of every topology algorithm, and the map from old to new connections.

Modelled on ``torch.ao.pruning``'s sparsifiers: an algorithm is built with its hyper-parameters, the
layers it manages (an explicit list, so the same object works in an MLP, a CNN or a transformer) and
the optimizer whose state follows the connections; the training loop calls :meth:`~TopologyAlgorithm.step`
at the point the algorithm declares in :attr:`~TopologyAlgorithm.when` — after every optimizer step
(``"optimizer_step"``: RigL, SWAT-M) or at the end of every epoch (``"epoch"``: SET, Importance
Pruning). The algorithm counts its own calls (``t``) and decides from its schedule whether a call
changes anything. :meth:`~TopologyAlgorithm.state_dict` / :meth:`~TopologyAlgorithm.load_state_dict`
hold that count and the random stream, so a run resumed from a checkpoint (model, optimizer and
algorithm state dicts) continues exactly as the uninterrupted run.

**Layers.** SET and RigL work on anything with the connection interface of :mod:`swatlib.sparse`:
``connections() -> (rows, cols, values)``, ``set_connections(rows, cols, values, source=, optimizer=)``,
``in_features``, ``out_features``, ``init`` — the truly sparse :class:`~swatlib.sparse.SparseLinear`, the
masked :class:`~swatlib.sparse.MaskedLinear`, and any stock ``nn.Linear`` / ``nn.Conv2d`` wrapped in a
:class:`~swatlib.sparse.MaskedWeight`.

**Old → new connections.** Every change of a layer's connections is described by a
:class:`ConnectionMap`: new connection ``j`` (row-major order, as ``connections()`` lists them) was old
connection ``source[j]``, or is new where ``source[j] == -1``. Optimizer state moves through it (the
layers do this in ``set_connections``), and anything else that follows connections — a parameter
server's copy of the values, a worker's stale gradient — is remapped with one gather,
:meth:`ConnectionMap.gather`. ``step()`` returns the maps of the layers it changed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

__all__ = ["WHEN", "ConnectionMap", "TopologyAlgorithm", "check_connection_layers"]

#: The points of the training loop at which an algorithm's ``step()`` is called.
WHEN = ("optimizer_step", "epoch")


@dataclass(frozen=True)
class ConnectionMap:
    """How one layer's connections changed in one topology step.

    Attributes
    ----------
    source : torch.Tensor
        int64, one entry per *new* connection (row-major): the index of the old connection it
        continues, or -1 for a connection that did not exist before.
    old_count : int
        Number of connections before the step.
    """

    source: torch.Tensor
    old_count: int

    @property
    def new_count(self) -> int:
        """Number of connections after the step."""
        return self.source.numel()

    @property
    def grown(self) -> torch.Tensor:
        """Indices (new numbering) of the connections that did not exist before."""
        return (self.source < 0).nonzero().squeeze(1)

    @property
    def removed(self) -> torch.Tensor:
        """Indices (old numbering) of the connections that are gone."""
        alive = torch.zeros(self.old_count, dtype=torch.bool, device=self.source.device)
        alive[self.source[self.source >= 0]] = True
        return (~alive).nonzero().squeeze(1)

    def gather(self, old: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Per-connection data of the old topology (first dimension ``old_count``) in the new order.

        Survivors take their old rows, new connections ``fill``.
        """
        if old.shape[0] != self.old_count:
            raise ValueError(f"old must have {self.old_count} rows (one per old connection), got {old.shape[0]}")
        new = old.new_full((self.new_count, *old.shape[1:]), fill)
        kept = self.source >= 0
        new[kept] = old[self.source[kept]]
        return new


def check_connection_layers(layers: Sequence[Any]) -> list[Any]:
    """Return ``layers`` as a list if each has the connection interface, else raise naming the culprit."""
    try:
        layers = list(layers)
    except TypeError:  # a model or a single layer: nn.Module is not iterable (nn.Sequential is)
        raise ValueError(f"layers must be a sequence of layers, got a {type(layers).__name__}: pass "
                         f"[layer], or evolvable_layers(model) for an MLP") from None
    if not layers:
        raise ValueError("layers must name at least one layer to manage")
    for index, layer in enumerate(layers):
        missing = [a for a in ("connections", "set_connections", "in_features", "out_features")
                   if not hasattr(layer, a)]
        if missing:
            raise ValueError(f"layers[{index}] ({type(layer).__name__}) lacks {', '.join(missing)}: pass "
                             f"SparseLinear / MaskedLinear layers, or wrap a stock layer in MaskedWeight")
    return layers


class TopologyAlgorithm(ABC):
    """Base class of the topology algorithms (module docstring).

    Subclasses set :attr:`when`, implement :meth:`due` (whether call number ``t`` acts) and
    :meth:`_update` (the change itself), and may extend :meth:`state_dict`.

    Parameters
    ----------
    layers : sequence
        The layers the algorithm manages, in forward order.
    optimizer : torch.optim.Optimizer, optional
        Its per-connection state follows the connections (``None``: nothing to remap).
    generator : torch.Generator, optional
        The algorithm's randomness (its state is part of :meth:`state_dict`).

    Attributes
    ----------
    t : int
        Number of ``step()`` calls so far.
    changes : dict of int to ConnectionMap
        The maps of the last step that changed connections, by layer index.
    """

    #: ``"optimizer_step"`` or ``"epoch"``: where the training loop calls :meth:`step`.
    when: ClassVar[str]

    def __init__(self, layers: Sequence[Any], *, optimizer: torch.optim.Optimizer | None = None,
                 generator: torch.Generator | None = None) -> None:
        self.layers = list(layers)
        self.optimizer = optimizer
        self.generator = generator
        self.t = 0
        self.changes: dict[int, ConnectionMap] = {}

    @abstractmethod
    def due(self, t: int) -> bool:
        """Whether call number ``t`` (1-based) of :meth:`step` changes the topology."""

    @abstractmethod
    def _update(self) -> dict[int, ConnectionMap]:
        """Change the topology now; return the maps of the layers whose connections changed."""

    @torch.no_grad()
    def step(self) -> dict[int, ConnectionMap]:
        """Count this call and, if :meth:`due`, change the topology.

        Returns
        -------
        dict of int to ConnectionMap
            By layer index, the layers whose connections changed (empty if nothing was due).
        """
        self.t += 1
        if not self.due(self.t):
            return {}
        self.changes = self._update()
        return self.changes

    def state_dict(self) -> dict[str, Any]:
        """The call count and the generator's state: with the model's and the optimizer's state dicts,
        everything a resumed run needs."""
        state: dict[str, Any] = {"t": self.t}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.t = int(state["t"])
        if "generator" in state:
            if self.generator is None:
                raise ValueError("the state holds a generator state but this algorithm has no generator")
            self.generator.set_state(state["generator"])
