"""swatlib.machine's memory readings: the resident set now, its peak, resetting the peak."""

import builtins
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from swatlib import machine

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")
BLOCK = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB): freed, it leaves the resident set


def _reset_or_skip() -> None:
    try:
        machine.reset_peak_resident()
    except OSError as err:
        pytest.skip(str(err))


def _hide(monkeypatch, path: str, error: type[OSError]) -> None:
    """Make ``open(path)`` inside swatlib.machine raise ``error``, as on a system without it."""
    def fake_open(file, *args, **kwargs):
        if file == path:
            raise error(2 if error is FileNotFoundError else 13, "hidden by the test", file)
        return builtins.open(file, *args, **kwargs)
    monkeypatch.setattr(machine, "open", fake_open, raising=False)


@linux
def test_resident_bytes_follows_a_touched_block_and_its_free():
    before = machine.resident_bytes()
    block = torch.ones(BLOCK // 4)
    held = machine.resident_bytes()
    del block
    after = machine.resident_bytes()
    assert held - before >= 0.9 * BLOCK and held - after >= 0.9 * BLOCK


@linux
def test_the_peak_keeps_a_freed_block_until_it_is_reset():
    _reset_or_skip()
    before = machine.resident_bytes()
    assert machine.peak_resident_bytes() >= before
    block = torch.ones(BLOCK // 4)
    del block
    assert machine.peak_resident_bytes() - before >= 0.9 * BLOCK
    machine.reset_peak_resident()
    assert machine.peak_resident_bytes() - machine.resident_bytes() < BLOCK // 2


@pytest.mark.slow
@linux
def test_a_started_process_reads_its_own_peak_not_its_parents():
    """A parent peaking at 768 MiB starts a child (~220 MiB with torch): the child's peak is its own.

    (``ru_maxrss`` would say at least 768 MiB there: exec carries the parent's high-water mark over.)
    """
    child = "from swatlib.machine import peak_resident_bytes; print(peak_resident_bytes())"
    parent = textwrap.dedent(f"""
        import subprocess, sys
        block = b"\\x01" * (768 << 20)
        del block
        sys.exit(subprocess.run([sys.executable, "-c", {child!r}]).returncode)
    """)
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True)
    assert 0 < json.loads(done.stdout) < 640 * 2**20


def test_a_refused_reset_says_clear_refs(monkeypatch):
    _hide(monkeypatch, "/proc/self/clear_refs", PermissionError)
    with pytest.raises(PermissionError, match="clear_refs"):
        machine.reset_peak_resident()


@linux
def test_without_proc_the_peak_falls_back_to_getrusage_in_bytes(monkeypatch):
    resident = machine.resident_bytes()
    _hide(monkeypatch, "/proc/self/status", FileNotFoundError)
    assert machine.peak_resident_bytes() >= 0.9 * resident  # KiB taken for bytes would be 1/1024 of it


def test_cpuinfo_lines_are_the_asked_fields_or_nothing(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2\nprocessor\t: 1\n"
                    "model name\t: Some CPU\n")
    monkeypatch.setattr(machine, "open", lambda file, *args, **kwargs: builtins.open(
        fake if file == "/proc/cpuinfo" else file, *args, **kwargs), raising=False)
    assert machine.cpuinfo_lines("model name", "flags") == ["model name\t: Some CPU", "flags\t\t: fpu avx2",
                                                            "model name\t: Some CPU"]
    assert machine.cpuinfo_lines("nothing such") == []
    assert machine.describe()["cpu"] == "Some CPU"
    _hide(monkeypatch, "/proc/cpuinfo", FileNotFoundError)  # another OS: no lines, the platform's name
    assert machine.cpuinfo_lines("model name") == []
    assert isinstance(machine.describe()["cpu"], str)
