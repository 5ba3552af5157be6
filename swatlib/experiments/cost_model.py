"""The analyses behind ``20_cost_model``: the cost model over a grid, next to SWAT's reported values.

Nothing here trains: every number comes from :func:`swatlib.costmodel.analyse` (layer tables of
the analysis architectures, the nominal FLOP ledger, the backward-memory model and the
accelerator model), so the whole grid takes seconds.
"""

from __future__ import annotations

import pandas as pd

from swatlib.costmodel import PUBLISHED, analyse
from swatlib.densities import density_of_sparsity_percent

__all__ = ["cost_grid", "flop_reduction_table", "memory_ranges", "reported_comparison"]


def cost_grid(archs: list[str], methods: list[str], sparsities: list[float], *,
              index_formats: tuple[str, ...] = ("bitmap",), batch_size: int = 128) -> pd.DataFrame:
    """One row per (architecture, method, sparsity in %, index format): every CostReport field.

    Sparsities are given in percent, as in the papers; the reports use density = 1 − sparsity.
    """
    rows = []
    for arch in archs:
        for method in methods:
            for sparsity in sparsities:
                for index_format in index_formats:
                    report = analyse(arch, method, density_of_sparsity_percent(sparsity, "sparsities"),
                                     index_format=index_format, batch_size=batch_size)
                    rows.append({"sparsity": sparsity, **report.as_dict()})
    return pd.DataFrame(rows)


def flop_reduction_table(grid: pd.DataFrame) -> pd.DataFrame:
    """Training- and inference-FLOP reduction (%) by (arch, method) × sparsity."""
    one_format = grid[grid.index_format == grid.index_format.iloc[0]]
    table = one_format.pivot_table(index=["arch", "method"], columns="sparsity",
                                   values=["training_flop_reduction", "inference_flop_reduction"])
    table = 100 * table.rename(columns={"training_flop_reduction": "training %",
                                        "inference_flop_reduction": "inference %"})
    return table.round(1)


def reported_comparison(grid: pd.DataFrame) -> pd.DataFrame:
    """Every published point SWAT reports that the grid covers: model, reported, difference."""
    rows = []
    for metric, points in (("training_flop_reduction", PUBLISHED["training_flop_reduction"]),
                           ("training_speedup", PUBLISHED["training_speedup"])):
        for (arch, method, density), reported in points.items():
            match = grid[(grid.arch == arch) & (grid.method == method)
                         & ((grid.density - density).abs() < 1e-9)]
            if match.empty:
                continue
            model = float(match[metric].iloc[0])
            scale = 100.0 if metric.endswith("reduction") else 1.0
            rows.append({"arch": arch, "method": method, "sparsity %": round(100 * (1 - density)),
                         "metric": metric, "model": round(scale * model, 2),
                         "reported": round(scale * reported, 2),
                         "model − reported": round(scale * (model - reported), 2)})
    columns = ["arch", "method", "sparsity %", "metric", "model", "reported", "model − reported"]
    return pd.DataFrame(rows, columns=columns)


def memory_ranges(grid: pd.DataFrame, method: str = "swat-u") -> pd.DataFrame:
    """Min and max activation / weight memory reduction (%) over networks and sparsities."""
    sub = grid[grid.method == method]
    out = sub.groupby("index_format")[["activation_memory_reduction", "weight_memory_reduction"]]
    return (100 * out.agg(["min", "max"])).round(1)
