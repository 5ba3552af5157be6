"""Topology algorithms as objects that change a sparse network's connections between optimizer steps.

``SET`` (SPEC §1): magnitude pruning of the weights closest to zero and random regrowth, once per epoch.
"""

from swatlib.topology.set_evolution import REGROW_INITS, SET, evolvable_layers

__all__ = ["REGROW_INITS", "SET", "evolvable_layers"]
