"""The README's reproduced-vs-reported numbers agree with the figure tables they quote.

Each README number is checked against the ``figures/*.csv`` cell it comes from (profile
``quick``), at the README's rounding: ``85.43`` agrees with ``85.42999…`` and ``+0.4`` with
``0.37``, while a changed README number or a changed CSV value fails. A CSV cell printed with more
digits than the README's but itself rounded (``78.45``) may stand for anything that rounds to
it, so the README's ``78.4`` agrees.

The mapping README row → CSV cells is written out below, one entry per row or quoted sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import pandas as pd
import pytest

from swatlib.experiments.truly_sparse_reported import TABLE5
from swatlib.paths import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
FIGURES = PROJECT_ROOT / "figures"
NUMBER = re.compile(r"[−+-]?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Value:
    """A number from a CSV, known to within ``error`` (half a unit of its last printed digit)."""

    value: float
    error: float = 0.0

    def __sub__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.value - other.value, self.error + other.error)

    def __neg__(self) -> Value:
        return Value(-self.value, self.error)


@cache
def _csv(name: str) -> pd.DataFrame:
    path = FIGURES / f"{name}.csv"
    stamp = path.read_text().splitlines()[0]
    assert stamp.startswith("# swatlib | profile: quick |"), f"{path.name} is not a quick-profile table: {stamp}"
    return pd.read_csv(path, skiprows=1, dtype=str, keep_default_na=False)


def cell(name: str, column: str, **where: str) -> Value:
    """The one cell of ``figures/<name>.csv`` in ``column`` whose row has the ``where`` values."""
    table = _csv(name)
    rows = table[(table[list(where)] == pd.Series(where)).all(axis=1)]
    assert len(rows) == 1, f"{name}.csv: {len(rows)} rows with {where}"
    text = rows.iloc[0][column]
    return Value(float(text), 0.5 * 10.0 ** -len(text.partition(".")[2]))


def _agree(quoted: str, expected: Value) -> bool:
    """Whether the README's ``quoted`` number is ``expected`` at the README's rounding.

    A CSV value printed with no more digits than the README's is taken as exact at the README's
    precision (``89.8`` does not agree with ``89.7``, nor ``20`` with ``19``); one printed with
    more digits may stand for anything that rounds to it.
    """
    half = 0.5 * 10.0 ** -len(quoted.partition(".")[2])
    slack = expected.error if expected.error < half else 0.0
    return abs(float(quoted.replace("−", "-")) - expected.value) <= half + slack + 1e-9


def _check(where: str, text: str, expected: list[Value]) -> None:
    quoted = NUMBER.findall(text)
    assert len(quoted) == len(expected), f"{where}: README gives {quoted}, the mapping {len(expected)} numbers"
    wrong = [f"README {q} vs CSV {e.value:g}" for q, e in zip(quoted, expected) if not _agree(q, e)]
    assert not wrong, f"{where}: {'; '.join(wrong)}"


def _table_after(marker: str) -> dict[tuple[str, str], list[str]]:
    """The markdown table that follows ``marker`` in the README, keyed by its first two cells."""
    lines = README.split(marker, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:  # below the header and its separator
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return {(r[0], r[1]): r[2:] for r in rows}


# --------------------------------------------------------------------------- Truly Sparse table
def _claim(dataset: str, claim: str, column: str = "ours") -> Value:
    return cell("10_set_allrelu_claims", column, dataset=dataset, claim=claim)


def _claim_spread(dataset: str, claim: str) -> list[Value]:
    """A claim as the README's quick column writes it: mean ± std over seeds."""
    return [_claim(dataset, claim), _claim(dataset, claim, "± std")]


def _table2(activation: str, column: str) -> Value:
    return cell("10_set_allrelu_table2", column, dataset="fashion-mnist", model="SET-MLP",
                activation=activation, IP="no")


