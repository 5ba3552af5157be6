"""Madelon-65536 (seed 001's synthetic 10,000 × 65,536 set), tested at narrow widths: the bytes are
a function of the parameters only, the useful columns are scikit-learn's own output, the files are
written whole or not at all, and loading holds no second copy of the matrix."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from swatlib.data import (CorruptDataError, DatasetNotFoundError, load, madelon, madelon65536,
                          standardise)
from swatlib.data.__main__ import main
from swatlib.data.dataset import SUBSET_SEED, pick_subset
from swatlib.data.madelon65536 import ensure_madelon65536, generate, useful_columns
from swatlib.paths import PROJECT_ROOT

N, F = 400, 512  # the narrow set of most tests


@pytest.fixture
def isolated(isolated: Path, tmp_path: Path) -> Path:
    """conftest's isolated data directories; returns where generated files go."""
    return tmp_path / "home" / ".cache" / "swatlib" / "madelon-65536"


def _bytes(paths) -> list[bytes]:
    return [Path(p).read_bytes() for p in paths]


def test_bytes_depend_on_the_parameters_only(tmp_path):
    a = generate(tmp_path / "a", N, F, 0)
    assert _bytes(generate(tmp_path / "b", N, F, 0)) == _bytes(a)
    for chunk_rows in (1, 7, N):
        assert _bytes(generate(tmp_path / f"c{chunk_rows}", N, F, 0, chunk_rows=chunk_rows)) == _bytes(a)
    other = _bytes(generate(tmp_path / "d", N, F, 1))
    assert other[0] != _bytes(a)[0] and other[1] != _bytes(a)[1]
    with pytest.raises(ValueError, match=r"^chunk_rows must be a positive integer"):
        generate(tmp_path / "e", N, F, 0, chunk_rows=0)
    assert list((tmp_path / "e").iterdir()) == []
    assert [p.name for p in a] == list(madelon65536.file_names(N, F, 0))
    assert madelon65536.file_names(N, F, 1) != madelon65536.file_names(N, F, 0)


def test_useful_columns_are_make_classifications_and_the_rest_standard_normal(tmp_path):
    x_path, y_path = generate(tmp_path, N, F, 3)
    x, y = np.load(x_path), np.load(y_path)
    assert x.dtype == np.float32 and x.shape == (N, F) and y.dtype == np.int64
    expected_x, expected_y = make_classification(**{**madelon.RECIPE, "n_samples": N, "n_features": 20},
                                                 random_state=3)
    columns = useful_columns(F, 3)
    assert len(set(columns.tolist())) == 20 and columns.min() >= 0 and columns.max() < F
    np.testing.assert_array_equal(x[:, columns], expected_x.astype(np.float32))
    np.testing.assert_array_equal(y, expected_y)
    useful = x[:, columns].astype(np.float64)  # 5 informative, 15 linear combinations of them
    assert np.linalg.matrix_rank(useful, tol=1e-4 * np.linalg.norm(useful, 2)) == 5
    probes = np.delete(x, columns, axis=1)
    assert abs(probes.mean()) < 0.01 and abs(probes.std() - 1) < 0.01
    assert np.abs(np.corrcoef(probes[:, :50].T, y)[-1, :-1]).max() < 0.25  # no signal


