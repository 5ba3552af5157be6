"""The tables of notebook 20 are computed from the cost model, never typed in."""

import pytest

from swatlib.costmodel import PUBLISHED, analyse
from swatlib.experiments.cost_model import cost_grid, flop_reduction_table, reported_comparison


@pytest.fixture(scope="module")
def grid():
    return cost_grid(["vgg16", "resnet50"], ["dense", "swat-u"], [80, 90], index_formats=("none", "bitmap"))


def test_grid_rows_are_the_cost_model_reports(grid):
    assert len(grid) == 2 * 2 * 2 * 2
    row = grid[(grid.arch == "vgg16") & (grid.method == "swat-u") & (grid.sparsity == 90)
               & (grid.index_format == "bitmap")].iloc[0]
    assert row.training_flop_reduction == analyse("vgg16", "swat-u", 0.1).training_flop_reduction


def test_comparison_covers_the_published_points_in_the_grid(grid):
    table = reported_comparison(grid)
    keys = {(r.arch, r.metric) for r in table.itertuples()}
    assert keys == {("vgg16", "training_flop_reduction"), ("resnet50", "training_flop_reduction"),
                    ("resnet50", "training_speedup")}
    vgg = table[table.arch == "vgg16"].iloc[0]
    assert vgg.reported == pytest.approx(100 * PUBLISHED["training_flop_reduction"][("vgg16", "swat-u", 0.1)])
    assert vgg["model − reported"] == pytest.approx(vgg.model - vgg.reported, abs=0.011)


def test_dense_rows_reduce_nothing(grid):
    table = flop_reduction_table(grid)
    assert (table.loc[("vgg16", "dense")] == 0).all()
    assert table.loc[("vgg16", "swat-u"), ("training %", 90)] > table.loc[("vgg16", "swat-u"), ("training %", 80)]