def _slope_gains() -> list[tuple[Value, Value]]:
    """(Δ vs ReLU, its ± std) of every slope, smallest Δ first."""
    slopes = _csv("11_allrelu_slope_table5")
    rows = slopes[slopes.alpha != ""]
    pairs = [(Value(float(d)), Value(float(e))) for d, e in zip(rows["Δ vs ReLU"], rows["Δ ± std"])]
    return sorted(pairs, key=lambda pair: pair[0].value)


def _slope_extremes() -> list[Value]:
    gains = _slope_gains()
    return [*gains[0], *gains[-1]]


def _table6(column: str) -> Value:
    return cell("12_importance_pruning_table6", column, dataset="Fashion-MNIST", threshold="25th percentile")


def _table6_trained(column: str) -> Value:
    return cell("12_importance_pruning_table6", column, dataset="Fashion-MNIST", threshold="trained")


def _flow(dataset: str) -> list[Value]:
    return [cell("13_gradient_flow_summary", column, dataset=dataset)
            for column in ("epochs with All-ReLU > ReLU in every seed", "epochs")]


FM, MAD = "Fashion-MNIST", "Madelon(-like)"
NO_IP, IP_COST = "All-ReLU − ReLU, no IP (points)", "IP − no IP, All-ReLU (points)"
ENDS = "params at end with IP, All-ReLU (% of start)"

#: README row (claim, dataset) → (numbers of the "quick" cell, numbers of the "paper" cell).
TRULY_SPARSE = {
    ("best test accuracy, SET-MLP All-ReLU / ReLU", FM): (
        lambda: [_table2("All-ReLU (α=0.6)", "best acc %"), _table2("All-ReLU (α=0.6)", "± std"),
                 _table2("ReLU", "best acc %"), _table2("ReLU", "± std")],
        lambda: [_table2("All-ReLU (α=0.6)", "reported acc %"), _table2("ReLU", "reported acc %")]),
    ("All-ReLU − ReLU, no pruning", FM): (
        lambda: _claim_spread("fashion-mnist", NO_IP), lambda: [_claim("fashion-mnist", NO_IP, "reported")]),
    ("All-ReLU − ReLU, no pruning", MAD): (
        lambda: _claim_spread("madelon", NO_IP), lambda: [_claim("madelon", NO_IP, "reported")]),
    ("parameters at the end with IP, All-ReLU (% of start)", FM): (
        lambda: _claim_spread("fashion-mnist", ENDS), lambda: [_claim("fashion-mnist", ENDS, "reported")]),
    ("parameters at the end with IP, All-ReLU (% of start)", MAD): (
        lambda: _claim_spread("madelon", ENDS), lambda: [_claim("madelon", ENDS, "reported")]),
    ("accuracy cost of IP, All-ReLU (best accuracy)", FM): (
        lambda: _claim_spread("fashion-mnist", IP_COST), lambda: [_claim("fashion-mnist", IP_COST, "reported")]),
    ("accuracy change with IP, All-ReLU", MAD): (
        lambda: _claim_spread("madelon", IP_COST), lambda: [_claim("madelon", IP_COST, "reported")]),
    ("SET-MLP size (% of the dense MLP)", FM): (
        lambda: [_claim("fashion-mnist", "SET-MLP params (% of dense)")],
        lambda: [_claim("fashion-mnist", "SET-MLP params (% of dense)", "reported")]),
    # "not established: −0.1 ± 0.4 … +0.7 ± 0.4 pt": the smallest and the largest gain over ReLU,
    # each with its spread ("yes" / "not established" is checked below).
    ("every slope α ∈ {0.05, 0.6, 0.9} beats ReLU (Table 5)", FM): (
        _slope_extremes, lambda: [Value(TABLE5["best_alpha"])]),
    ("post-training pruning at the 25th percentile (Table 6)", FM): (
        lambda: [_table6("Δ acc (points)"), _table6("Δ ± std"), _table6("params % of trained") - 100],
        lambda: [_table6("reported acc %") - _table6_trained("reported acc %"),
                 _table6("reported params % of trained") - 100]),
    ("gradient flow All-ReLU > ReLU (Figure 5)", "Fashion-MNIST / Madelon"): (
        lambda: _flow("Fashion-MNIST") + _flow("Madelon"), lambda: []),
}

