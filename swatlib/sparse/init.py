"""Weight initialisation of sparse layers (paper Table 7): he-uniform, xavier, normal; biases zero.

:func:`initial_connections` draws a layer's starting topology and then its values, and
:func:`draw_values` draws the values alone (SET regrows from it): :class:`~swatlib.sparse.SparseLinear`
and :class:`~swatlib.sparse.MaskedLinear` both start through the former, so given equal generators the
truly sparse and the masked layer start from the identical topology and bit-identical weights.

Fan-in and fan-out are those of the **dense** shape (``n_in``, ``n_out``), as in the authors' code and
in Keras' initialisers, not the sparse per-neuron fan-in (≈ density·n_in): the paper's layers were
initialised this way, and the sparse fan-in would give weights ≈ 1/√density times larger.

* ``"he_uniform"`` — U(−√(6/n_in), √(6/n_in)).
* ``"xavier"`` — U(−√(6/(n_in + n_out)), √(6/(n_in + n_out))) (Glorot uniform).
* ``"normal"`` — N(0, 0.1²): the authors' SET code draws ``randn / 10``, independent of the shape.
* ``"torch_default"`` — U(−1/√n_in, 1/√n_in): what ``nn.Linear`` / ``nn.Conv2d`` draw by default
  (Kaiming-uniform with a = √5), so SET regrows a masked conv / linear layer from its own init.

Values are drawn in float64 and then cast, so a float32 and a float64 layer built from the same
seed hold the same weights up to rounding.
"""

from __future__ import annotations

import math

import torch

from swatlib.checks import check_choice, check_int
from swatlib.sparse.erdos_renyi import connection_count, random_connections, resolve_density

__all__ = ["INITS", "draw_values", "initial_connections"]

#: The accepted ``init`` names.
INITS = ("he_uniform", "xavier", "normal", "torch_default")

_NORMAL_STD = 0.1


def draw_values(
    init: str,
    n_in: int,
    n_out: int,
    count: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw ``count`` connection weights from the ``init`` distribution of an ``n_out × n_in`` layer.

    Parameters
    ----------
    init
        One of :data:`INITS`.
    n_in, n_out
        Dense shape of the layer (fan-in and fan-out).
    count
        Number of values.
    generator
        Source of randomness (``None``: torch's default generator).
    dtype
        Result dtype (default: torch's default dtype).

    Returns
    -------
    torch.Tensor
        1-D tensor of ``count`` values.

    Raises
    ------
    ValueError
        If ``init`` is unknown.
    """
    check_choice(init, INITS, "init")
    dtype = dtype or torch.get_default_dtype()
    if init == "normal":
        values = torch.randn(count, generator=generator, dtype=torch.float64) * _NORMAL_STD
    else:
        if init == "torch_default":
            limit = 1.0 / math.sqrt(n_in)
        else:
            limit = math.sqrt(6.0 / (n_in if init == "he_uniform" else n_in + n_out))
        values = (torch.rand(count, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * limit
    return values.to(dtype)


def initial_connections(
    n_in: int,
    n_out: int,
    density: float | None,
    init: str,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    *,
    epsilon: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw a layer's starting topology, then its weights — the one draw every sparse layer type uses.

    Validates the constructor arguments the sparse layers share, so both report them alike.

    Parameters
    ----------
    n_in, n_out
        Dense shape of the layer (``in_features``, ``out_features``).
    density, epsilon
        Exactly one: the kept fraction in (0, 1], or the Erdős–Rényi ε
        (:func:`~swatlib.sparse.erdos_renyi.resolve_density`); the count is
        :func:`~swatlib.sparse.erdos_renyi.connection_count`.
    init
        One of :data:`INITS`.
    generator
        Source of randomness: the topology is drawn first, then the values.
    dtype
        dtype of the values.

    Returns
    -------
    rows, cols, values : torch.Tensor
        Row-major sorted int64 indices and their weights.
    """
    check_int(n_in, "in_features")
    check_int(n_out, "out_features")
    density = resolve_density(density, epsilon, n_in, n_out)
    check_choice(init, INITS, "init")
    count = connection_count(density, n_in, n_out)
    rows, cols = random_connections(n_out, n_in, count, generator)
    return rows, cols, draw_values(init, n_in, n_out, count, generator, dtype)
