"""SET topology evolution (Mocanu et al. 2018; SPEC §1): prune the weakest connections, regrow at random.

Called once at the end of every epoch except the last, after the optimizer step. Per evolvable sparse
layer it removes the fraction ζ of the *positive* weights closest to zero and ζ of the *negative*
weights closest to zero (connections whose weight is exactly zero go too, as with the authors'
thresholds), then adds the same number of connections at positions drawn uniformly at random among
those not held by a kept weight — a just-removed position may be drawn again, and is then a new
connection. nnz is conserved exactly.

New weights come from the layer's init distribution (``regrow_init="init"``, the authors' choice) or are
zero (``"zero"``). Optimizer state of removed connections is dropped and new connections start with
zero state (momentum, Adam moments) — :meth:`SparseLinear.set_connections` does this through
:func:`swatlib.optim.replace_parameter`. Work and memory are O(nnz) per layer: nothing of the dense
``in × out`` size is created for a :class:`~swatlib.sparse.SparseLinear`.

Which layers evolve: the output layer never does. :meth:`SET.evolve` takes the model's ordered linear
layers — ``model.linears`` when the model has that attribute, otherwise every ``nn.Linear``,
``SparseLinear`` and ``MaskedLinear`` in module registration order — drops the last one (the output
layer) and evolves the sparse ones among the rest; or it evolves an explicit ``layers`` list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import nn

from swatlib.sparse import MaskedLinear, SparseLinear
from swatlib.sparse.erdos_renyi import flat_keys, sample_free_positions
from swatlib.sparse.init import draw_values

__all__ = ["REGROW_INITS", "SET", "evolvable_layers"]

#: Accepted values of ``regrow_init``.
REGROW_INITS = ("init", "zero")

_SPARSE_TYPES = (SparseLinear, MaskedLinear)


def evolvable_layers(model: nn.Module) -> list[SparseLinear | MaskedLinear]:
    """The sparse layers SET evolves by default: every sparse linear layer except the output layer.

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


class SET:
    """Sparse Evolutionary Training's prune-and-regrow step.

    Parameters
    ----------
    zeta
        Fraction ζ ∈ [0, 1] of the positive and, separately, of the negative weights removed per
        evolution (paper: 0.3). ``floor(ζ·count)`` weights of each sign go.
    regrow_init
        ``"init"`` (default, authors): new weights drawn from the layer's ``init`` distribution;
        ``"zero"``: new weights start at 0.
    generator
        Source of all randomness of the regrowth (``None``: torch's default generator).

    Raises
    ------
    ValueError
        If ``zeta`` ∉ [0, 1] or ``regrow_init`` is unknown.
    """

    def __init__(
        self, zeta: float = 0.3, regrow_init: str = "init", generator: torch.Generator | None = None
    ) -> None:
        if isinstance(zeta, bool) or not isinstance(zeta, Real) or not 0.0 <= zeta <= 1.0:
            raise ValueError(f"zeta must be a number in [0, 1], got {zeta!r}")
        if regrow_init not in REGROW_INITS:
            raise ValueError(f"regrow_init must be one of {REGROW_INITS}, got {regrow_init!r}")
        self.zeta = float(zeta)
        self.regrow_init = regrow_init
        self.generator = generator

    def evolve(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        layers: Sequence[SparseLinear | MaskedLinear] | None = None,
    ) -> list[int]:
        """Evolve every evolvable layer of ``model`` (or exactly ``layers``) once.

        Parameters
        ----------
        model
            The network (see :func:`evolvable_layers` for which layers are chosen).
        optimizer
            Optimizer whose state follows the connections (``None``: none to update).
        layers
            Explicit list of sparse layers to evolve instead of the default choice.

        Returns
        -------
        list[int]
            Number of connections replaced in each evolved layer, in order.
        """
        chosen = evolvable_layers(model) if layers is None else list(layers)
        for layer in chosen:
            if not isinstance(layer, _SPARSE_TYPES):
                raise ValueError(f"layers must hold SparseLinear or MaskedLinear modules, "
                                 f"got {type(layer).__name__}")
        return [self.evolve_layer(layer, optimizer) for layer in chosen]

    @torch.no_grad()
    def evolve_layer(
        self, layer: SparseLinear | MaskedLinear, optimizer: torch.optim.Optimizer | None = None
    ) -> int:
        """Prune and regrow one sparse layer; return the number of connections replaced."""
        rows, cols, values = layer.connections()
        removed = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
        removed[values == 0] = True
        for sign in (1.0, -1.0):
            same_sign = (values * sign > 0).nonzero().squeeze(1)
            count = math.floor(self.zeta * same_sign.numel() + 1e-9)  # 0.29 * 100 is 28.999…96 in floats
            closest = torch.argsort((values[same_sign] * sign), stable=True)[:count]
            removed[same_sign[closest]] = True
        kept = (~removed).nonzero().squeeze(1)
        count = values.numel() - kept.numel()
        n_out, n_in = layer.out_features, layer.in_features
        occupied = flat_keys(rows[kept], cols[kept], n_in).cpu()
        new_keys = sample_free_positions(n_out, n_in, count, occupied, self.generator).to(rows.device)
        if self.regrow_init == "init":
            new_values = draw_values(layer.init, n_in, n_out, count, self.generator, values.dtype)
            new_values = new_values.to(values.device)
        else:
            new_values = torch.zeros(count, dtype=values.dtype, device=values.device)
        layer.set_connections(
            torch.cat([rows[kept], new_keys // n_in]),
            torch.cat([cols[kept], new_keys % n_in]),
            torch.cat([values[kept], new_values]),
            source=torch.cat([kept, torch.full((count,), -1, dtype=torch.int64, device=kept.device)]),
            optimizer=optimizer,
        )
        return count
