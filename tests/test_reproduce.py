"""The papermill runner: parameter validation, outputs, failures, time-outs, exit codes, Ctrl-C."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from swatlib import plotting, reproduce

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


def _add_notebook(project, stem, body):
    """Add a notebook to the throw-away project, with an empty entry in every profile."""
    nbformat.write(_notebook(body), project / "notebooks" / f"{stem}.ipynb")
    for profile in reproduce.PROFILES:
        path = project / "notebooks" / "params" / f"{profile}.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), stem: {}}))


@pytest.fixture
def own_swatlib(project, monkeypatch):
    """The throw-away project with its own copy of swatlib, imported first by every kernel and
    subprocess (``$PYTHONPATH``), so that their project root is the throw-away one too."""
    shutil.copytree(Path(reproduce.__file__).parent, project / "swatlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("PYTHONPATH", str(project))
    return project


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
    failed = nbformat.read(project / "build" / "executed" / "smoke" / "02_crash.ipynb", as_version=4)
    errors = [o for c in failed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert [(e.ename, e.evalue) for e in errors] == [("RuntimeError", "boom on purpose")]
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0].traceback))
    assert "raise RuntimeError('boom on purpose')" in traceback


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


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["-p", "01_ok.nn", "1"], "unknown parameter 'nn' given with -p; valid parameters: n, rate, name, flags"),
        (["-p", "01_ok.n", "three"], "parameter 'n' given with -p must be int"),
        (["-p", "01_ok.rate", "1e-3"], "must be float like its default 0.5, got '1e-3' "
                                       "(YAML reads 1e-3 as text: write 1.0e-3)"),
        (["-p", "01_ok.flags", "[1, 2"], "is not YAML"),
        (["-p", "01_ok.profile", "paper"], "set by the runner"),
        (["-p", "01_ok", "1"], "name the notebook and the parameter, e.g. -p 00_tour.epochs 1"),
        (["-p", "99_missing.n", "1"], "unknown notebook '99_missing'; valid notebooks: 01_ok, 02_crash, 03_slow"),
        (["-p", "02_crash.n", "1"], "notebook 02_crash is not selected; add it to --only"),
        (["--jobs", "0"], "--jobs must be a positive integer or 'auto', got '0'"),
        (["--jobs", "two"], "--jobs must be a positive integer or 'auto', got 'two'"),
        (["--prepare-only", "-p", "01_ok.n", "1"], "-p does not work with --prepare-only"),
    ],
)
def test_bad_command_line_parameter_or_jobs_exits_2_before_anything_runs(project, capsys, argv, fragment):
    assert reproduce.main(["--profile", "smoke", "--only", "01_ok", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not (project / "build").exists()


def test_command_line_values_are_read_as_yaml_and_win_over_the_profile(project):
    pairs = [["01_ok.rate", "1.0e-3"], ["01_ok.flags", "[0, 1, 2]"], ["01_ok.n", "5"], ["01_ok.n", "6"]]
    cli = reproduce.command_line_parameters(pairs, reproduce.select(["01_ok"]))
    assert cli == {"01_ok": {"flags": [0, 1, 2], "n": 6, "rate": 0.001}}
    params = reproduce.validate("01_ok", project / "notebooks" / "01_ok.ipynb", {"n": 4, "name": "y"}, "smoke",
                                cli["01_ok"])
    assert {k: params[k] for k in ("n", "name", "rate", "flags")} == {"n": 6, "name": "y", "rate": 0.001,
                                                                       "flags": [0, 1, 2]}


def test_jobs_is_a_positive_count_or_the_usable_cpus():
    assert reproduce.parse_jobs("3") == 3
    assert reproduce.parse_jobs("auto") == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_command_line_parameter_is_part_of_the_fingerprint_and_jobs_is_not(project, capsys):
    _set_profile(project, "smoke", {"01_ok": {"n": 4}, "02_crash": {}, "03_slow": {}})
    run = ["--profile", "smoke", "--only", "01_ok"]
    assert reproduce.main([*run, "-p", "01_ok.n", "6"]) == 0
    assert "hello 3.0" in capsys.readouterr().out
    assert reproduce.main([*run, "-p", "01_ok.n", "6", "--jobs", "2"]) == 0
    assert "unchanged, not re-run" in capsys.readouterr().out
    assert reproduce.main(run) == 0
    assert "hello 2.0" in capsys.readouterr().out


@pytest.mark.slow
def test_a_notebook_whose_outputs_were_replaced_runs_again(own_swatlib, capsys):
    """quick and paper write the same figures/: the other profile's run (or a checkout) must not leave
    this one believing its outputs are there."""
    _add_notebook(own_swatlib, "04_env", (
        "import pandas as pd\nfrom swatlib import plotting\n"
        "plotting.setup(figures_dir=figures_dir, profile=profile)\n"
        "plotting.save_table(pd.DataFrame({'n': [n]}), '04_env')\nprint('ran', n)"
    ))
    run = ["--profile", "smoke", "--only", "04_env"]
    assert reproduce.main(run) == 0 and "ran 3" in capsys.readouterr().out
    assert reproduce.main(run) == 0 and "unchanged, not re-run" in capsys.readouterr().out
    table = own_swatlib / "build" / "smoke" / "figures" / "04_env.csv"
    written = table.read_bytes()
    table.write_bytes(written.replace(b"smoke", b"paper"))
    assert reproduce.main(run) == 0 and "ran 3" in capsys.readouterr().out
    assert table.read_bytes() == written


@pytest.mark.slow
def test_jobs_and_command_line_parameters_reach_the_kernel_and_the_provenance(own_swatlib, capsys):
    assert reproduce.CLI_PARAMETERS_ENV == plotting.CLI_PARAMETERS_ENV
    _add_notebook(own_swatlib, "04_env", (
        "import os\nimport pandas as pd\nfrom swatlib import plotting\n"
        "plotting.setup(figures_dir=figures_dir, profile=profile)\n"
        "plotting.save_table(pd.DataFrame({'n': [n]}), '04_env')\n"
        "print('jobs', os.environ['SWATLIB_JOBS'], 'n', n)"
    ))
    argv = ["--profile", "smoke", "--only", "04_env", "-p", "04_env.n", "7", "-p", "04_env.flags", "[4, 5]"]
    assert reproduce.main([*argv, "--jobs", "3"]) == 0
    assert "jobs 3 n 7" in capsys.readouterr().out
    table = own_swatlib / "build" / "smoke" / "figures" / "04_env.csv"
    assert table.read_text().startswith("# swatlib | profile: smoke + flags=[4, 5], n=7 | seeds: none |")


BUSY = """\
import multiprocessing, os, signal, time
if {ignore_sigint}:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
with multiprocessing.get_context("spawn").Pool(2) as pool:
    pids = [os.getpid()] + [p.pid for p in multiprocessing.active_children()]
    with open({pids_file!r} + ".tmp", "w") as f:
        f.write(" ".join(map(str, pids)))
    os.replace({pids_file!r} + ".tmp", {pids_file!r})
    pool.apply(time.sleep, (600,))
