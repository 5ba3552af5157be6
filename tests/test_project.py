"""Project hygiene: pinned environment, clean notebooks, complete and valid profiles, quick start."""

import json
import re

import pytest
import yaml

from swatlib import reproduce
from swatlib.paths import PROJECT_ROOT

NOTEBOOKS = reproduce.notebooks()
TRULY_SPARSE = [stem for stem in NOTEBOOKS if stem[:1] == "1"]


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def test_requirements_pin_exactly_and_torch_is_2_13_0():
    pins = _requirements()
    assert pins["torch"] == "2.13.0"
    for name in ["numpy", "scipy", "scikit-learn", "matplotlib", "seaborn", "pandas", "papermill",
                 "nbval", "ipykernel", "jupyterlab", "tqdm", "pyyaml", "pytest", "pytest-xdist",
                 "hypothesis"]:
        assert name in pins, f"{name} missing from requirements.txt"


def test_environment_yml_delegates_to_requirements():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip_section == ["-r requirements.txt", "-e ."]
    conda_names = {re.split(r"[=<>]", d)[0] for d in deps if isinstance(d, str)}
    assert conda_names == {"python", "pip"}, "pin packages in requirements.txt, not environment.yml"


def test_there_are_notebooks():
    assert "00_tour" in NOTEBOOKS


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_notebook_is_committed_clean(stem):
    nb = json.loads(NOTEBOOKS[stem].read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    for cell in nb["cells"]:
        assert "injected-parameters" not in cell["metadata"].get("tags", [])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "strip outputs before committing"


@pytest.mark.parametrize("profile", reproduce.PROFILES)
def test_every_notebook_has_a_valid_entry_in_every_profile(profile):
    values = reproduce.load_profile(profile)
    assert set(values) == set(NOTEBOOKS), f"{profile}.yaml must list exactly the notebooks"
    for stem, path in NOTEBOOKS.items():
        reproduce.validate(stem, path, values[stem], profile)  # raises on a bad name or type


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_parameter_defaults_equal_the_quick_profile(stem):
    defaults = reproduce.notebook_parameters(NOTEBOOKS[stem])
    quick = reproduce.load_profile("quick")[stem]
    own = {k: v for k, v in defaults.items() if k not in reproduce.RUNNER_PARAMETERS}
    assert quick == own
    assert defaults["profile"] == "quick" and defaults["figures_dir"] == reproduce.figures_dir("quick")


@pytest.mark.parametrize("profile", reproduce.PROFILES)
def test_the_1x_notebooks_name_their_profiles_overrides_and_share_seeds(profile):
    """The 1x notebooks of a profile name its overrides and run the same seeds, so they share their runs."""
    values = reproduce.load_profile(profile)
    seeds, seed = set(), set()
    for stem in TRULY_SPARSE:
        params = {**reproduce.notebook_parameters(NOTEBOOKS[stem]), **values[stem]}
        assert params["overrides"] == profile, f"{stem}: overrides {params['overrides']!r} in profile {profile}"
        if "seeds" in params:
            seeds.add(tuple(params["seeds"]))
        else:
            seed.add(params["seed"])
    assert len(seeds) == 1, f"the 1x notebooks use different seeds: {seeds}"
    assert seed <= set(*seeds), f"a 1x notebook's single seed {seed} is not among the seeds {seeds}"


@pytest.mark.parametrize("profile", reproduce.PROFILES)
def test_the_swat_notebooks_30_and_31_train_the_same_setup(profile):
    """30 and 31 state their common setup each, and must agree on it to share their dense and SWAT-U runs."""
    values = reproduce.load_profile(profile)
    shared = ("dataset", "seeds", "model", "width", "mlp_sizes", "subset", "epochs", "batch_size", "lr")
    setups = [{k: {**reproduce.notebook_parameters(NOTEBOOKS[stem]), **values[stem]}[k] for k in shared}
              for stem in ("30_swat_sensitivity", "31_swat_accuracy_vs_flops")]
    assert setups[0] == setups[1], f"30 and 31 differ in {profile}: {setups}"


def test_readme_quick_start_is_the_three_commands():
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:\w+)?\n(.*?)```", section, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make reproduce", "make test", "make lab"]


def test_ci_runs_the_readme_test_command():
    lines = [l.strip() for l in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines
