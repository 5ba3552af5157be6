"""Shared test setup."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run every test with one intra-op thread: on two busy cores, two OpenMP threads made small
    convolutions and sparse kernels many times slower, and tests must not depend on the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
