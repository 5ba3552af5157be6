"""The shared argument checks: one wording for a bad name or size everywhere in the package."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swatlib.checks import check_choice, check_choices, check_int, check_number, check_seeds
from swatlib.densities import density_of_sparsity_percent

NAMES = ("uniform", "erk", "er")


@given(st.sampled_from(NAMES))
def test_a_valid_choice_is_returned_unchanged(name):
    assert check_choice(name, NAMES, "distribution") is name


@given(st.text().filter(lambda s: s not in NAMES))
def test_an_invalid_choice_names_the_argument_and_lists_the_choices(name):
    with pytest.raises(ValueError) as raised:
        check_choice(name, NAMES, "distribution")
    assert str(raised.value) == f"distribution must be one of uniform, erk, er, got {name!r}"


def test_a_registry_lists_its_keys_and_an_unhashable_value_is_refused_the_same_way():
    registry = {"paper": 1, "authors": 2}
    assert check_choice("authors", registry, "schedule") == "authors"
    for bad in (["paper"], {"paper": 1}, None, 1):
        with pytest.raises(ValueError, match="schedule must be one of paper, authors, got "):
            check_choice(bad, registry, "schedule")


@given(st.lists(st.sampled_from(NAMES)))
def test_valid_choices_come_back_as_a_list_in_their_order(names):
    assert check_choices(iter(names), NAMES, "distributions") == names


@given(st.lists(st.sampled_from(NAMES)), st.lists(st.text().filter(lambda s: s not in NAMES), min_size=1))
def test_every_unknown_choice_is_named_in_one_message(valid, unknown):
    names = [*valid, *unknown]
    with pytest.raises(ValueError) as raised:
        check_choices(names, {name: None for name in NAMES}, "distributions")
    assert str(raised.value) == ("distributions must be among uniform, erk, er; unknown: "
                                 + ", ".join(map(repr, unknown)))


def test_check_choices_refuses_unhashable_values_with_a_value_error():
    with pytest.raises(ValueError, match=r"unknown: \['erk'\]"):
        check_choices(["uniform", ["erk"]], NAMES, "distributions")


@pytest.mark.parametrize("bad", [0, -3, 1.5, "2", True, None])
def test_check_int_refuses_anything_but_a_positive_integer_by_default(bad):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        check_int(bad, "batch_size")


def test_check_int_returns_a_plain_int():
    value = check_int(np.int64(7), "n_in")
    assert value == 7 and type(value) is int


@given(st.integers(-5, 5), st.integers(-5, 5), st.one_of(st.none(), st.integers(-5, 10)))
def test_check_int_accepts_exactly_the_range_and_names_it(value, minimum, below):
    inside = value >= minimum and (below is None or value < below)
    if inside:
        assert check_int(value, "seed", minimum, below) == value
        return
    with pytest.raises(ValueError) as raised:
        check_int(value, "seed", minimum, below)
    bound = (f"an integer in [{minimum}, {below})" if below is not None
             else "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
    assert str(raised.value) == f"seed must be {bound}, got {value!r}"


@given(st.lists(st.integers(0, 2**40), unique=True, min_size=1))
def test_distinct_non_negative_seeds_come_back_as_plain_ints(seeds):
    assert check_seeds(np.array(seeds, dtype=np.int64)) == seeds


@pytest.mark.parametrize("seeds, message", [
    ([], "seeds must list at least one seed, got none"),
    ([0, -1], "each seed must be an integer >= 0, got -1"),
    ([0, 1.0], "each seed must be an integer >= 0, got 1.0"),
    ([2, 0, 2], "seeds must be distinct, got [2, 0, 2]"),
])
def test_bad_seeds_are_refused(seeds, message):
    with pytest.raises(ValueError) as raised:
        check_seeds(seeds)
    assert str(raised.value) == message


@pytest.mark.parametrize("sparsity, density", [(0, 1.0), (50, 0.5), (90, 0.1), (99.9, 0.001)])
def test_a_sparsity_in_percent_gives_its_density_exactly(sparsity, density):
    assert density_of_sparsity_percent(sparsity) == density


@pytest.mark.parametrize("bad", [100, 150, -1, float("nan"), "90", True])
def test_a_sparsity_outside_0_to_100_percent_is_named(bad):
    with pytest.raises(ValueError, match=r"sparsities must be in \[0, 100\) \(percent of the weights removed\)"):
        density_of_sparsity_percent(bad, "sparsities")


@given(st.floats(-3, 3), st.booleans(), st.booleans())
def test_check_number_accepts_exactly_its_interval(value, open_low, open_high):
    inside = (value > -1 if open_low else value >= -1) and (value < 1 if open_high else value <= 1)
    if inside:
        assert check_number(value, "alpha", -1, 1, open_low=open_low, open_high=open_high) == value
        return
    with pytest.raises(ValueError) as raised:
        check_number(value, "alpha", -1, 1, open_low=open_low, open_high=open_high)
    interval = f"{'(' if open_low else '['}-1, 1{')' if open_high else ']'}"
    assert str(raised.value) == f"alpha must be in {interval}, got {value!r}"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), True, "0.5", None, np.array([0.5])])
def test_check_number_refuses_what_is_not_one_finite_real_number(bad):
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
        check_number(bad, "epsilon", 0, open_low=True)


def test_check_number_words_half_bounded_ranges_and_meanings():
    assert check_number(np.float32(0.25), "lr", 0) == 0.25
    with pytest.raises(ValueError, match=r"^lr must be a finite number >= 0, got -1$"):
        check_number(-1, "lr", 0)
    with pytest.raises(ValueError, match=r"^x must be a finite number < 2, got 3$"):
        check_number(3, "x", high=2, open_high=True)
    with pytest.raises(ValueError, match=r"^density must be in \(0, 1\] \(the kept fraction\), got 0$"):
        check_number(0, "density", 0, 1, open_low=True, meaning="the kept fraction")
