"""The papermill runner: parameter validation, outputs, failures, time-outs, exit codes."""

import json

import nbformat
import pytest
import yaml

from swatlib import reproduce

PARAMS = 'profile = "quick"\nfigures_dir = "figures"\nn = 3\nrate = 0.5\nname = "x"\nflags = [1, 2]\n'
BODY = {
    "01_ok": "print('hello', n * rate)",
    "02_crash": "raise RuntimeError('boom on purpose')",
    "03_slow": "import time\ntime.sleep(30)",
}


def _notebook(body: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    return nb


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throw-away project with three notebooks and three profiles."""
    nbdir, params = tmp_path / "notebooks", tmp_path / "notebooks" / "params"
    params.mkdir(parents=True)
    for stem, body in BODY.items():
        nbformat.write(_notebook(body), nbdir / f"{stem}.ipynb")
    for profile in reproduce.PROFILES:
        (params / f"{profile}.yaml").write_text(yaml.safe_dump({stem: {} for stem in BODY}))
    for name, value in [("NOTEBOOKS_DIR", nbdir), ("PARAMS_DIR", params),
                        ("BUILD_DIR", tmp_path / "build"), ("PROJECT_ROOT", tmp_path)]:
        monkeypatch.setattr(reproduce, name, value)
    return tmp_path


def _set_profile(project, profile, values):
    (project / "notebooks" / "params" / f"{profile}.yaml").write_text(yaml.safe_dump(values))


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--profile", "nope"], "valid profiles: smoke, quick, paper"),
        (["--only", "99_missing"], "valid notebooks: 01_ok, 02_crash, 03_slow"),
    ],
)
def test_unknown_profile_or_notebook_exits_2_listing_valid_names(project, capsys, argv, fragment):
    assert reproduce.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"nn": 1}, "unknown parameter 'nn'"),
        ({"n": "three"}, "parameter 'n' in smoke.yaml must be int"),
        ({"n": 1.5}, "must be int"),
        ({"rate": "1e-3"}, "must be float"),
        ({"flags": [1, "a"]}, "must be list"),
        ({"profile": "paper"}, "set by the runner"),
    ],
)
def test_bad_parameters_exit_2_before_anything_runs(project, capsys, values, fragment):
    _set_profile(project, "smoke", {"01_ok": values, "02_crash": {}, "03_slow": {}})
    assert reproduce.main(["--profile", "smoke", "--only", "01_ok"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not (project / "build" / "executed").exists()


def test_valid_names_are_listed_for_an_unknown_parameter(project, capsys):
    _set_profile(project, "smoke", {"01_ok": {"nn": 1}})
    reproduce.main(["--profile", "smoke", "--only", "01_ok"])
    assert "valid parameters: n, rate, name, flags" in capsys.readouterr().err


def test_int_is_accepted_for_float(project):
    assert reproduce.validate("01_ok", project / "notebooks" / "01_ok.ipynb", {"rate": 1}, "smoke")["rate"] == 1


def test_prepare_only_injects_parameters_without_running(project):
    _set_profile(project, "smoke", {"01_ok": {"n": 7}, "02_crash": {}, "03_slow": {}})
    assert reproduce.main(["--profile", "smoke", "--prepare-only"]) == 0
    nb = json.loads((project / "build" / "prepared" / "smoke" / "02_crash.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and 'figures_dir = "build/smoke/figures"' in "".join(injected[0]["source"])
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.slow
def test_run_reports_success_and_failure_and_keeps_the_traceback(project, capsys):
    _set_profile(project, "smoke", {"01_ok": {"n": 4}, "02_crash": {}, "03_slow": {}})
    assert reproduce.main(["--profile", "smoke", "--only", "01_ok", "02_crash"]) == 1
    out = capsys.readouterr().out
    assert "hello 2.0" in out  # the notebook's own output is streamed
    table = out[out.index("notebook"):]
    assert "01_ok" in table and " ok" in table and "failed: RuntimeError: boom on purpose" in table
    failed = (project / "build" / "executed" / "smoke" / "02_crash.ipynb").read_text()
    assert "boom on purpose" in failed and "Traceback" in failed or "RuntimeError" in failed


@pytest.mark.slow
def test_cell_timeout_counts_as_failure(project, capsys, monkeypatch):
    monkeypatch.setitem(reproduce.CELL_TIMEOUT, "smoke", 2)
    assert reproduce.main(["--profile", "smoke", "--only", "03_slow"]) == 1
    assert "failed: a cell ran past 2 s" in capsys.readouterr().out


def test_list_prints_every_notebook_and_its_parameters(project, capsys):
    assert reproduce.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert out.count("n=3") == 3 and "01_ok:" in out


@pytest.mark.slow
def test_unchanged_notebook_is_not_rerun_until_something_changes(project, capsys):
    _set_profile(project, "smoke", {"01_ok": {"n": 4}, "02_crash": {}, "03_slow": {}})
    assert reproduce.main(["--profile", "smoke", "--only", "01_ok"]) == 0
    capsys.readouterr()
    assert reproduce.main(["--profile", "smoke", "--only", "01_ok"]) == 0
    out = capsys.readouterr().out
    assert "unchanged, not re-run" in out and "hello" not in out
    assert reproduce.main(["--profile", "smoke", "--only", "01_ok", "--force"]) == 0
    assert "hello" in capsys.readouterr().out
    _set_profile(project, "smoke", {"01_ok": {"n": 5}, "02_crash": {}, "03_slow": {}})
    assert reproduce.main(["--profile", "smoke", "--only", "01_ok"]) == 0
    assert "hello 2.5" in capsys.readouterr().out


def test_a_failed_run_leaves_no_up_to_date_stamp(project):
    _set_profile(project, "smoke", {"01_ok": {}, "02_crash": {}, "03_slow": {}})
    reproduce.main(["--profile", "smoke", "--only", "02_crash"])
    assert not (project / "build" / "executed" / "smoke" / "02_crash.done.json").exists()