TRULY_SPARSE_README = _table_after("Reproduced vs reported (profile `quick`, mean ± std over seeds")


def test_every_truly_sparse_row_is_mapped():
    assert set(TRULY_SPARSE_README) == set(TRULY_SPARSE)


@pytest.mark.parametrize("row", TRULY_SPARSE, ids=[f"{c} [{d}]" for c, d in TRULY_SPARSE])
def test_truly_sparse_row_agrees_with_the_csvs(row):
    quick, paper = TRULY_SPARSE_README[row]
    ours, reported = TRULY_SPARSE[row]
    _check(f"{row[0]} ({row[1]}), quick", quick, ours())
    _check(f"{row[0]} ({row[1]}), paper", paper, reported())


def test_the_slopes_the_readme_names_are_the_ones_that_ran_and_the_verdict_follows_the_spread():
    row = ("every slope α ∈ {0.05, 0.6, 0.9} beats ReLU (Table 5)", FM)
    quick, paper = TRULY_SPARSE_README[row]
    slopes = _csv("11_allrelu_slope_table5")
    ran = sorted(float(a) for a in slopes.alpha if a)
    assert [float(a) for a in NUMBER.findall(row[0].split("{")[1].split("}")[0])] == ran
    # "yes" only if every slope's gain exceeds its spread over seeds, else "not established".
    established = all(gain.value > spread.value for gain, spread in _slope_gains())
    assert quick.startswith("yes" if established else "not established")
    assert paper.startswith("yes") == (min(TABLE5["sweep"]) > TABLE5["relu"])


# --------------------------------------------------------------------------- cost model table
def _cost(arch: str, sparsity: str, metric: str, column: str) -> Value:
    return cell("20_cost_model_vs_reported", column, arch=arch, method="swat-u", **{"sparsity %": sparsity},
                metric=metric)


def _flops(arch: str, sparsity: str) -> tuple:
    return (lambda: [_cost(arch, sparsity, "training_flop_reduction", "model")],
            lambda: [_cost(arch, sparsity, "training_flop_reduction", "reported")])


#: README row (network and method, quantity) → (numbers of the "model" cell, of "SWAT reports").
COST_MODEL = {
    ("VGG-16, SWAT-U 90 %", "training-FLOP reduction"): _flops("vgg16", "90"),
    ("WRN-16-8, SWAT-U 90 %", "training-FLOP reduction"): _flops("wrn16_8", "90"),
    ("DenseNet-121, SWAT-U 90 %", "training-FLOP reduction"): _flops("densenet121", "90"),
    ("ResNet-50, SWAT-U 80 %", "training-FLOP reduction"): _flops("resnet50", "80"),
    ("ResNet-50, SWAT-U 80 %", "training speed-up"): (
        lambda: [_cost("resnet50", "80", "training_speedup", "model")],
        lambda: [_cost("resnet50", "80", "training_speedup", "reported")]),
    # Not in any figure table: notebook 20 shows its memory ranges without saving them.
    ("all six, SWAT-U 50–90 %", "activation memory reduction"): None,
    ("all six, SWAT-U 50–90 %", "weight memory reduction"): None,
}

COST_MODEL_README = _table_after("Reproduced vs reported (profile `quick`, `figures/20_cost_model_vs_reported.csv`)")


def test_every_cost_model_row_is_mapped():
    assert set(COST_MODEL_README) == set(COST_MODEL)


@pytest.mark.parametrize("row", [r for r, m in COST_MODEL.items() if m], ids=lambda r: f"{r[0]} [{r[1]}]")
def test_cost_model_row_agrees_with_the_csv(row):
    model, reported = COST_MODEL_README[row]
    ours, theirs = COST_MODEL[row]
    _check(f"{row[0]} ({row[1]}), model", model, ours())
    _check(f"{row[0]} ({row[1]}), reported", reported, theirs())


