"""SWAT — Sparse Weight Activation Training (Raihan & Aamodt 2020; SPEC §5–§6).

Training with magnitude Top-K applied to the weights in the forward pass and to the weights
*and* the saved activations in the backward pass, while output gradients and the weight update
stay dense. The package:

* :mod:`~swatlib.swat.topk_state` — :class:`TopK`, whole-tensor (or channel / filter) Top-K with
  a threshold reused for ``period`` steps, kept in module buffers (``topk_mask``, the stateless
  selection, is re-exported from :mod:`swatlib.topk`);
* :mod:`~swatlib.swat.compressed` — values plus bitmap or indices, what the layers save;
* :mod:`~swatlib.swat.functions` — the autograd Function of the SWAT products;
* :mod:`~swatlib.swat.layers` — :class:`SWATLinear`, :class:`SWATConv2d` and the sensitivity
  study's ``mode`` variants;
* :mod:`~swatlib.swat.relu` — :class:`MaskReLU`, a ReLU that saves a 1-bit mask;
* :mod:`~swatlib.swat.pool` — :class:`MaskMaxPool2d`, a max-pool that saves a 1-byte argmax;
* :mod:`~swatlib.swat.swatify` — :func:`swatify` (SWAT-U / ERK / M, structured) and
  :func:`redistributable_layers`, the layers SWAT-M (:class:`swatlib.topology.SWATM`) shares its budget over;
* :mod:`~swatlib.swat.memory` — measured backward-pass memory, activations vs weights, and the
  peak memory of a training step;
* :mod:`~swatlib.swat.baselines` — masked SET and RigL for conv + linear (the algorithms of
  :mod:`swatlib.topology` on :class:`~swatlib.sparse.MaskedWeight` layers), meProp.

Every SWAT layer reports the nonzeros it used to the cost model's measured FLOP ledger.
"""

from swatlib.topk import topk_mask

from .baselines import masked_layers, masked_rigl, masked_set, meprop, wrap_masked
from .compressed import INDEX_FORMATS, CompressedTensor, compress
from .functions import Conv2dOp, LinearOp, Selection, SWATFunction, swat_op
from .layers import MODES, SWATConv2d, SWATLayer, SWATLinear, name_swat_layers
from .memory import (SavedBytes, SavedTensorMeter, StepPeak, graph_resident_bytes,
                     measure_step_peak, saved_bytes, step_peak)
from .pool import MaskMaxPool2d, mask_max_pool2d
from .relu import MaskReLU, mask_relu
from .swatify import SWAT_METHODS, redistributable_layers, swat_densities, swat_layer, swatify
from .topk_state import STRUCTURES, TopK

__all__ = [
    "masked_layers", "masked_rigl", "masked_set", "meprop", "wrap_masked",
    "INDEX_FORMATS", "CompressedTensor", "compress",
    "Conv2dOp", "LinearOp", "Selection", "SWATFunction", "swat_op",
    "MODES", "SWATConv2d", "SWATLayer", "SWATLinear", "name_swat_layers",
    "SavedBytes", "SavedTensorMeter", "StepPeak", "graph_resident_bytes", "measure_step_peak",
    "saved_bytes", "step_peak",
    "MaskMaxPool2d", "mask_max_pool2d",
    "MaskReLU", "mask_relu",
    "SWAT_METHODS", "redistributable_layers", "swat_densities", "swat_layer", "swatify",
    "STRUCTURES", "TopK", "topk_mask",
]
