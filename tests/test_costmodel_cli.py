"""Command line of the cost model: summary, --json, --list and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from swatlib.costmodel.__main__ import main
from swatlib.costmodel.methods import method_names
from swatlib.models import arch_names

FRACTIONS = ("training_flop_reduction", "inference_flop_reduction",
             "activation_memory_reduction", "weight_memory_reduction")
RATIOS = ("forward_speedup", "backward_speedup", "training_speedup")


def test_json_has_fractions_and_ratios(capsys):
    assert main(["--arch", "resnet50", "--method", "swat-u", "--density", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in FRACTIONS:
        assert 0.0 < result[key] < 1.0
    for key in RATIOS:
        assert result[key] > 1.0
    assert result["arch"] == "resnet50" and result["density"] == 0.2


def test_summary_is_readable(capsys):
    assert main(["--arch", "vgg16", "--method", "swat-u", "--density", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "FLOPs = 2·MACs" in out and "training speed-up" in out and "sparsity 90%" in out


def test_list_names_architectures_and_methods(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in arch_names() + method_names():
        assert name in out


@pytest.mark.parametrize("argv, names", [
    (["--arch", "alexnet", "--method", "swat-u", "--density", "0.2"], arch_names()),
    (["--arch", "resnet50", "--method", "swat-x", "--density", "0.2"], method_names()),
    (["--method", "swat-u", "--density", "0.2"], arch_names()),
])
def test_unknown_name_exits_2_listing_valid_names(capsys, argv, names):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(name in err for name in names)


@pytest.mark.parametrize("density", ["0", "1.5", "-0.2", "nan"])
def test_density_outside_unit_interval_exits_2(capsys, density):
    assert main(["--arch", "resnet18", "--method", "swat-u", "--density", density]) == 2
    assert "density must be in (0, 1]" in capsys.readouterr().err


def test_impossible_input_shape_names_expected_shape(capsys):
    argv = ["--arch", "vgg16", "--method", "set", "--density", "0.5", "--input-shape", "3", "64", "64"]
    assert main(argv) == 2
    assert "expected input shape (3, 32, 32)" in capsys.readouterr().err


def test_module_runs_as_a_program():
    proc = subprocess.run(
        [sys.executable, "-m", "swatlib.costmodel", "--arch", "resnet18", "--method", "swat-u",
         "--density", "0.5", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["method"] == "swat-u"


@pytest.mark.parametrize("argv, message", [
    (["--arch", "resnet18", "--density", "0.2"], "error: --method is required: one of dense, swat-u"),
    (["--arch", "resnet18", "--method", "dense"], "error: --density is required: the kept fraction in (0, 1]"),
    (["--arch", "resnet18", "--method", "dense", "--density", "1", "--batch-size", "0"],
     "error: --batch-size must be a positive integer, got 0"),
])
def test_missing_options_and_a_bad_batch_size_exit_2_in_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
