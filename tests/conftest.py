"""Shared test setup."""

import signal
from pathlib import Path

import pytest
import torch

from swatlib.data import _files

# A shell starts a background job (`make test &`, `nohup ... &`) with SIGINT ignored, and every process
# it starts inherits that: the Ctrl-C tests' runs would then never see their SIGINT and fail after
# their deadlines. The tests are about what a run does on Ctrl-C, so give their processes the default
# handler (KeyboardInterrupt) whatever the shell did.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def one_thread():
    """Run every test with one intra-op thread: on two busy cores, two OpenMP threads made small
    convolutions and sparse kernels many times slower, and tests must not depend on the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every data directory into tmp_path ($SWATLIB_DATA, $HOME's cache, the system data
    directory); return the $SWATLIB_DATA root (empty). Test modules narrow it further by overriding."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("SWATLIB_DATA", str(data))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_files, "SYSTEM_DATA_DIR", tmp_path / "system")
    return data