"""


def _alive(pid):
    """Whether process ``pid`` runs (a zombie has ended: only its exit status is left)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _group(pgid):
    """The running processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.mark.slow
@pytest.mark.parametrize("ignore_sigint, presses", [(False, 1), (True, 2)],
                         ids=["kernel-stops-on-ctrl-c", "second-ctrl-c-kills-a-kernel-ignoring-it"])
def test_ctrl_c_stops_the_kernel_its_workers_and_the_run(own_swatlib, ignore_sigint, presses):
    project = own_swatlib
    pids_file, after_file, log = project / "pids", project / "05_after_ran", project / "runner.log"
    _add_notebook(project, "04_busy", BUSY.format(ignore_sigint=ignore_sigint, pids_file=str(pids_file)))
    _add_notebook(project, "05_after", f"open({str(after_file)!r}, 'w').close()")
    argv = ["--profile", "smoke", "--only", "04_busy", "05_after"]
    with open(log, "w") as out:
        runner = subprocess.Popen([sys.executable, "-m", "swatlib.reproduce", *argv], cwd=project,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not pids_file.exists():  # the cell runs: the kernel and its pool workers are up
            assert runner.poll() is None, log.read_text()
            time.sleep(0.1)
        kernel, *workers = [int(p) for p in pids_file.read_text().split()]
        assert len(workers) == 2 and set(workers) <= set(_group(kernel))
        for press in range(presses):
            if press:  # two SIGINTs in quick succession reach Python's handler once: press again later
                time.sleep(1.0)
            os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert runner.wait(timeout=300) == 130, log.read_text()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    output = log.read_text()
    table = output[output.index("notebook  "):]
    assert re.search(r"^04_busy .* interrupted$", table, re.M) and re.search(r"^05_after .* not run$", table, re.M)
    assert not after_file.exists()
    assert not any(_alive(pid) for pid in [kernel, *workers]) and _group(kernel) == []
    executed = project / "build" / "executed" / "smoke"
    assert not (executed / "04_busy.done.json").exists()  # so the next run executes it again
    if not ignore_sigint:  # the cell itself was interrupted, so its cleanup code ran
        errors = [o.ename for c in nbformat.read(executed / "04_busy.ipynb", as_version=4).cells
                  for o in c.get("outputs", []) if o.output_type == "error"]
        assert errors == ["KeyboardInterrupt"]


@pytest.mark.slow
def test_a_kernel_ignoring_ctrl_c_is_killed_after_the_grace_period(project, monkeypatch, capsys):
    pid_file = project / "kernel_pid"
    _add_notebook(project, "04_deaf", (
        "import os, signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"with open({str(pid_file)!r} + '.tmp', 'w') as f:\n    f.write(str(os.getpid()))\n"
        f"os.replace({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\ntime.sleep(600)"
    ))
    monkeypatch.setattr(reproduce, "INTERRUPT_GRACE_S", 1.0)

    def press_ctrl_c_once_the_cell_runs():
        while not pid_file.exists():
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # reaches the runner's main thread, this test's

    presser = threading.Thread(target=press_ctrl_c_once_the_cell_runs, daemon=True)
    presser.start()
    assert reproduce.main(["--profile", "smoke", "--only", "04_deaf", "01_ok"]) == 130
    presser.join()
    table = capsys.readouterr().out.split("notebook  ")[-1]
    assert re.search(r"^04_deaf .* interrupted$", table, re.M) and re.search(r"^01_ok .* not run$", table, re.M)
    assert not _alive(int(pid_file.read_text()))
