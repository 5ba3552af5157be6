"""Parallel training of truly sparse networks: WASAP-SGD and WASSP-SGD (seed 001, Algorithm 1; SPEC §4).

One function, :func:`train`, trains a Truly Sparse run spec with ``algorithm="wasap"``,
``"wassp"`` or ``"sequential"`` on ``torch.distributed`` (gloo): spawned processes on one machine,
``torchrun`` across machines (``python -m swatlib.parallel``). :func:`simulate` runs the ordered
WASAP schedule in one process. The roles are in :mod:`swatlib.parallel.roles`, the messages in
:mod:`swatlib.parallel.messages`, the processes in :mod:`swatlib.parallel.training`.
"""

from swatlib.parallel.roles import AVERAGING, RETAIN, average_replicas
from swatlib.parallel.training import (ALGORITHMS, PHASE2, SCHEDULES, Options, ParallelRunError, simulate,
                                       train)

__all__ = ["ALGORITHMS", "AVERAGING", "PHASE2", "RETAIN", "SCHEDULES", "Options", "ParallelRunError",
           "average_replicas", "simulate", "train"]
