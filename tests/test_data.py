"""Tests of swatlib.data: real Fashion-MNIST when installed, tiny synthetic files in the real
formats for everything else. Nothing here downloads or installs: fetchers and apt are fakes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import swatlib.data
from swatlib.data import (
    DATASETS,
    CorruptDataError,
    DatasetNotFoundError,
    DownloadError,
    cifar10,
    data_dirs,
    ensure,
    fashion_mnist,
    load,
    standardise,
)
from swatlib.data import provision
from swatlib.data.__main__ import main
from swatlib.data.dataset import subset_sizes
from swatlib.paths import PROJECT_ROOT

# ----------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array (what the official files hold, before gzip)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fmnist_payloads(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, bytes]:
    """Decompressed idx payloads of a tiny Fashion-MNIST, keyed by official file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % 10,
    }
    return {name: idx_bytes(a) for name, a in arrays.items()}


def accept(monkeypatch: pytest.MonkeyPatch, payloads: dict[str, bytes]) -> None:
    """Make the checksum table accept these synthetic payloads."""
    table = {name: hashlib.sha256(data).hexdigest() for name, data in payloads.items()}
    monkeypatch.setattr(fashion_mnist, "SHA256", table)


def write_fmnist(directory: Path, payloads: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in payloads.items():
        (directory / name).write_bytes(gzip.compress(data))
    return directory


def serving(files: dict[str, bytes], log: list[str] | None = None):
    """A fake fetcher that serves ``files`` by URL basename."""

    def fetch(url: str, path: Path) -> None:
        if log is not None:
            log.append(url)
        path.write_bytes(files[url.rsplit("/", 1)[1]])

    return fetch


def refuse(url: str, path: Path) -> None:
    raise AssertionError(f"no download expected, got {url}")


def no_files_left(root: Path) -> bool:
    return not root.exists() or not any(p.is_file() for p in root.rglob("*"))


# ----------------------------------------------------------------------------- real Fashion-MNIST


# `make test` runs `make data` first, so the real files must be there: these tests fail, not skip.
@pytest.fixture(scope="module")
def real_fmnist() -> swatlib.data.Dataset:
    return load("fashion-mnist")


def test_real_fashion_mnist_shapes_and_dtypes(real_fmnist):
    d = real_fmnist
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.y_train.shape == (60000,) and d.y_test.shape == (10000,)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.n_classes == 10 and d.n_features == 784 and d.name == "Fashion-MNIST"
    assert set(d.y_train.unique().tolist()) == set(range(10))
    assert torch.bincount(d.y_train).tolist() == [6000] * 10


def test_real_fashion_mnist_is_standardised_with_train_stats(real_fmnist):
    d = real_fmnist
    assert d.x_train.mean(0).abs().max() < 1e-4
    assert (d.x_train.std(0, correction=0) - 1).abs().max() < 1e-3
    assert torch.isfinite(d.x_test).all()
    assert d.x_test.mean().abs() < 0.05  # test statistics are close but not forced


def test_real_fashion_mnist_subset_is_deterministic():
    a = load("fashion-mnist", subset=600)
    b = load("fashion-mnist", subset=600, flatten=False)
    assert a.x_train.shape == (600, 784) and a.x_test.shape == (100, 784)
    assert b.x_train.shape == (600, 1, 28, 28)
    assert torch.equal(a.x_train, b.x_train.reshape(600, -1)) and torch.equal(a.y_test, b.y_test)


def test_raw_fashion_mnist_keeps_pixel_values_and_names_classes():
    raw = load("fashion-mnist", subset=600, standardize=False, flatten=False)
    assert raw.x_train.dtype == torch.float32
    assert raw.x_train.min() == 0 and raw.x_train.max() == 255
    assert raw.classes[0] == "T-shirt/top" and raw.classes[9] == "Ankle boot" and len(raw.classes) == 10


# ----------------------------------------------------------------------------- search path


def test_data_dirs_order_and_relative_entries(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("SWATLIB_DATA", os.pathsep.join([str(isolated), "rel/dir"]))
    monkeypatch.chdir(tmp_path)
    dirs = data_dirs()
    assert dirs[0] == isolated
    assert dirs[1] == PROJECT_ROOT / "rel/dir"  # relative to the project root, not the cwd
    assert dirs[2:] == [tmp_path / "home/.cache/swatlib", tmp_path / "system"]


def test_first_directory_wins(isolated, tmp_path, monkeypatch):
    payloads = fmnist_payloads()
    accept(monkeypatch, payloads)
    write_fmnist(tmp_path / "system/fashion-mnist", fmnist_payloads(seed=1))
    write_fmnist(isolated / "fashion-mnist", payloads)
    assert load("fashion-mnist").source == str(isolated / "fashion-mnist")


# ----------------------------------------------------------------------------- idx and checksums


def test_synthetic_fashion_mnist_loads(isolated, monkeypatch):
    payloads = fmnist_payloads()
    accept(monkeypatch, payloads)
    write_fmnist(isolated / "fashion-mnist", payloads)
    d = load("fashion-mnist", flatten=False)
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert d.y_train.tolist() == [i % 10 for i in range(20)]


def test_tampered_file_fails_its_checksum(isolated, monkeypatch):
    payloads = fmnist_payloads()
    accept(monkeypatch, payloads)
    name = "t10k-images-idx3-ubyte.gz"
    tampered = bytearray(payloads[name])
    tampered[100] ^= 0xFF
    write_fmnist(isolated / "fashion-mnist", payloads | {name: bytes(tampered)})
    with pytest.raises(CorruptDataError, match=f"{name} fails its sha256") as info:
        load("fashion-mnist")
    assert "python -m swatlib.data ensure fashion-mnist" in str(info.value)
    assert "\n" not in str(info.value)
    assert load("fashion-mnist", verify=False).x_test.shape == (10, 784)


def test_real_checksums_reject_synthetic_files(isolated):
    write_fmnist(isolated / "fashion-mnist", fmnist_payloads())
    with pytest.raises(CorruptDataError, match="sha256"):
        load("fashion-mnist")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda gz, raw: gz[: len(gz) // 2], "not a complete gzip file"),
        (lambda gz, raw: b"not gzip at all", "not a complete gzip file"),
        (lambda gz, raw: gzip.compress(raw[:-5]), "truncated or corrupt"),
        (lambda gz, raw: gzip.compress(raw[:6]), "truncated inside its idx header"),
        (lambda gz, raw: gzip.compress(b"\x01" + raw[1:]), "not an idx file"),
    ],
)
def test_corrupt_idx_gives_one_line_error(isolated, damage, message):
    payloads = fmnist_payloads()
    directory = write_fmnist(isolated / "fashion-mnist", payloads)
    path = directory / "train-labels-idx1-ubyte.gz"
    path.write_bytes(damage(path.read_bytes(), payloads[path.name]))
    with pytest.raises(CorruptDataError, match=message) as info:
        load("fashion-mnist", verify=False)
    text = str(info.value)
    assert str(path) in text and "\n" not in text
    assert f"delete {directory}" in text


def test_damaged_system_copy_suggests_reinstall(isolated, tmp_path):
    directory = write_fmnist(tmp_path / "system/fashion-mnist", fmnist_payloads())
    (directory / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    with pytest.raises(CorruptDataError, match="apt-get install --reinstall dataset-fashion-mnist"):
        load("fashion-mnist", verify=False)


# ----------------------------------------------------------------------------- missing data


@pytest.mark.parametrize(
    ("name", "options", "command"),
    [
        ("fashion-mnist", {}, "sudo apt-get install dataset-fashion-mnist"),
        ("cifar10", {}, "python -m swatlib.data ensure cifar10"),
        ("higgs", {}, "archive.ics.uci.edu/dataset/280/higgs"),
        ("leukemia", {}, "GSE13204"),
        ("madelon", {"variant": "uci"}, "archive.ics.uci.edu/dataset/171/madelon"),
    ],
)
def test_missing_data_names_the_fix(isolated, name, options, command):
    with pytest.raises(DatasetNotFoundError) as info:
        load(name, **options)
    assert isinstance(info.value, FileNotFoundError)
    assert command in str(info.value) and "\n" not in str(info.value)
    assert str(isolated) in str(info.value)  # says where it looked


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="fashion-mnist, madelon, cifar10, higgs, leukemia"):
        load("mnist")
    with pytest.raises(ValueError, match="name must be one of .*wordnet, got 'mnist'"):
        ensure("mnist")


# ----------------------------------------------------------------------------- ensure


def test_ensure_found_does_nothing(isolated, monkeypatch):
    directory = write_fmnist(isolated / "fashion-mnist", fmnist_payloads())
    lines: list[str] = []
    result = ensure("fashion-mnist", use_apt=True, run=pytest.fail, fetch=refuse, log=lines.append)
    assert result == directory and lines == [f"fashion-mnist: found in {directory}"]


def test_ensure_installs_with_apt_when_root(isolated, tmp_path):
    commands: list[list[str]] = []

    def fake_apt(command, **kwargs):
        commands.append(command)
        if command[1] == "install":
            write_fmnist(tmp_path / "system/fashion-mnist", fmnist_payloads())
        return subprocess.CompletedProcess(command, 0)

    result = ensure("fashion-mnist", use_apt=True, run=fake_apt, fetch=refuse, log=lambda _: None)
    install = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
    assert commands == [["apt-get", "update"], install]
    assert result == tmp_path / "system/fashion-mnist"


def test_ensure_downloads_when_apt_fails(isolated, tmp_path, monkeypatch):
    payloads = fmnist_payloads()
    accept(monkeypatch, payloads)
    urls: list[str] = []
    def failing_apt(command, **kwargs):
        return subprocess.CompletedProcess(command, 100)

    gz = {name: gzip.compress(data) for name, data in payloads.items()}
    fetch = serving(gz, urls)
    result = ensure("fashion-mnist", use_apt=True, run=failing_apt, fetch=fetch, log=lambda _: None)
    cache = tmp_path / "home/.cache/swatlib"
    assert result == cache / "fashion-mnist"
    assert urls == [fashion_mnist.BASE_URL + name for name in fashion_mnist.FILES]
    assert sorted(p.name for p in cache.iterdir()) == ["fashion-mnist"]  # staging removed
    assert load("fashion-mnist").x_train.shape == (20, 784)


def test_ensure_download_without_root_skips_apt(isolated, monkeypatch):
    payloads = fmnist_payloads()
    accept(monkeypatch, payloads)
    monkeypatch.setattr(provision, "apt_usable", lambda: False)
    gz = {name: gzip.compress(data) for name, data in payloads.items()}
    result = ensure("fashion-mnist", run=pytest.fail, fetch=serving(gz), log=lambda _: None)
    assert result is not None and fashion_mnist.find_fashion_mnist() == result


def test_mismatching_download_leaves_nothing(isolated, tmp_path, monkeypatch):
    payloads = fmnist_payloads()
    accept(monkeypatch, payloads)
    gz = {name: gzip.compress(data) for name, data in payloads.items()}
    gz["t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x07")
    with pytest.raises(DatasetNotFoundError, match="fails its sha256") as info:
        ensure("fashion-mnist", use_apt=False, fetch=serving(gz), log=lambda _: None)
    assert "sudo apt-get install dataset-fashion-mnist" in str(info.value)
    assert no_files_left(tmp_path / "home")


def test_failed_download_is_a_one_line_error(isolated, tmp_path):
    def offline(url: str, path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError("Network is unreachable")

    with pytest.raises(DatasetNotFoundError) as info:
        ensure("fashion-mnist", use_apt=False, fetch=offline, log=lambda _: None)
    text = str(info.value)
    assert "Network is unreachable" in text and "SWATLIB_DATA" in text and "\n" not in text
    assert no_files_left(tmp_path / "home")


def test_ensure_without_download_source_raises(isolated):
    with pytest.raises(DatasetNotFoundError, match="HIGGS.csv.gz"):
        ensure("higgs", fetch=refuse, log=lambda _: None)


def test_ensure_madelon_falls_back_to_generator(isolated):
    lines: list[str] = []
    assert ensure("madelon", fetch=refuse, log=lines.append) is None
    assert "Madelon-like (synthetic)" in lines[0]


def test_cli_exit_status(isolated, monkeypatch, capsys):
    def offline(**kwargs):
        raise DownloadError("downloading x failed: offline")

    monkeypatch.setattr(provision, "apt_usable", lambda: False)
    monkeypatch.setitem(provision._DOWNLOADERS, "fashion-mnist", offline)
    assert main(["ensure", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "sudo apt-get install dataset-fashion-mnist" in err

    write_fmnist(isolated / "fashion-mnist", fmnist_payloads())
    assert main(["ensure", "fashion-mnist", "madelon"]) == 0
    assert "found in" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Madelon


def test_madelon_like_shape_name_and_determinism(isolated):
    a, b = load("madelon"), load("madelon")
    assert a.name == "Madelon-like (synthetic)" and "make_classification" in a.source
    assert a.x_train.shape == (2000, 500) and a.x_test.shape == (600, 500) and a.n_classes == 2
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert 0.45 < a.y_train.float().mean() < 0.55
    assert not torch.equal(load("madelon", seed=1).x_train, a.x_train)


def test_madelon_uci_files_are_read(isolated):
    rng = np.random.default_rng(0)
    directory = isolated / "madelon"
    directory.mkdir()
    labels = {}
    for stem, n in (("madelon_train", 30), ("madelon_valid", 12)):
        np.savetxt(directory / f"{stem}.data", rng.integers(400, 600, (n, 20)), fmt="%d ")
        labels[stem] = np.where(np.arange(n) % 3 == 0, 1, -1)
        np.savetxt(directory / f"{stem}.labels", labels[stem], fmt="%d")
    d = load("madelon")
    assert d.name == "Madelon (UCI)" and d.source == str(directory)
    assert d.x_train.shape == (30, 20) and d.x_test.shape == (12, 20)
    assert d.y_train.tolist() == (labels["madelon_train"] > 0).astype(int).tolist()
    assert load("madelon", variant="synthetic").name == "Madelon-like (synthetic)"


# ----------------------------------------------------------------------------- CIFAR-10


def cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"synthetic",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
    return pickle.dumps(batch, protocol=2)  # the official batches are protocol-2 pickles


def cifar_files() -> dict[str, bytes]:
    return {name: cifar_batch(8, i) for i, name in enumerate(cifar10.FILES)}


def test_cifar10_batches_are_read(isolated):
    directory = isolated / "cifar-10-batches-py"
    directory.mkdir()
    for name, data in cifar_files().items():
        (directory / name).write_bytes(data)
    flat, images = load("cifar10"), load("cifar10", flatten=False)
    assert flat.x_train.shape == (40, 3072) and flat.x_test.shape == (8, 3072)
    assert images.x_train.shape == (40, 3, 32, 32) and flat.n_classes == 10
    expected = pickle.loads(cifar_files()["test_batch"], encoding="bytes")[b"labels"]
    assert flat.y_test.tolist() == expected


def test_cifar10_refuses_arbitrary_pickles(isolated):
    directory = isolated / "cifar-10-batches-py"
    directory.mkdir()
    for name, data in cifar_files().items():
        (directory / name).write_bytes(data)
    (directory / "data_batch_3").write_bytes(pickle.dumps({b"data": subprocess.Popen}))
    with pytest.raises(CorruptDataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load("cifar10")


def cifar_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in cifar_files().items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_cifar10_download_verifies_md5(isolated, tmp_path, monkeypatch):
    archive = cifar_archive()
    fetch = serving({"cifar-10-python.tar.gz": archive})
    with pytest.raises(DatasetNotFoundError, match="fails its md5"):
        ensure("cifar10", fetch=fetch, log=lambda _: None)
    assert no_files_left(tmp_path / "home")
    monkeypatch.setattr(cifar10, "MD5", hashlib.md5(archive).hexdigest())
    result = ensure("cifar10", fetch=fetch, log=lambda _: None)
    assert result == tmp_path / "home/.cache/swatlib/cifar-10-batches-py"
    assert load("cifar10", subset=(10, 4)).x_test.shape == (4, 3072)


# ----------------------------------------------------------------------------- Higgs and Leukemia


def test_higgs_csv_gz(isolated):
    rng = np.random.default_rng(0)
    table = np.column_stack([np.arange(30) % 2, rng.normal(size=(30, 28))])
    (isolated / "higgs").mkdir()
    with gzip.open(isolated / "higgs/HIGGS.csv.gz", "wt") as stream:
        np.savetxt(stream, table, delimiter=",", fmt="%.18e")
    d = load("higgs", n_test=10)
    assert d.x_train.shape == (20, 28) and d.x_test.shape == (10, 28) and d.n_classes == 2
    assert d.y_test.tolist() == (np.arange(20, 30) % 2).tolist()  # the last rows are the test set


def test_higgs_wrong_columns(isolated):
    (isolated / "higgs").mkdir()
    with gzip.open(isolated / "higgs/HIGGS.csv.gz", "wt") as stream:
        stream.write("1,2,3\n0,4,5\n")
    with pytest.raises(CorruptDataError, match="29|28 features"):
        load("higgs", n_test=1)


def test_leukemia_npz_stratified_split(isolated):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [9, 12, 6])
    (isolated / "leukemia").mkdir()
    np.savez(isolated / "leukemia/leukemia.npz", X=rng.normal(size=(27, 50)), y=y)
    d = load("leukemia")
    assert d.n_classes == 3 and d.x_train.shape == (18, 50) and d.x_test.shape == (9, 50)
    assert torch.bincount(d.y_train).tolist() == [6, 8, 4]
    assert torch.equal(load("leukemia").x_test, d.x_test)


def test_leukemia_bad_npz(isolated):
    (isolated / "leukemia").mkdir()
    np.savez(isolated / "leukemia/leukemia.npz", X=np.zeros((3, 4)))
    with pytest.raises(CorruptDataError, match="X and y"):
        load("leukemia")


# ----------------------------------------------------------------------------- shared logic


def test_subset_sizes():
    assert subset_sizes(None, 60000, 10000) == (60000, 10000)
    assert subset_sizes(6000, 60000, 10000) == (6000, 1000)
    assert subset_sizes(1, 60000, 10000) == (1, 1)
    assert subset_sizes((100, 7), 2000, 600) == (100, 7)
    with pytest.raises(ValueError, match="split has 2000 / 600"):
        subset_sizes(3000, 2000, 600)


def test_registry_covers_every_dataset():
    assert DATASETS == ("fashion-mnist", "madelon", "cifar10", "higgs", "leukemia", "madelon-65536")
    assert set(provision._MODULES) == set(DATASETS)


@settings(max_examples=60, deadline=None)
@given(
    n_train=st.integers(2, 40),
    n_test=st.integers(1, 10),
    n_features=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    log_scale=st.floats(-3, 3),
    offset=st.floats(-1e3, 1e3),
    integer_input=st.booleans(),
)
def test_standardise_property(n_train, n_test, n_features, seed, log_scale, offset, integer_input):
    rng = np.random.default_rng(seed)
    if integer_input:
        x = rng.integers(0, 256, (n_train + n_test, n_features)).astype(np.uint8)
    else:
        x = rng.normal(offset, 10.0**log_scale, (n_train + n_test, n_features))
    constant = rng.random(n_features) < 0.3
    x[:, constant] = x[0, constant]
    train, test = standardise(x[:n_train], x[n_train:])
    assert train.dtype == torch.float32 and train.shape == (n_train, n_features)
    assert torch.isfinite(train).all() and torch.isfinite(test).all()
    flat = torch.from_numpy(x[:n_train].min(0) == x[:n_train].max(0))
    assert (train[:, flat] == 0).all()
    varying = train[:, ~flat].double().numpy()
    assert np.abs(varying.mean(0)).max(initial=0) < 1e-5
    assert np.abs(varying.std(0) - 1).max(initial=0) < 1e-4
