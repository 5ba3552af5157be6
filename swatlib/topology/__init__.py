"""Every topology algorithm, once, behind one protocol (:mod:`swatlib.topology.base`).

An algorithm is built with its hyper-parameters, the layers it manages and the optimizer whose state
follows the connections; the training loop (:func:`swatlib.train.fit`) calls ``step()`` where the
algorithm's ``when`` says — after every optimizer step or at the end of every epoch; ``state_dict()`` /
``load_state_dict()`` resume it; every change of connections is exposed as a :class:`ConnectionMap`
(old → new), so anything that follows connections is remapped with one gather.

=======================  ==================  ===========================================================
algorithm                ``when``            what it does
=======================  ==================  ===========================================================
:class:`SET`             ``epoch``           drop ζ of the weights closest to zero, regrow at random (§1)
:class:`RigL`            ``optimizer_step``  drop the smallest |w|, grow by dense-gradient magnitude (§6);
                                             truly sparse on ``SparseLinear`` (blockwise scores)
:class:`ImportancePruning`  ``epoch``        remove the least important hidden neurons (§3)
:class:`SWATM`           ``optimizer_step``  SWAT-M: share the nnz budget across layers by momentum (§5)
:class:`GradualMagnitudePruning`  ``optimizer_step``  prune the smallest |w| to Zhu & Gupta's cubic
                                             density schedule, no regrowth (§8)
:class:`Densify`         ``optimizer_step``  grow the density linearly, new connections at random with
                                             weight 0 (with RigL: the toy-BERT study's new idea, §8)
=======================  ==================  ===========================================================

SET and RigL work on ``SparseLinear`` (truly sparse), ``MaskedLinear`` and any stock ``nn.Linear`` /
``nn.Conv2d`` wrapped in a :class:`~swatlib.sparse.MaskedWeight` — one implementation each.
"""

from swatlib.topology.base import WHEN, ConnectionMap, TopologyAlgorithm, check_connection_layers
from swatlib.topology.densify import Densify
from swatlib.topology.gmp import GradualMagnitudePruning
from swatlib.topology.pruning import SCHEDULES, TIMINGS, ImportancePruning, pruning_epochs
from swatlib.topology.redistribution import SWATM
from swatlib.topology.rigl import RigL, grow_by_score
from swatlib.topology.set_evolution import REGROW_INITS, SET, evolvable_layers

__all__ = [
    "REGROW_INITS",
    "SCHEDULES",
    "TIMINGS",
    "WHEN",
    "ConnectionMap",
    "Densify",
    "GradualMagnitudePruning",
    "ImportancePruning",
    "RigL",
    "SET",
    "SWATM",
    "TopologyAlgorithm",
    "check_connection_layers",
    "evolvable_layers",
    "grow_by_score",
    "pruning_epochs",
]
