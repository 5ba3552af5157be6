"""What the SWAT runs (notebooks ``30``–``32``) take from the papers — as data, in one place.

Each choice says where it comes from. What a profile decides for itself (data size, network
width, epochs, learning rate, and the batch size where a profile sets one) lives in
``notebooks/params/*.yaml``; :func:`swatlib.experiments.swat.make_spec` starts from these values.
"""

from __future__ import annotations

__all__ = [
    "BATCH_SIZE",
    "FIRST_LAYER_DENSE",
    "MOMENTUM",
    "RIGL_ALPHA",
    "RIGL_DELTA_T",
    "RIGL_END",
    "SCHEDULE",
    "SET_ZETA",
    "WEIGHT_DECAY",
]

#: SGD momentum of every run: SWAT's CIFAR training recipe (Raihan & Aamodt 2020).
MOMENTUM = 0.9

#: Weight decay of every run: SWAT's CIFAR training recipe.
WEIGHT_DECAY = 5e-4

#: Learning-rate schedule: SWAT's CIFAR recipe decays the rate over the run; here a cosine decay
#: to zero over however many steps the profile trains.
SCHEDULE = "cosine"

#: Mini-batch size unless a profile sets its own: SWAT's CIFAR training recipe.
BATCH_SIZE = 128

#: Whether each method keeps its first conv / linear layer dense (``None``: nothing is sparse).
#: SWAT-U and SWAT-M: SWAT's rule, a dense first layer (SPEC §5; SWAT-M starts from SWAT-U).
#: SWAT-ERK: SPEC §5's Erdős–Rényi-kernel rule over every layer, as the cost model's ``swat-erk``.
#: RigL: its authors keep the first layer dense (Evci et al. 2020; :class:`~swatlib.swat.MaskedRigL`
#: always does). SET: Erdős–Rényi densities over every layer (Mocanu et al. 2018). meProp: the output
#: gradient of every layer (Sun et al. 2017). For SET, RigL and meProp the entry records what their
#: constructors do; for the SWAT methods it is passed to :func:`~swatlib.swat.swatify`.
FIRST_LAYER_DENSE = {"dense": None, "swat-u": True, "swat-erk": False, "swat-m": True,
                     "set": False, "rigl": True, "meprop": False}

#: RigL's initial drop fraction α, cosine-annealed (RigL paper; SPEC §6).
RIGL_ALPHA = 0.3

#: Fraction of training after which RigL stops changing the topology, T_end ≈ 0.75 (SPEC §6).
RIGL_END = 0.75

#: Steps between RigL topology updates, ΔT = 100 (RigL paper; SPEC §6); profiles of short runs
#: set fewer.
RIGL_DELTA_T = 100

#: SET's removal fraction ζ of the positive and of the negative weights (SET paper; SPEC §1).
SET_ZETA = 0.3