# --------------------------------------------------------------------------- numbers in sentences
def _sensitivity_spread(variant: str, *sparsities: str) -> list[Value]:
    """Mean, then ± std, at each sparsity, as the README writes them."""
    return [value for s in sparsities for value in (cell("30_swat_sensitivity", s, variant=variant),
                                                    cell("30_swat_sensitivity", f"{s} ± std", variant=variant))]


def _swat_runs(label: str, column: str, *sparsities: str) -> list[Value]:
    return [cell("31_swat_accuracy_vs_flops", column, label=label, sparsity=s) for s in sparsities]


def _memory(batchnorm: str, source: str, column: str) -> list[Value]:
    """A reduction at 50 and 90 % sparsity, as the README writes it: a negative change."""
    return [-cell("32_swat_memory", column, batchnorm=batchnorm, sparsity=s, source=source) for s in ("50.0", "90.0")]


def _peak(network: str, sparsity: str) -> Value:
    """SWAT-U's reduction of a training step's peak memory, as the README writes it: a negative change."""
    return -cell("32_swat_memory_peak", "peak_reduction", network=network, sparsity=sparsity)


def _madelon_set_mlps() -> list[Value]:
    return [cell("10_set_allrelu_table2", "best acc %", dataset="madelon", model="SET-MLP", activation=a, IP=ip)
            for a in ("ReLU", "All-ReLU (α=0.5)") for ip in ("no", "yes")]


#: A README sentence (regular expression over the whitespace-normalised README; its groups hold the
#: quoted numbers) → the CSV values, one per group; a list checks every value against that group.
SENTENCES = {
    r"every SET-MLP reaches (\d+)–(\d+) % against the paper's": lambda: [
        min(_madelon_set_mlps(), key=lambda v: v.value), max(_madelon_set_mlps(), key=lambda v: v.value)],
    r"stay closest to dense \((\S+) ± (\S+) / (\S+) ± (\S+) / (\S+) ± (\S+) % at 50 / 80 / 90 % sparsity, "
    r"dense (\S+) ± (\S+) %\)": lambda: [
        *_sensitivity_spread("backward: sparse weights + activations", "50", "80", "90", "0")],
    r"collapse towards chance as sparsity grows \((\S+) ± (\S+) % at 90 %\)": lambda: _sensitivity_spread(
        "backward: sparse output gradient", "90"),
    r"degrade as sparsity grows \((\S+) ± (\S+) % at 90 %\)": lambda: _sensitivity_spread(
        "forward: sparse activations", "90"),
    r"break down at 90 % \((\S+) ± (\S+) %, the widest spread": lambda: _sensitivity_spread(
        "forward: sparse weights", "90"),
    r"trains \((\S+) ± (\S+) % at 90 %, (\S+) ± (\S+) % at 80 %\)": lambda: [
        *_sensitivity_spread("SWAT (fwd W, bwd W+A)", "90"), *_swat_runs("SWAT-U", "test acc %", "80.0"),
        *_swat_runs("SWAT-U", "± std", "80.0")],
    r"SWAT-ERK protects it \((\S+) ± (\S+) %\)": lambda: [*_swat_runs("SWAT-ERK", "test acc %", "90.0"),
                                                         *_swat_runs("SWAT-ERK", "± std", "90.0")],
    r"SWAT-U uses (\S+) / (\S+) / (\S+) % of dense training FLOPs at density 0\.5 / 0\.2 / 0\.1":
        lambda: _swat_runs("SWAT-U", "% of dense FLOPs", "50.0", "80.0", "90.0"),
    r"weights (\S+) … (\S+) % \(reported": lambda: _memory("True", "measured", "weight_reduction"),
    r"activations (\S+) … (\S+) % with BatchNorm \(reported": lambda: _memory("True", "measured",
                                                                              "activation_reduction"),
    r"and (\S+) … (\S+) % without it": lambda: _memory("False", "measured", "activation_reduction"),
    r"The cost model predicts (\S+) … (\S+) % with BatchNorm": lambda: _memory("True", "model (bitmap)",
                                                                               "activation_reduction"),
    r"lowers the step's peak by (\S+) % at density 0\.2 and (\S+) % at 0\.5 with 4 convs, and by (\S+) % at "
    r"0\.2 with 12 convs": lambda: [_peak("conv4", "80.0"), _peak("conv4", "50.0"), _peak("conv12", "80.0")],
}


