"""Named profile overrides of the Truly Sparse runs: one entry per profile, resolved by name."""

import pytest

from swatlib import reproduce
from swatlib.experiments import truly_sparse as ts
from swatlib.experiments.truly_sparse_profiles import PROFILE_OVERRIDES
from swatlib.experiments.truly_sparse_reported import DATASETS, PAPER_SETTINGS


def test_there_is_one_entry_per_profile_and_paper_changes_nothing():
    assert set(PROFILE_OVERRIDES) == set(reproduce.PROFILES)
    assert all(ts.settings(d, "paper") == ts.settings(d) == ts.settings(d, {}) for d in PAPER_SETTINGS)


@pytest.mark.parametrize("name", PROFILE_OVERRIDES)
@pytest.mark.parametrize("dataset", PAPER_SETTINGS)
def test_a_name_resolves_to_its_entry(name, dataset):
    by_name = ts.settings(dataset, name)
    assert by_name == ts.settings(dataset, PROFILE_OVERRIDES[name])
    assert by_name == {**ts.settings(dataset), **PROFILE_OVERRIDES[name].get(dataset, {})}


def test_a_named_profile_gives_the_same_spec_as_its_dict():
    for name, overrides in PROFILE_OVERRIDES.items():
        by_name = ts.table2_specs(["fashion-mnist", "madelon"], seeds=[0], profile=name, overrides=name)
        by_dict = ts.table2_specs(["fashion-mnist", "madelon"], seeds=[0], profile=name, overrides=overrides)
        assert by_name == by_dict and all("overrides" not in spec for spec in by_name)


def test_quick_and_smoke_shrink_every_table2_dataset():
    # madelon-65536 (Table 4's smallest network) has no profile entries: its one user, WASAP-SGD at
    # scale, names its epochs itself.
    for name in ("quick", "smoke"):
        for dataset in DATASETS:
            assert ts.settings(dataset, name)["epochs"] < ts.settings(dataset, "paper")["epochs"], (name, dataset)


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="overrides must be one of paper, quick, smoke, got 'fast'"):
        ts.settings("fashion-mnist", "fast")
    with pytest.raises(ValueError, match="overrides must be one of"):
        ts.make_spec("fashion-mnist", "set", "relu", False, seed=0, profile="quick", overrides="Quick")
