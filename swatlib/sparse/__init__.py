"""Sparse layers: the truly sparse ``SparseLinear``, the masked baseline ``MaskedLinear`` (and ``MaskedWeight`` for
any stock conv / linear layer), Erdős–Rényi init.

Both layer types share one constructor (``density`` or Erdős–Rényi ``epsilon``, ``init``, ``generator``)
and one topology interface used by :mod:`swatlib.topology` and :mod:`swatlib.importance`:

``connections() -> (rows, cols, values)``
    The existing connections, row-major, detached.
``set_connections(rows, cols, values, *, source=None, optimizer=None)``
    Replace them, keeping the parameter objects; ``source`` says whose optimizer state each new
    connection inherits (-1: none, zero state).
``select_neurons(outputs=None, inputs=None, optimizer=None)``
    Shrink the layer to some output / input neurons (bias and optimizer state follow).
``nnz``, ``density``, ``in_features``, ``out_features``, ``init``, ``to_dense()``.

:func:`state_bytes` counts what a model and its optimizer hold in training (bytes per connection).
"""

from swatlib.densities import epsilon_to_density
from swatlib.sparse.erdos_renyi import (
    connection_count,
    random_connections,
    resolve_density,
    sample_free_positions,
)
from swatlib.sparse.init import INITS, draw_values, initial_connections
from swatlib.sparse.masked_linear import MaskedLinear, MaskedWeight, random_mask
from swatlib.sparse.memory import state_bytes
from swatlib.sparse.sparse_linear import SparseLinear

__all__ = [
    "INITS",
    "MaskedLinear",
    "MaskedWeight",
    "SparseLinear",
    "connection_count",
    "draw_values",
    "epsilon_to_density",
    "initial_connections",
    "random_connections",
    "random_mask",
    "resolve_density",
    "sample_free_positions",
    "state_bytes",
]
