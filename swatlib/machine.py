"""What a timed result ran on, and how much memory the process holds.

* :func:`describe` and :func:`load_average` — the CPU, its logical CPUs, torch and Python, and the
  load average (:func:`cpuinfo_lines` is the one reader of ``/proc/cpuinfo``, also for the native
  kernels' build key). Every benchmark and timed notebook run records these beside its numbers, so
  that a reader can tell which machine and how busy it was; :func:`is_busy` flags a run that started
  on a machine others were using (:data:`BUSY_LOAD`).
* :func:`resident_bytes`, :func:`peak_resident_bytes` and :func:`reset_peak_resident` — the
  process's resident set (RSS) now, its high-water mark, and resetting that mark, read from Linux's
  ``/proc/self``: the one place where memory measurements (SWAT step peaks, extreme-scale rows,
  parallel roles, the SET-MLP memory benchmark) read the process's memory.
"""

from __future__ import annotations

import os
import platform
import re
import sys

import torch

__all__ = ["BUSY_LOAD", "cpuinfo_lines", "describe", "is_busy", "load_average", "resident_bytes",
           "peak_resident_bytes", "reset_peak_resident"]

#: 1-minute load average before a timed run above which it is marked "busy machine": 0.5 runnable
#: processes on average is a quarter of the 2-core reference machine taken by others (an idle VM
#: there sits below 0.2).
BUSY_LOAD = 0.5


def cpuinfo_lines(*fields: str) -> list[str]:
    """The lines of ``/proc/cpuinfo`` that start with one of ``fields``, in order (none where the file is absent)."""
    try:
        with open("/proc/cpuinfo") as info:
            return [line.rstrip("\n") for line in info if line.startswith(fields)]
    except OSError:
        return []


def describe() -> dict:
    """CPU model (from ``/proc/cpuinfo`` where there is one), logical CPUs, torch version and threads, Python."""
    models = cpuinfo_lines("model name")
    cpu = models[0].split(":", 1)[1].strip() if models else platform.processor() or ""
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def is_busy(load: list[float] | None) -> bool:
    """Whether a run that started at this :func:`load_average` shared the machine (1-minute load above
    :data:`BUSY_LOAD`; False where the platform has no load average)."""
    return load is not None and load[0] > BUSY_LOAD


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def resident_bytes() -> int:
    """Bytes of this process's resident set now (the second field of ``/proc/self/statm``, in pages).

    The same count as ``VmRSS`` in ``/proc/self/status``. Memory the allocator keeps after a free
    still counts: to measure what a free gives back, collect garbage and trim the heap first
    (as :func:`swatlib.swat.memory.graph_resident_bytes` does).

    Raises
    ------
    OSError
        Where there is no ``/proc`` (anything but Linux).
    """
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """Bytes of this process's peak resident set: ``VmHWM`` of ``/proc/self/status``.

    ``VmHWM`` is this process's own high-water mark, since it started or since the last
    :func:`reset_peak_resident`. It is read rather than ``getrusage``'s ``ru_maxrss``, which agrees
    with it in a process that never resets its peak *except* in one started by ``subprocess`` or by
    multiprocessing's ``spawn`` (vfork, then exec): Linux carries the high-water mark of the address
    space the exec replaced — the parent's — into the child's ``ru_maxrss``, so every child of a
    500 MiB notebook would report at least 500 MiB.

    Where there is no ``/proc`` (macOS, the BSDs) it falls back to ``ru_maxrss`` (in bytes on
    macOS, KiB elsewhere), the only peak those systems report.

    Raises
    ------
    RuntimeError
        If ``/proc/self/status`` has no ``VmHWM`` line.
    """
    try:
        with open("/proc/self/status") as status:
            match = re.search(r"^VmHWM:\s+(\d+) kB", status.read(), re.MULTILINE)
    except FileNotFoundError:
        import resource  # not on Windows, and only needed without /proc

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    if match is None:
        raise RuntimeError("/proc/self/status has no VmHWM line")
    return int(match.group(1)) * 1024


def reset_peak_resident() -> None:
    """Reset :func:`peak_resident_bytes` to the current resident set (``5`` into ``/proc/self/clear_refs``).

    Afterwards the peak covers only what follows: the peak of one training step, say, rather than
    of everything the process did before it.

    Raises
    ------
    OSError
        Where the kernel refuses it (no ``/proc``, Linux before 4.0, a sandbox); the message names
        ``/proc/self/clear_refs``.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError as err:
        raise OSError(err.errno, "cannot reset the peak resident set: this kernel refuses "
                                 f"/proc/self/clear_refs ({err.strerror})") from err
