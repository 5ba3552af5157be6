"""One call, one flat record: the cost of training an architecture with a method.

:func:`analyse` ties the pieces together — layer table (cached per architecture and input
shape), method plan, nominal FLOP ledger, backward-pass memory and accelerator model — and
returns a :class:`CostReport` whose fields are plain numbers, ready for a table. Every
reduction is ``1 − method / dense`` and every speed-up is ``dense / method``, against dense
training of the same network at the same batch size. FLOPs are 2·MACs and are reported per
training example.

:data:`PUBLISHED` holds the SWAT paper's numbers (SPEC §5) so that results can be shown beside
them; :func:`calibrate` fits the accelerator's one free parameter on the speed-up among them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from swatlib.densities import check_density

from ..models.registry import build_model, get_arch
from .accelerator import AcceleratorConfig, calibrate_load_imbalance, simulate, speedups
from .layers import LayerInfo, layer_table, total_macs
from .ledger import FlopLedger, nominal_ledger
from .memory import MemoryReport, backward_memory
from .methods import LayerPlan, MethodOptions, plan

__all__ = ["PUBLISHED", "CALIBRATION_POINT", "CostReport", "arch_table", "build_ledger",
           "analyse", "calibrate"]

#: Published SWAT numbers (SPEC §5): training-FLOP reductions at SWAT-U density 0.1 on CIFAR-10,
#: and the ResNet-50 / ImageNet point at density 0.2; memory claims are ranges over networks
#: and sparsities 50–90 %.
PUBLISHED = {
    "training_flop_reduction": {("vgg16", "swat-u", 0.1): 0.897,
                                ("wrn16_8", "swat-u", 0.1): 0.900,
                                ("densenet121", "swat-u", 0.1): 0.898,
                                ("resnet50", "swat-u", 0.2): 0.80},
    "training_speedup": {("resnet50", "swat-u", 0.2): 3.3},
    "activation_memory_reduction_range": (0.23, 0.50),
    "weight_memory_reduction_range": (0.50, 0.90),
}

#: The single point the accelerator is calibrated on.
CALIBRATION_POINT = ("resnet50", "swat-u", 0.2)


@dataclass(frozen=True)
class CostReport:
    """Cost of one (architecture, method, density) against dense training.

    FLOPs are per training example (FLOPs = 2·MACs); "conv/linear" FLOPs are the paper's
    accounting, ``*_with_extras`` adds BatchNorm, activations, pooling, the optimizer and
    Top-K / topology bookkeeping. Memory is bytes saved for one step's backward pass.

    Attributes
    ----------
    arch, method, density, index_format, batch_size
        The configuration analysed.
    params, dense_forward_macs : int
        Parameters and dense forward MACs per example of the network.
    training_flops, inference_flops, extra_flops : float
        FLOPs per example under the method: conv/linear of a training step, conv/linear of
        the forward pass, and the extras of a training step; ``dense_*`` for dense training.
    training_flop_reduction, training_flop_reduction_with_extras, inference_flop_reduction
        ``1 − method / dense`` of the above (the first is the paper's accounting).
    activation_memory_bytes, weight_memory_bytes : int
        Bytes saved for one step's backward pass; ``dense_*`` for dense training and
        ``*_reduction`` = ``1 − method / dense``.
    forward_speedup, backward_speedup, training_speedup : float
        Dense over method cycles on the accelerator model.
    load_imbalance : float
        The accelerator's κ used.
    """

    arch: str
    method: str
    density: float
    index_format: str
    batch_size: int
    params: int
    dense_forward_macs: int
    training_flops: float
    dense_training_flops: float
    inference_flops: float
    dense_inference_flops: float
    extra_flops: float
    dense_extra_flops: float
    training_flop_reduction: float
    training_flop_reduction_with_extras: float
    inference_flop_reduction: float
    activation_memory_bytes: int
    dense_activation_memory_bytes: int
    activation_memory_reduction: float
    weight_memory_bytes: int
    dense_weight_memory_bytes: int
    weight_memory_reduction: float
    forward_speedup: float
    backward_speedup: float
    training_speedup: float
    load_imbalance: float

    def as_dict(self) -> dict[str, float | int | str]:
        """The fields as a flat dict (JSON-ready)."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A readable multi-line summary."""
        spec = get_arch(self.arch)
        shape = "×".join(map(str, spec.input_shape))
        g = 1e9
        mib = 2.0**20
        lines = [
            f"{self.arch} ({spec.dataset}, input {shape}, {self.params / 1e6:.2f} M params, "
            f"{self.dense_forward_macs / g:.3f} GMACs dense forward per example)",
            f"method {self.method}, density {self.density:g} (sparsity {1 - self.density:.0%}), "
            f"index format {self.index_format}, batch {self.batch_size}",
            "",
            "GFLOPs per training example (FLOPs = 2·MACs)      dense    method  reduction",
            _row("conv/linear training (fwd + dX + dW)", self.dense_training_flops / g,
                 self.training_flops / g, self.training_flop_reduction),
            _row("conv/linear inference (forward)", self.dense_inference_flops / g,
                 self.inference_flops / g, self.inference_flop_reduction),
            _row("training incl. BN/act/pool/optim/Top-K",
                 (self.dense_training_flops + self.dense_extra_flops) / g,
                 (self.training_flops + self.extra_flops) / g,
                 self.training_flop_reduction_with_extras),
            "",
            f"MiB saved for backward, batch {self.batch_size}"
            "                  dense    method  reduction",
            _row("activations", self.dense_activation_memory_bytes / mib,
                 self.activation_memory_bytes / mib, self.activation_memory_reduction),
            _row("weights", self.dense_weight_memory_bytes / mib,
                 self.weight_memory_bytes / mib, self.weight_memory_reduction),
            "",
            f"accelerator model (load imbalance κ = {self.load_imbalance:.4f})",
            f"  forward speed-up   {self.forward_speedup:6.2f}×",
            f"  backward speed-up  {self.backward_speedup:6.2f}×",
            f"  training speed-up  {self.training_speedup:6.2f}×",
        ]
        return "\n".join(lines)


def _row(label: str, dense: float, method: float, reduction: float) -> str:
    return f"  {label:<44}{dense:9.3f} {method:9.3f}  {reduction:8.1%}"


@lru_cache(maxsize=32)
def arch_table(arch: str, input_shape: tuple[int, ...] | None = None) -> tuple[LayerInfo, ...]:
    """Layer table of a registered architecture on the meta device (cached).

    Raises
    ------
    ValueError
        Unknown architecture (listing the valid names), or an input shape the network cannot
        take (naming the expected one).
    """
    return tuple(layer_table(build_model(arch), input_shape))


def build_ledger(arch: str, method: str, density: float, *, batch_size: int = 128,
                 options: MethodOptions = MethodOptions(),
                 input_shape: tuple[int, ...] | None = None) -> FlopLedger:
    """Nominal ledger of one training step of ``arch`` under ``method``."""
    table = list(arch_table(arch, None if input_shape is None else tuple(input_shape)))
    return nominal_ledger(table, plan(table, method, density, batch_size=batch_size,
                                      options=options), batch_size)


def _memory(table: list[LayerInfo], plans: list[LayerPlan], batch_size: int,
            index_format: str, value_bytes: int) -> MemoryReport:
    return backward_memory(
        table, batch_size=batch_size,
        weight_density={p.layer.name: p.weight_density for p in plans},
        activation_density={p.layer.name: p.saved_act_density for p in plans},
        index_format=index_format, value_bytes=value_bytes)


def _reduction(method: float, dense: float) -> float:
    return 1.0 - method / dense


def analyse(arch: str, method: str, density: float, *, index_format: str = "bitmap",
            accelerator: AcceleratorConfig = AcceleratorConfig(), batch_size: int = 128,
            options: MethodOptions = MethodOptions(), value_bytes: int = 4,
            input_shape: tuple[int, ...] | None = None) -> CostReport:
    """Cost of training ``arch`` with ``method`` at ``density``, against dense training.

    Parameters
    ----------
    arch : str
        Registered architecture (:func:`swatlib.models.arch_names`).
    method : str
        ``dense``, ``swat-u``, ``swat-erk``, ``swat-m``, ``set``, ``rigl`` or ``meprop``.
    density : float
        Kept fraction in (0, 1] (sparsity = 1 − density); ignored by ``dense``.
    index_format : {"none", "bitmap", "csr", "coo"}
        Index of the sparse tensors in the memory model (``none``: without index overhead).
    accelerator : AcceleratorConfig
        Accelerator parameters (default: calibrated κ).
    batch_size : int
        Examples per step (128).
    options : MethodOptions
        Top-K cost and period, RigL ΔT, SET period.
    value_bytes : int
        Bytes per stored value in the memory model (4 = fp32).
    input_shape : tuple of int, optional
        (C, H, W); defaults to the architecture's.

    Returns
    -------
    CostReport

    Raises
    ------
    ValueError
        Unknown architecture / method / index format (listing valid names), density outside
        (0, 1], or an input shape the network cannot take.
    """
    density = check_density(density)
    table = list(arch_table(arch, None if input_shape is None else tuple(input_shape)))
    plans = plan(table, method, density, batch_size=batch_size, options=options)
    dense_plans = plan(table, "dense", 1.0, batch_size=batch_size, options=options)
    ledger = nominal_ledger(table, plans, batch_size)
    dense = nominal_ledger(table, dense_plans, batch_size)
    memory = _memory(table, plans, batch_size, index_format, value_bytes)
    dense_memory = _memory(table, dense_plans, batch_size, index_format, value_bytes)
    speed = speedups(simulate(dense, accelerator), simulate(ledger, accelerator))
    per = 1.0 / batch_size
    return CostReport(
        arch=arch, method=method, density=density, index_format=index_format,
        batch_size=batch_size, params=sum(row.params for row in table),
        dense_forward_macs=total_macs(table),
        training_flops=ledger.training_flops() * per,
        dense_training_flops=dense.training_flops() * per,
        inference_flops=ledger.inference_flops() * per,
        dense_inference_flops=dense.inference_flops() * per,
        extra_flops=ledger.extra_flops() * per,
        dense_extra_flops=dense.extra_flops() * per,
        training_flop_reduction=_reduction(ledger.training_flops(), dense.training_flops()),
        training_flop_reduction_with_extras=_reduction(
            ledger.training_flops(include_extras=True), dense.training_flops(include_extras=True)),
        inference_flop_reduction=_reduction(ledger.inference_flops(), dense.inference_flops()),
        activation_memory_bytes=memory.activation_bytes,
        dense_activation_memory_bytes=dense_memory.activation_bytes,
        activation_memory_reduction=_reduction(memory.activation_bytes,
                                               dense_memory.activation_bytes),
        weight_memory_bytes=memory.weight_bytes,
        dense_weight_memory_bytes=dense_memory.weight_bytes,
        weight_memory_reduction=_reduction(memory.weight_bytes, dense_memory.weight_bytes),
        load_imbalance=accelerator.load_imbalance,
        **speed,
    )


def calibrate(accelerator: AcceleratorConfig = AcceleratorConfig(), *, batch_size: int = 128,
              options: MethodOptions = MethodOptions()) -> float:
    """Fit the load-imbalance coefficient κ on the published ResNet-50 SWAT-U 80 % speed-up.

    All other accelerator, method and batch parameters are taken as given; the result is the
    value stored as :data:`~swatlib.costmodel.accelerator.CALIBRATED_LOAD_IMBALANCE`.
    """
    arch, method, density = CALIBRATION_POINT
    target = PUBLISHED["training_speedup"][CALIBRATION_POINT]
    dense = build_ledger(arch, "dense", 1.0, batch_size=batch_size, options=options)
    sparse = build_ledger(arch, method, density, batch_size=batch_size, options=options)
    return calibrate_load_imbalance(dense, sparse, target, accelerator)
