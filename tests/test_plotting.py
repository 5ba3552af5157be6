"""Figures: deterministic bytes, provenance, the reported convention, atomic writes."""

import hashlib

import matplotlib.pyplot as plt
import pytest

from swatlib import plotting


def _figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, 1, 4], label="ours")
    plotting.plot_reported(ax, [1, 2], [1.5, 3.0], label="paper")
    plotting.reported_range(ax, 2.0, 3.0, label="paper range")
    ax.legend()
    return fig


def test_same_figure_gives_same_bytes(tmp_path):
    plotting.setup(figures_dir=str(tmp_path), profile="smoke", seeds=[0, 1])
    hashes = []
    for _ in range(2):
        paths = plotting.savefig(_figure(), "fig")
        assert [p.name for p in paths] == ["fig.pdf", "fig.png"]
        hashes.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
    assert hashes[0] == hashes[1]


def test_provenance_is_on_the_figure_and_in_the_metadata(tmp_path):
    plotting.setup(figures_dir=str(tmp_path), profile="smoke", seeds=[3])
    fig = _figure()
    plotting.savefig(fig, "prov", note="Madelon-like (synthetic)")
    texts = [t.get_text() for t in fig.texts]
    assert any("profile: smoke" in t and "seeds: 3" in t and "Madelon-like" in t for t in texts)
    pdf = (tmp_path / "prov.pdf").read_bytes()
    assert b"commit" in pdf and b"profile: smoke" in pdf
    assert b"CreationDate" not in pdf


def test_reported_values_are_labelled_and_hollow():
    fig, ax = plt.subplots()
    plotting.plot_reported(ax, [1], [2], label="SWAT")
    line = ax.get_lines()[0]
    assert line.get_label() == "SWAT (reported)"
    assert line.get_markerfacecolor() == "none"
    plt.close(fig)


def test_savefig_without_setup_or_with_bad_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(plotting, "_context", {})
    with pytest.raises(RuntimeError, match="setup"):
        plotting.savefig(_figure(), "x")
    plotting.setup(figures_dir=str(tmp_path), profile="smoke")
    with pytest.raises(ValueError, match="file stem"):
        plotting.savefig(_figure(), "../escape")


def test_interrupted_save_leaves_no_partial_figure(tmp_path, monkeypatch):
    plotting.setup(figures_dir=str(tmp_path), profile="smoke")
    fig = _figure()

    def interrupted(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"%PDF-partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(plt.Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plotting.savefig(fig, "half")
    assert list(tmp_path.iterdir()) == []


def test_tables_are_written_with_provenance_and_read_back(tmp_path):
    import pandas as pd

    plotting.setup(figures_dir=str(tmp_path), profile="quick", seeds=[0])
    table = pd.DataFrame({"density": [0.5, 0.2], "acc": [0.9, 0.85]}).set_index("density")
    path = plotting.save_table(table, "t")
    assert path.read_text().startswith("# swatlib | profile: quick")
    back = pd.read_csv(path, comment="#", index_col="density")
    assert back.equals(table)


def test_command_line_parameters_are_printed_after_the_profile(tmp_path, monkeypatch):
    monkeypatch.setenv(plotting.CLI_PARAMETERS_ENV, '{"epochs": 40, "alphas": [0.3, 0.6]}')
    plotting.setup(figures_dir=str(tmp_path), profile="quick", seeds=[0])
    fig = _figure()
    plotting.savefig(fig, "cli")
    footer = "swatlib | profile: quick + epochs=40, alphas=[0.3, 0.6] | seeds: 0"
    assert footer in [t.get_text() for t in fig.texts]
    assert footer.encode() in (tmp_path / "cli.pdf").read_bytes()


def test_without_command_line_parameters_the_footer_names_the_profile_alone(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.delenv(plotting.CLI_PARAMETERS_ENV, raising=False)
    plotting.setup(figures_dir=str(tmp_path), profile="quick", seeds=[0])
    assert plotting.save_table(pd.DataFrame({"a": [1]}), "t").read_text().startswith(
        "# swatlib | profile: quick | seeds: 0 | commit: ")


@pytest.mark.parametrize("value", ["[1, 2]", "epochs=40"])
def test_malformed_command_line_parameters_are_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv(plotting.CLI_PARAMETERS_ENV, value)
    with pytest.raises(ValueError, match="must be a JSON object"):
        plotting.setup(figures_dir=str(tmp_path), profile="quick")