def _table3(method: str, column: str) -> Value:
    return cell("40_wasap_sgd_table3", column, dataset="Fashion-MNIST", method=method, IP="no")


SENTENCES[r"RigL-ERK, SET, gradual magnitude pruning, FFN-only RigL and densifying RigL\s+needed (\S+) / (\S+) / "
          r"(\S+) / (\S+) / (\S+) × the FLOPs of uniform RigL"] = lambda: [
    cell("50_toy_bert_ideas", "over_reference", variant=v)
    for v in ("rigl d=0.2 erk", "set d=0.2", "gmp d=0.2", "rigl d=0.2 ffn only", "rigl-densify d=0.1→0.3")]


SENTENCES[r"WASAP-SGD trained (\S+)× and WASSP-SGD (\S+)× as fast as the sequential run \(the paper, 5 workers "
          r"on 6 cores: (\S+)× and (\S+)×\), and their best test accuracy ended (\S+) and (\S+) points from the "
          r"sequential run's \(the paper: (\S+) and (\S+)\)"] = lambda: [
    _table3("WASAP-SGD", "speed-up"), _table3("WASSP-SGD", "speed-up"),
    _table3("WASAP-SGD", "reported speed-up"), _table3("WASSP-SGD", "reported speed-up"),
    _table3("WASAP-SGD", "best acc %") - _table3("Sequential", "best acc %"),
    _table3("WASSP-SGD", "best acc %") - _table3("Sequential", "best acc %"),
    _table3("WASAP-SGD", "reported acc %") - _table3("Sequential", "reported acc %"),
    _table3("WASSP-SGD", "reported acc %") - _table3("Sequential", "reported acc %")]


def _row(architecture: str, column: str, scale: float = 1.0) -> Value:
    value = cell("41_extreme_scale_table4", column, architecture=architecture)
    return Value(value.value * scale, value.error * scale)


SENTENCES[r"65536-0\.5M-0\.5M-2 \((\S+) M connections\), trained a full epoch in (\S+) min with a peak RSS of "
          r"(\S+) GiB, the dataset included; as a dense MLP it would need (\S+) TiB"] = lambda: [
    _row("65536-0.5M-0.5M-2", "connections (ours)", 1e-6), _row("65536-0.5M-0.5M-2", "train epoch [s]", 1 / 60),
    _row("65536-0.5M-0.5M-2", "peak RSS [GiB]"), _row("65536-0.5M-0.5M-2", "dense training state [GiB]", 1 / 1024)]
SENTENCES[r"65536-5M×10-2 \(50 M neurons, (\S+) M connections\), was built in (\S+) s and trained with "
          r"micro-batches of (\S+) at a peak RSS of (\S+) GiB; one batch of 128 took (\S+) s, so an epoch "
          r"extrapolates to (\S+) h on 2 cores"] = lambda: [
    _row("65536-5Mx10-2", "connections (ours)", 1e-6), _row("65536-5Mx10-2", "init [s]"),
    _row("65536-5Mx10-2", "micro-batch"), _row("65536-5Mx10-2", "peak RSS [GiB]"), _row("65536-5Mx10-2", "s per batch of 128"),
    _row("65536-5Mx10-2", "train epoch [s]", 1 / 3600)]


@pytest.mark.parametrize("pattern", SENTENCES)
def test_readme_sentence_agrees_with_the_csvs(pattern):
    found = re.findall(pattern, " ".join(README.split()))
    assert len(found) == 1, f"the README no longer has one sentence matching {pattern!r}: update the mapping"
    quoted = found[0] if isinstance(found[0], tuple) else (found[0],)
    expected = SENTENCES[pattern]()
    assert len(quoted) == len(expected)
    for text, values in zip(quoted, expected):
        for value in values if isinstance(values, list) else [values]:
            assert _agree(text, value), f"{pattern!r}: README {text} vs CSV {value.value:g}"

