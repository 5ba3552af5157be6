"""Tables, SWAT's reported values and the memory measurement of the SWAT notebooks (``30``–``32``).

* What SWAT reports for itself lives here and in :data:`swatlib.costmodel.PUBLISHED` (training-FLOP
  reductions, the speed-up, memory ranges): :data:`REPORTED_ACCURACY` adds the accuracies
  (SPEC §5) — ResNet-50 / ImageNet SWAT-U 80 % 75.2 % top-1 with 80 % fewer training FLOPs
  (dense 76.8 %), and the CIFAR-10 SWAT-U 90 % points.
* Table builders turn :class:`~swatlib.experiments.swat.RunResult` lists into the notebooks'
  tables: :func:`summary`, :func:`sensitivity`, :func:`sensitivity_table`, :func:`period_table`,
  :func:`accuracy_vs_flops`. Accuracies and FLOPs are means over seeds; every ``± std`` is the
  sample standard deviation over seeds (``ddof=1``), NaN where one seed ran.
* Memory (notebook 32): :func:`memory_comparison` measures the bytes a training step of the
  :class:`~swatlib.models.SmallCNN` saves for backward (saved-tensor hooks,
  :class:`~swatlib.swat.SavedTensorMeter`) next to the cost model's prediction for the same
  network (:func:`~swatlib.costmodel.layer_table` + :func:`~swatlib.costmodel.backward_memory`);
  :func:`saved_by_layer` attributes every saved storage to the module that saved it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from swatlib.checks import check_int
from swatlib.costmodel import PUBLISHED, backward_memory, layer_table, plan
from swatlib.data import load
from swatlib.models import SmallCNN
from swatlib.swat import SavedTensorMeter, swatify
from swatlib.swat.compressed import ROLE_ATTRIBUTE

from .swat import METHOD_LABELS, MODE_LABELS, RunResult
from .swat_settings import BATCH_SIZE

__all__ = [
    "REPORTED_ACCURACY", "reported_accuracy", "summary", "sensitivity", "sensitivity_table", "period_table",
    "accuracy_vs_flops", "flops_table", "measurement_batch", "measure_saved", "predicted_saved",
    "memory_comparison", "saved_by_layer", "layer_breakdown", "reported_memory_ranges",
]


def _reduction(key: tuple[str, str, float]) -> float:
    return PUBLISHED["training_flop_reduction"][key]


#: Accuracies SWAT reports for itself (SPEC §5), with its training-FLOP reduction where given.
#: ``flops_pct`` = training FLOPs as a percentage of dense training (100 − reduction).
REPORTED_ACCURACY = [
    {"network": "ResNet-50", "dataset": "ImageNet", "method": "dense", "sparsity": 0,
     "metric": "top-1 %", "accuracy": 76.8, "flops_pct": 100.0},
    {"network": "ResNet-50", "dataset": "ImageNet", "method": "SWAT-U", "sparsity": 80,
     "metric": "top-1 %", "accuracy": 75.2,
     "flops_pct": round(100 * (1 - _reduction(("resnet50", "swat-u", 0.2))), 2)},
    {"network": "VGG-16", "dataset": "CIFAR-10", "method": "SWAT-U", "sparsity": 90,
     "metric": "top-1 %", "accuracy": 91.95,
     "flops_pct": round(100 * (1 - _reduction(("vgg16", "swat-u", 0.1))), 2)},
    {"network": "WRN-16-8", "dataset": "CIFAR-10", "method": "SWAT-U", "sparsity": 90,
     "metric": "top-1 %", "accuracy": 95.13,
     "flops_pct": round(100 * (1 - _reduction(("wrn16_8", "swat-u", 0.1))), 2)},
    {"network": "DenseNet-121", "dataset": "CIFAR-10", "method": "SWAT-U", "sparsity": 90,
     "metric": "top-1 %", "accuracy": 94.48,
     "flops_pct": round(100 * (1 - _reduction(("densenet121", "swat-u", 0.1))), 2)},
]


def reported_accuracy(network: str | None = None) -> pd.DataFrame:
    """:data:`REPORTED_ACCURACY` as a table (one network's rows if ``network`` is given)."""
    table = pd.DataFrame(REPORTED_ACCURACY)
    return table if network is None else table[table.network == network].reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# Training runs


def _flops_used(result: dict[str, Any]) -> float:
    flops = result["flops"]
    return flops["nominal"] if result["flops_basis"] == "nominal" else flops["measured"]


def summary(results: Iterable[RunResult]) -> pd.DataFrame:
    """One row per run: configuration, accuracies, FLOPs per training example, time.

    Columns ``flops_measured`` / ``flops_nominal`` are conv/linear training FLOPs per example
    (2·MACs) from the measured ledger and from the cost model (NaN for the sensitivity variants);
    ``flops_basis`` says which one stands for the method (nominal for the masked SET / RigL).
    ``flops_forward`` / ``flops_input_grad`` / ``flops_weight_grad`` split the measured FLOPs by
    product. ``diverged`` marks runs whose training loss became NaN.
    """
    rows = []
    for r in results:
        s, res = r.spec, r.result
        flops = res["flops"]
        rows.append({
            "method": s["method"], "label": METHOD_LABELS[s["method"]],
            "mode": s["mode"] or "", "density": s["density"],
            "sparsity": round(100 * (1 - s["density"]), 4), "period": s["period"] or 0,
            "seed": s["seed"], "test_acc": float(res["test_acc"]),
            "best_test_acc": float(res["best_test_acc"]),
            "train_acc": float(res["train_acc"]),
            "diverged": any(math.isnan(h["train_loss"]) for h in res["history"]),
            "flops_measured": flops["measured"], "flops_nominal": flops.get("nominal", math.nan),
            "flops_dense_arithmetic": flops["dense_arithmetic"],
            "flops_nominal_dense": flops.get("nominal_dense", math.nan),
            "flops_basis": res["flops_basis"], "flops": _flops_used(res),
            **{f"flops_{phase}": value for phase, value in flops["measured_phases"].items()},
            "train_seconds": res["train_seconds"],
        })
    return pd.DataFrame(rows)


def _mean_std(table: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, sample std (``ddof=1``; NaN for one run) and number of runs of ``value`` per group."""
    grouped = table.groupby(by, sort=False)[value]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1),
                         "runs": grouped.size()}).reset_index()


def sensitivity(results: Iterable[RunResult]) -> pd.DataFrame:
    """Paper Fig. 2, long format: one row per variant × sparsity, over seeds.

    Rows are the dense runs (variant ``"dense"``, sparsity 0), then SWAT itself and the four
    sensitivity modes present, by sparsity. Columns ``variant`` (:data:`MODE_LABELS`), ``mode``
    (``""`` for dense), ``sparsity`` (%), ``test acc %`` (mean over seeds of the final test
    accuracy), ``± std`` (ddof=1; NaN for one seed), ``seeds`` and ``diverged`` (runs whose
    training loss became NaN).
    """
    table = summary(results)
    table = table[(table.method == "dense") | ((table.method == "swat-u") & (table.period <= 1))].copy()
    table["variant"] = ["dense" if m == "dense" else MODE_LABELS[mode] for m, mode in zip(table.method, table["mode"])]
    table["mode"] = [("" if m == "dense" else mode) for m, mode in zip(table.method, table["mode"])]
    table["test acc %"] = 100 * table.test_acc
    order = {"dense": -1, **{label: i for i, label in enumerate(MODE_LABELS.values())}}
    rows = []
    for (variant, mode, sparsity), group in table.groupby(["variant", "mode", "sparsity"], sort=False):
        rows.append({"variant": variant, "mode": mode, "sparsity": float(sparsity),
                     "test acc %": group["test acc %"].mean(),
                     "± std": group["test acc %"].std(ddof=1) if len(group) > 1 else math.nan,
                     "seeds": len(group), "diverged": int(group.diverged.sum())})
    columns = ["variant", "mode", "sparsity", "test acc %", "± std", "seeds", "diverged"]
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)[columns]
    out["_order"] = out.variant.map(order)
    return out.sort_values(["_order", "sparsity"], kind="stable").drop(columns="_order").reset_index(drop=True)


def sensitivity_table(results: Iterable[RunResult]) -> pd.DataFrame:
    """Paper Fig. 2 as a table: test accuracy (%, mean over seeds) by variant × sparsity (%).

    Rows are SWAT itself and the sensitivity modes present; the dense runs fill the column at
    sparsity 0. Each sparsity column ``"50"`` is followed by ``"50 ± std"``, the sample standard
    deviation over seeds (``ddof=1``; NaN for one seed); ``seeds`` is the smallest number of
    seeds behind a cell of the row.
    """
    long = sensitivity(results)
    dense = long[long.variant == "dense"]
    rows = []
    for variant, sub in long[long.variant != "dense"].groupby("variant", sort=False):
        row: dict[str, Any] = {"variant": variant}
        cells = pd.concat([dense, sub])
        for _, cell in cells.iterrows():
            row[f"{cell.sparsity:g}"] = cell["test acc %"]
            row[f"{cell.sparsity:g} ± std"] = cell["± std"]
        row["seeds"] = int(cells.seeds.min())
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows).set_index("variant")
    sparsities = sorted({float(c) for c in out.columns if c != "seeds" and not c.endswith("± std")})
    columns = [c for x in sparsities for c in (f"{x:g}", f"{x:g} ± std")] + ["seeds"]
    out = out[columns]
    out.columns.name = "sparsity %"
    return out.round(2)


def period_table(results: Iterable[RunResult]) -> pd.DataFrame:
    """SWAT-U by Top-K recompute period: test accuracy (%, mean and ``± std`` over seeds, ddof=1)
    and the measured training MFLOPs per example (a reused threshold may keep more or fewer than
    k), with its ``MFLOPs ± std``."""
    table = summary(results)
    table = table[(table.method == "swat-u") & (table["mode"] == "swat")]
    out = _mean_std(table, ["density", "period"], "test_acc")
    out["mean"], out["std"] = 100 * out["mean"], 100 * out["std"]
    flops = _mean_std(table, ["density", "period"], "flops_measured").set_index(["density", "period"]) / 1e6
    out["MFLOPs measured"] = [flops.loc[(d, p), "mean"] for d, p in zip(out.density, out.period)]
    out["MFLOPs ± std"] = [flops.loc[(d, p), "std"] for d, p in zip(out.density, out.period)]
    return out.rename(columns={"mean": "test acc %", "std": "± std"}).sort_values(
        ["density", "period"]).round(3).reset_index(drop=True)


def accuracy_vs_flops(results: Iterable[RunResult]) -> pd.DataFrame:
    """One row per (method, density): accuracy and training FLOPs relative to dense.

    ``flops_pct`` is the method's training FLOPs as a percentage of dense training *in the same
    accounting*: measured methods over the dense run's measured FLOPs (same seed), nominal
    methods (masked SET / RigL) over the cost model's dense FLOPs. Means over seeds;
    ``test_acc_std`` and ``flops_pct_std`` are sample standard deviations over seeds (``ddof=1``;
    NaN for one seed).
    """
    table = summary(results)
    table = table[(table["mode"].isin(["", "swat"])) & (table.period <= 1)].copy()
    dense = table[table.method == "dense"].groupby("seed").first()
    if dense.empty:
        raise ValueError("accuracy_vs_flops needs the dense run of every seed")
    reference = [dense.loc[seed, "flops_nominal_dense" if basis == "nominal" else "flops_measured"]
                 for seed, basis in zip(table.seed, table.flops_basis)]
    table["flops_pct"] = 100 * table["flops"] / reference
    table["test_acc_pct"] = 100 * table["test_acc"]
    grouped = table.groupby(["method", "density"], sort=False)
    out = grouped.agg(label=("label", "first"), sparsity=("sparsity", "first"),
                      test_acc=("test_acc_pct", "mean"), test_acc_std=("test_acc_pct", "std"),
                      flops_pct=("flops_pct", "mean"), flops_pct_std=("flops_pct", "std"),
                      flops=("flops", "mean"),
                      flops_measured=("flops_measured", "mean"),
                      flops_nominal=("flops_nominal", "mean"), basis=("flops_basis", "first"),
                      seeds=("seed", "size"), diverged=("diverged", "sum")).reset_index()
    return out


def flops_table(curve: pd.DataFrame) -> pd.DataFrame:
    """The accuracy-vs-FLOPs table for display: MFLOPs per example and percentages, rounded
    (means over seeds; ``± std`` and ``% of dense FLOPs ± std`` over seeds, ddof=1)."""
    out = curve.copy()
    for col in ("flops", "flops_measured", "flops_nominal"):
        out[col] = out[col] / 1e6
    out = out.rename(columns={"flops": "MFLOPs used", "flops_measured": "MFLOPs measured",
                              "flops_nominal": "MFLOPs nominal", "flops_pct": "% of dense FLOPs",
                              "flops_pct_std": "% of dense FLOPs ± std",
                              "test_acc": "test acc %", "test_acc_std": "± std"})
    return out.set_index(["label", "sparsity"]).drop(columns=["method", "density"]).round(2)


# ------------------------------------------------------------------------------------------
# Memory (notebook 32)


def measurement_batch(batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """The first ``batch_size`` training images of a Fashion-MNIST subset of at least 2,000
    (standardised, N×1×28×28)."""
    data = load("fashion-mnist", subset=max(check_int(batch_size, "batch_size"), 2000), flatten=False)
    # A copy: a slice would share the whole training tensor's storage, which the saved-tensor
    # meter (counting storages) would then count in full as the first layer's saved input.
    return data.x_train[:batch_size].clone()


def _cnn(width: int, batchnorm: bool, seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SmallCNN(width=width, batchnorm=batchnorm)


def measure_saved(width: int, batchnorm: bool, density: float, x: torch.Tensor, *,
                  seed: int = 0, index_format: str = "bitmap") -> tuple[int, int]:
    """Measured (activation, weight) bytes one training step of the CNN saves for backward.

    ``density = 1``: the stock network; otherwise SWAT-U (first layer dense) at ``density``.
    The network is freshly initialised from ``seed``, in training mode, on the batch ``x``.
    """
    model = _cnn(width, batchnorm, seed).train()
    if density < 1.0:
        swatify(model, method="u", density=density, index_format=index_format)
    with SavedTensorMeter(model) as meter:
        output = model(x)
    del output
    assert meter.result is not None
    return meter.result.activations, meter.result.weights


def predicted_saved(width: int, batchnorm: bool, density: float, *, batch_size: int = BATCH_SIZE,
                    index_format: str = "bitmap") -> tuple[int, int]:
    """The cost model's (activation, weight) bytes for the same CNN under SWAT-U at ``density``."""
    table = layer_table(SmallCNN(width=width, batchnorm=batchnorm).to("meta"))
    plans = plan(table, "swat-u" if density < 1.0 else "dense", density, batch_size=batch_size)
    report = backward_memory(
        table, batch_size=batch_size,
        weight_density={p.layer.name: p.weight_density for p in plans},
        activation_density={p.layer.name: p.saved_act_density for p in plans},
        index_format=index_format)
    return report.activation_bytes, report.weight_bytes


def memory_comparison(densities: Sequence[float], *, width: int, x: torch.Tensor,
                      batchnorm: Sequence[bool] = (True, False), seed: int = 0) -> pd.DataFrame:
    """Measured and predicted bytes saved for backward, SWAT-U vs dense, by density.

    One row per (batchnorm, density, source) with ``source`` ∈ {``measured``, ``model
    (bitmap)``, ``model (values only)``}: activation and weight bytes and their reduction (%)
    against dense training of the same network measured / modelled the same way. The measured
    rows store their compressed tensors with a bitmap index (the library's default).
    """
    rows = []
    for bn in batchnorm:
        measured_dense = measure_saved(width, bn, 1.0, x, seed=seed)
        for density in [1.0, *[d for d in densities if d < 1.0]]:
            sources = {
                "measured": (measure_saved(width, bn, density, x, seed=seed), measured_dense),
                "model (bitmap)": (predicted_saved(width, bn, density, batch_size=len(x)),
                                   predicted_saved(width, bn, 1.0, batch_size=len(x))),
                "model (values only)": (
                    predicted_saved(width, bn, density, batch_size=len(x), index_format="none"),
                    predicted_saved(width, bn, 1.0, batch_size=len(x), index_format="none")),
            }
            for source, ((act, wt), (dense_act, dense_wt)) in sources.items():
                rows.append({"batchnorm": bn, "density": density,
                             "sparsity": round(100 * (1 - density), 4), "source": source,
                             "activation_bytes": act, "weight_bytes": wt,
                             "activation_reduction": 100 * (1 - act / dense_act),
                             "weight_reduction": 100 * (1 - wt / dense_wt)})
    return pd.DataFrame(rows)


def saved_by_layer(width: int, batchnorm: bool, density: float, x: torch.Tensor, *,
                   seed: int = 0) -> pd.DataFrame:
    """Every storage one training step saves for backward, attributed to the module saving it.

    A storage saved by several modules (a ReLU output that the next convolution and a
    max-pool also save) is counted once, for the first. Columns: ``layer`` (qualified name),
    ``module`` (class), ``role`` (activation / weight), ``stored`` (``compressed`` for SWAT's
    values + index, ``dense`` otherwise, ``mask`` for 1-bit / 1-byte masks and ``index`` for
    integer tensors such as max-pool's argmax), ``dtype`` and ``bytes``.
    """
    model = _cnn(width, batchnorm, seed).train()
    if density < 1.0:
        swatify(model, method="u", density=density)
    weight_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    current: list[tuple[str, str]] = []
    seen: dict[int, dict[str, Any]] = {}
    keep: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in seen:
            keep.append(tensor)
            role_tag = getattr(tensor, ROLE_ATTRIBUTE, None)
            weight = pointer in weight_storages or role_tag == "weight"
            if role_tag is not None:
                stored = "compressed"
            elif tensor.dtype in (torch.uint8, torch.bool):
                stored = "mask"
            elif not tensor.is_floating_point():
                stored = "index"
            else:
                stored = "dense"
            name, kind = current[-1] if current else ("(outside modules)", "")
            seen[pointer] = {"layer": name, "module": kind,
                             "role": "weight" if weight else "activation", "stored": stored,
                             "dtype": str(tensor.dtype).replace("torch.", ""),
                             "bytes": tensor.untyped_storage().nbytes()}
        return tensor

    handles = []
    for name, module in model.named_modules():
        if name and not isinstance(module, nn.Sequential):  # innermost running module wins
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: current.append((name, type(m).__name__))))
            handles.append(module.register_forward_hook(lambda m, args, out: _leave(current)))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            output = model(x)
        del output
    finally:
        for handle in handles:
            handle.remove()
    return pd.DataFrame(list(seen.values()))


def _leave(stack: list) -> None:
    stack.pop()  # a forward hook must return None (a value would replace the output)


def layer_breakdown(per_storage: pd.DataFrame) -> pd.DataFrame:
    """Bytes per layer and kind of storage (:func:`saved_by_layer` rows summed), in call order."""
    order = list(dict.fromkeys(per_storage.layer))
    table = per_storage.pivot_table(index=["layer", "module"], columns="stored", values="bytes",
                                    aggfunc="sum", fill_value=0)
    table = table.reindex(sorted(table.index, key=lambda key: order.index(key[0])))
    table["total"] = table.sum(axis=1)
    return table


def reported_memory_ranges() -> dict[str, tuple[float, float]]:
    """SWAT's reported backward-memory reductions (%, low–high) for activations and weights."""
    return {kind: tuple(100 * v for v in PUBLISHED[f"{kind}_memory_reduction_range"])
            for kind in ("activation", "weight")}
