"""The peak memory of a SWAT training step, measured in a fresh process, falls with the density."""

import functools
import sys

import pytest
import torch

from swatlib.experiments.swat import conv_stack, memory_network
from swatlib.swat import StepPeak, measure_step_peak, step_peak

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux, glibc)")


def _batch(n):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@linux
@pytest.mark.slow
def test_step_peak_falls_with_density():
    """A 6-conv ReLU stack (width 32, batch 64): dense > SWAT-U 0.5 > SWAT-U 0.2 at the step's peak.

    step_peak fixes glibc's mmap threshold in its process, so identical steps measure identically;
    before, a step's peak varied by 10-30 MiB from one fresh process to the next and a 12-conv stack
    at batch 128 once measured SWAT-U 0.5 above dense. Here the three peaks are about 52 / 41 / 33 MiB.
    """
    x, y = _batch(64)
    peaks = [step_peak(functools.partial(conv_stack, 6, width=32, density=d), x, y)
             for d in (1.0, 0.5, 0.2)]
    steps = [p.step for p in peaks]
    assert steps[0] > steps[1] > steps[2]
    saved = [p.saved.total for p in peaks]
    assert saved[0] > saved[1] > saved[2]
    for p in peaks:     # what the graph holds is part of the peak
        assert isinstance(p, StepPeak) and p.step >= p.graph > 0 and p.forward >= p.graph


@linux
def test_measure_step_peak_in_process_sees_the_graph():
    x, y = _batch(16)
    peak = measure_step_peak(memory_network("smallcnn", 0.5, width=4), x, y)
    assert peak.step > 0 and peak.forward > 0 and peak.saved.total > 0


@linux
def test_step_peak_reports_a_failing_build():
    x, y = _batch(2)
    with pytest.raises(RuntimeError, match="step_peak"):
        step_peak(functools.partial(conv_stack, 1), x, y)


def test_networks_validate_their_arguments():
    with pytest.raises(ValueError, match="depth"):
        conv_stack(1)
    with pytest.raises(ValueError, match="network"):
        memory_network("resnet")
    stack = conv_stack(4)
    assert [m.out_channels for m in stack if isinstance(m, torch.nn.Conv2d)] == [16, 64, 64, 64]
    assert stack[-1].in_features == 64 * 28 * 28
