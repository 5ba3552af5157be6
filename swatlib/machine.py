"""What a timed result ran on: the CPU, its logical CPUs, torch and Python, and the load average.

Every benchmark and timed notebook run records this beside its numbers, so that a reader can tell
which machine and how busy it was.
"""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["describe", "load_average"]


def describe() -> dict:
    """CPU model (from ``/proc/cpuinfo`` where there is one), logical CPUs, torch version and threads, Python."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
