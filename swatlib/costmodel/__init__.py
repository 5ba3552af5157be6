"""Cost model of sparse training: FLOP ledger, backward-pass memory, accelerator model.

SWAT's headline claims (80 % fewer training FLOPs and a 3.3× speed-up for ResNet-50, backward
memory −23…50 % for activations and −50…90 % for weights) rest on accounting that was never
published as code. This package makes it explicit:

* :mod:`~swatlib.costmodel.layers` — layer table of a network (shapes, parameters, dense MACs);
* :mod:`~swatlib.costmodel.methods` — per-layer densities and per-phase tensor densities of
  dense, SWAT-U/ERK/M, SET, RigL and meProp;
* :mod:`~swatlib.costmodel.ledger` — FLOP ledger, nominal or measured during training;
* :mod:`~swatlib.costmodel.transformer` — the ledger of a toy-BERT training step (attention,
  softmax, LayerNorm, GELU, embedding, MLM decoder, AdamW);
* :mod:`~swatlib.costmodel.memory` — bytes saved for the backward pass, per index format;
* :mod:`~swatlib.costmodel.accelerator` — analytic zero-skipping PE-array model;
* :mod:`~swatlib.costmodel.report` — :func:`analyse`, one flat record per configuration.

Command line: ``python -m swatlib.costmodel --arch resnet50 --method swat-u --density 0.2``.
A MAC is one multiply-add; FLOPs = 2·MACs throughout.
"""

from .accelerator import (CALIBRATED_LOAD_IMBALANCE, AcceleratorConfig, AcceleratorResult,
                          calibrate_load_imbalance, simulate, speedups, utilisation)
from .layers import LayerInfo, compute_layers, layer_table, total_macs
from .ledger import (FlopLedger, LedgerEntry, MeasuredLedger, active_ledger, nominal_ledger,
                     record, record_extra)
from .transformer import (ADAMW_FLOPS_PER_PARAMETER, TransformerShape, model_densities, model_ledger,
                          model_shape, model_topk, rigl_growth_flops, transformer_ledger)
from .memory import INDEX_FORMATS, MemoryReport, SavedTensor, backward_memory, tensor_bytes
from .methods import (DISTRIBUTIONS, METHODS, PHASES, LayerPlan, MethodOptions, MethodSpec,
                      PhaseDensities, TopKCost, get_method, layer_densities, method_names, plan)
from .report import (CALIBRATION_POINT, PUBLISHED, CostReport, analyse, arch_table,
                     build_ledger, calibrate)

__all__ = [
    "CALIBRATED_LOAD_IMBALANCE", "AcceleratorConfig", "AcceleratorResult",
    "calibrate_load_imbalance", "simulate", "speedups", "utilisation",
    "LayerInfo", "compute_layers", "layer_table", "total_macs",
    "FlopLedger", "LedgerEntry", "MeasuredLedger", "active_ledger", "nominal_ledger",
    "record", "record_extra",
    "ADAMW_FLOPS_PER_PARAMETER", "TransformerShape", "model_densities", "model_ledger", "model_shape",
    "model_topk", "rigl_growth_flops",
    "transformer_ledger",
    "INDEX_FORMATS", "MemoryReport", "SavedTensor", "backward_memory", "tensor_bytes",
    "DISTRIBUTIONS", "METHODS", "PHASES", "LayerPlan", "MethodOptions", "MethodSpec",
    "PhaseDensities", "TopKCost", "get_method", "layer_densities", "method_names", "plan",
    "CALIBRATION_POINT", "PUBLISHED", "CostReport", "analyse", "arch_table", "build_ledger",
    "calibrate",
]