def test_generation_holds_no_copy_of_the_matrix(tmp_path):
    n, f = 256, 8192  # 8 MiB float32, 16 MiB float64; chunks of 32 rows (1 MiB)
    madelon65536.make_useful(8)  # import scikit-learn outside the trace
    tracemalloc.start()
    try:
        generate(tmp_path, n, f, 0, chunk_rows=32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < madelon65536.feature_bytes(n, f) / 2


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_generation_leaves_nothing(isolated, monkeypatch, interrupt):
    real, calls = madelon65536.fill_rows, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise interrupt("stopped mid-way")
        real(*args, **kwargs)

    monkeypatch.setattr(madelon65536, "fill_rows", failing)
    with pytest.raises(interrupt):
        generate(isolated, N, F, 0, chunk_rows=16)
    assert list(isolated.iterdir()) == []
    monkeypatch.setattr(madelon65536, "fill_rows", real)
    assert load("madelon-65536", n_features=F, n_samples=N).n_features == F


def test_no_room_is_a_one_line_error_before_writing(isolated, monkeypatch):
    monkeypatch.setattr(madelon65536.shutil, "disk_usage", lambda _: SimpleNamespace(free=1 << 20))
    with pytest.raises(DatasetNotFoundError, match=r"needs .* GiB .* free: free disk space") as info:
        ensure_madelon65536(N, F, 0)
    assert "\n" not in str(info.value)
    assert not any(isolated.iterdir())


def _truncate(x: Path, y: Path) -> None:
    os.truncate(x, x.stat().st_size - 4)


def _bad_header(x: Path, y: Path) -> None:
    with open(x, "r+b") as stream:
        stream.write(b"garbage!")


def _wrong_shape(x: Path, y: Path) -> None:
    np.save(x, np.zeros((N, F + 1), np.float32))


def _bad_labels(x: Path, y: Path) -> None:
    np.save(y, np.full(N, 2, np.int64))


@pytest.mark.parametrize("damage", [_truncate, _bad_header, _wrong_shape, _bad_labels])
def test_a_damaged_file_is_a_one_line_error_naming_the_fix(isolated, damage):
    x, y = ensure_madelon65536(N, F, 0)
    original = _bytes((x, y))
    damage(x, y)
    with pytest.raises(CorruptDataError) as info:
        load("madelon-65536", n_features=F, n_samples=N)
    message = str(info.value)
    assert "\n" not in message and "delete" in message and str(isolated) in message
    for path in (x, y):
        if str(path) in message:
            path.unlink()
    load("madelon-65536", n_features=F, n_samples=N)  # regenerated, the same bytes
    assert _bytes((x, y)) == original


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"n_features": 19}, "n_features"),
        ({"n_features": 512.0}, "n_features"),
        ({"n_samples": 1}, "n_samples"),
        ({"n_samples": True}, "n_samples"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
    ],
)
def test_bad_arguments_are_one_line_value_errors(isolated, options, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be an integer") as info:
        load("madelon-65536", **{"n_features": F, "n_samples": N, **options})
    assert "\n" not in str(info.value)
    assert not isolated.exists()


@pytest.mark.parametrize(("n_samples", "split"), [(N, (280, 120)), (11, (7, 4)), (10_000, (7000, 3000))])
def test_split_is_seventy_thirty(n_samples, split):
    assert madelon65536.split_sizes(n_samples) == split
    assert madelon65536.recipe(n_samples, F)["n_train"] == split[0]


def test_load_standardises_each_split_like_every_dataset(isolated, monkeypatch):
    monkeypatch.setattr(madelon65536, "CHUNK_BYTES", 280 * 4 * 3)  # blocks of 3 columns
    d = load("madelon-65536", n_features=F, n_samples=N)
    x_path, y_path = ensure_madelon65536(N, F, 0)
    raw, y = np.load(x_path), np.load(y_path)
    x_train, x_test = standardise(raw[:280], raw[280:])
    torch.testing.assert_close(d.x_train, x_train, rtol=0, atol=1e-6)
    torch.testing.assert_close(d.x_test, x_test, rtol=0, atol=1e-6)
    assert d.y_train.tolist() == y[:280].tolist() and d.y_test.tolist() == y[280:].tolist()
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64 and d.n_classes == 2
    assert d.name == "Madelon-512 (synthetic, make_classification)"
    assert "make_classification" in d.source and "492 probes" in d.source and str(x_path) in d.source


def test_subset_reads_the_drawn_rows(isolated):
    d = load("madelon-65536", n_features=F, n_samples=N, subset=(50, 20))
    assert (len(d.y_train), len(d.y_test)) == (50, 20)
    x_path, y_path = ensure_madelon65536(N, F, 0)
    raw, y = np.load(x_path), np.load(y_path)
    rng = np.random.default_rng(SUBSET_SEED)
    train, test = pick_subset(280, 50, rng), 280 + pick_subset(120, 20, rng)
    x_train, x_test = standardise(raw[train], raw[test])
    torch.testing.assert_close(d.x_train, x_train, rtol=0, atol=1e-6)
    torch.testing.assert_close(d.x_test, x_test, rtol=0, atol=1e-6)
    assert d.y_train.tolist() == y[train].tolist() and d.y_test.tolist() == y[test].tolist()


def test_ensure_generates_once_and_says_where(isolated, monkeypatch, capsys):
    narrow = functools.partial(madelon65536.ensure_madelon65536, N, F)
    monkeypatch.setattr(madelon65536, "ensure_madelon65536", narrow)
    assert main(["ensure", "madelon-65536"]) == 0
    first = capsys.readouterr().out
    x, _ = narrow()
    assert "generating" in first and str(x) in first and x.parent == isolated
    stamp = x.stat().st_mtime_ns
    assert main(["ensure", "madelon-65536"]) == 0
    again = capsys.readouterr().out
    assert "generating" not in again and str(x) in again and x.stat().st_mtime_ns == stamp


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")
def test_loading_holds_the_float32_matrix_once(isolated, tmp_path):
    """The peak RSS of a process loading a 1000 × 16384 set (62.5 MiB) grows by about that much.

    Measured in a fresh process, after the imports and a first tiny load (one-off initialisations),
    from its resident size to its high-water mark (:func:`swatlib.machine.reset_peak_resident`;
    ``ru_maxrss`` would include the forking parent's).
    """
    n, f = 1000, 16384
    ensure_madelon65536(n, f, 0)
    ensure_madelon65536(40, 64, 0)
    script = (
        "import json, torch\n"
        "from swatlib.data import load, madelon65536\n"
        "from swatlib.machine import peak_resident_bytes, reset_peak_resident, resident_bytes\n"
        "madelon65536.CHUNK_BYTES = 1 << 20\n"
        "torch.set_num_threads(1)\n"
        "load('madelon-65536', n_features=64, n_samples=40)\n"
        "reset_peak_resident()\n"
        "before = resident_bytes()\n"
        f"d = load('madelon-65536', n_features={f}, n_samples={n})\n"
        "print(json.dumps([before, peak_resident_bytes()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=PROJECT_ROOT)
    before, peak = json.loads(out.stdout.splitlines()[-1])
    matrix = madelon65536.feature_bytes(n, f)
    assert 0.9 * matrix < peak - before < 1.15 * matrix  # a second copy would be 2x, float64 3x
