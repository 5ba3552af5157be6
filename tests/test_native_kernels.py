"""The native CSR kernels against dense references, and the compile / fallback machinery."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swatlib.sparse import SparseLinear, native

needs_native = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")


def _csr_pointers(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    pointers = torch.zeros(n_rows + 1, dtype=torch.int64)
    pointers[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
    return pointers


def _pattern(n_rows: int, n_cols: int, density: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    count = round(density * n_rows * n_cols)  # may be 0: an empty pattern
    keys = torch.randperm(n_rows * n_cols, generator=generator)[:count].sort().values
    return keys // n_cols, keys % n_cols, generator


def _operands(n_rows: int, n_cols: int, density: float, seed: int, batch: int):
    """A random CSR pattern ``(crow, cols)`` with float32 values, an input ``x`` and a gradient ``g``."""
    rows, cols, generator = _pattern(n_rows, n_cols, density, seed)
    values = torch.randn(rows.numel(), generator=generator)
    x = torch.randn(n_cols, batch, generator=generator)
    g = torch.randn(n_rows, batch, generator=generator)
    return _csr_pointers(rows, n_rows), cols, values, x, g


@needs_native
def test_native_kernels_compile_on_a_machine_with_a_compiler():
    assert native.available()


@needs_native
@settings(max_examples=60, deadline=None)
@given(n_rows=st.integers(1, 40), n_cols=st.integers(1, 40), batch=st.integers(0, 150),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), double=st.booleans(), bias=st.booleans())
def test_spmm_and_sddmm_match_the_dense_products(n_rows, n_cols, batch, density, seed, double, bias):
    # batch up to 150 covers the register-blocked chunks (64 floats / 32 doubles) and the remainder.
    dtype = torch.float64 if double else torch.float32
    rows, cols, generator = _pattern(n_rows, n_cols, density, seed)
    values = torch.randn(rows.numel(), generator=generator, dtype=dtype)
    x = torch.randn(n_cols, batch, generator=generator, dtype=dtype)
    g = torch.randn(n_rows, batch, generator=generator, dtype=dtype)
    b = torch.randn(n_rows, generator=generator, dtype=dtype) if bias else None
    dense = torch.zeros(n_rows, n_cols, dtype=dtype).index_put_((rows, cols), values)
    tolerance = dict(rtol=1e-10, atol=1e-10) if double else dict(rtol=1e-4, atol=1e-4)

    expected = dense @ x + (0 if b is None else b[:, None])
    torch.testing.assert_close(native.spmm(_csr_pointers(rows, n_rows), cols, values, x, b), expected, **tolerance)

    # The transposed product on the same CSR structure, as SparseLinear's backward uses it.
    got = native.spmm_t(_csr_pointers(rows, n_rows), cols, values, g, n_cols)
    torch.testing.assert_close(got, dense.t() @ g, **tolerance)

    got = native.sddmm(_csr_pointers(rows, n_rows), cols, g, x)
    torch.testing.assert_close(got, (g @ x.t())[rows, cols], **tolerance)


@needs_native
# one or several blocks of batch columns, with a remainder; 16 and 24 take the narrow pass of two
# registers (24: then 8 columns in scalar) that micro-batches of the extreme-scale models use
@pytest.mark.parametrize("batch", [16, 24, 70, 200])
def test_threads_give_the_same_bits_as_one_thread(batch):
    crow, cols, values, x, g = _operands(300, 200, 0.05, 0, batch)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append((native.spmm(crow, cols, values, x), native.sddmm(crow, cols, g, x),
                            native.spmm_t(crow, cols, values, g, 200)))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)  # every output element is computed by one thread in the same order


@needs_native
@pytest.mark.parametrize("batch", [1, 64, 70, 128])
def test_transposed_scatter_gives_the_bits_of_a_gather_over_the_transposed_structure(batch):
    # spmm_t sums each element in ascending row order, as a CSR gather over Wᵀ (rows sorted within each
    # column) does: SparseLinear's input gradient has the bits it had when the layer kept Wᵀ's indices.
    crow, cols, values, _, g = _operands(120, 90, 0.1, 2, batch)
    rows = torch.repeat_interleave(torch.arange(120), crow.diff())
    t_order = torch.argsort(cols * 120 + rows)
    gather = native.spmm(_csr_pointers(cols, 90), rows[t_order], values[t_order], g)
    assert torch.equal(native.spmm_t(crow, cols, values, g, 90), gather)


@needs_native
def test_sparse_linear_gives_the_same_training_step_with_either_kernel_set():
    layer = SparseLinear(50, 40, density=0.2, generator=torch.Generator().manual_seed(3))
    x = torch.randn(33, 50, generator=torch.Generator().manual_seed(4), requires_grad=True)
    grads = []
    for context in (native.disabled, lambda: warnings.catch_warnings()):
        layer.zero_grad()
        x.grad = None
        with context():
            layer(x).tanh().sum().backward()
        grads.append((x.grad.clone(), layer.values.grad.clone(), layer.bias.grad.clone()))
    for torch_kernel, native_kernel in zip(*grads):
        torch.testing.assert_close(native_kernel, torch_kernel, rtol=1e-5, atol=1e-5)


def test_disabled_switches_every_caller_to_torch():
    with native.disabled():
        assert not native.usable(torch.zeros(3))
        with native.disabled():
            assert not native.usable(torch.zeros(3))
        assert not native.usable(torch.zeros(3))
    assert native.usable(torch.zeros(3)) == native.available()


def test_usable_only_for_contiguous_cpu_float_tensors_of_one_dtype():
    assert not native.usable(torch.zeros(3, dtype=torch.float16))
    assert not native.usable(torch.zeros(3, 4).t())
    assert not native.usable(torch.zeros(3), torch.zeros(3, dtype=torch.float64))


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """Forget the loaded library and compile into an empty cache directory; restore afterwards."""
    monkeypatch.setenv("SWATLIB_KERNEL_CACHE", str(tmp_path))
    native._library.cache_clear()
    yield tmp_path
    native._library.cache_clear()


def test_missing_compiler_warns_once_and_falls_back(monkeypatch, fresh_library):
    monkeypatch.setenv("CC", "no-such-compiler-swatlib")
    with pytest.warns(RuntimeWarning, match="no C compiler 'no-such-compiler-swatlib' found"):
        assert not native.available()
    layer = SparseLinear(6, 4, density=0.5, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, and the layer still works
        assert layer(torch.randn(2, 6)).shape == (2, 4)


def test_failing_compiler_warns_and_leaves_no_file(monkeypatch, fresh_library):
    monkeypatch.setenv("CC", "false")  # exists, exits 1
    with pytest.warns(RuntimeWarning, match="compiling csr_kernels.c failed"):
        assert not native.available()
    assert list(fresh_library.iterdir()) == []  # no half-written library left behind


@needs_native
def test_compiled_library_is_cached_under_a_hashed_name(fresh_library):
    assert native.available()
    (library,) = fresh_library.iterdir()
    assert library.name.startswith("csr_kernels-") and library.suffix == ".so"
    native._library.cache_clear()
    assert native.available() and list(fresh_library.iterdir()) == [library]  # reused, not rebuilt


def test_switched_off_by_environment(monkeypatch, fresh_library):
    monkeypatch.setenv("SWATLIB_NATIVE", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not native.available()


@needs_native
def test_int32_indices_are_converted_and_give_the_same_products():
    crow, cols, values, x, g = _operands(30, 20, 0.2, 1, 70)
    as32 = [t.to(torch.int32) for t in (crow, cols)]
    assert torch.equal(native.spmm(*as32, values, x), native.spmm(crow, cols, values, x))
    assert torch.equal(native.sddmm(*as32, g, x), native.sddmm(crow, cols, g, x))
    assert torch.equal(native.spmm_t(*as32, values, g, 20), native.spmm_t(crow, cols, values, g, 20))


@needs_native
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), total=st.integers(1, 10**13), seed=st.integers(0, 10**6))
def test_sort_unique_matches_torch_unique(n, total, seed):
    keys = torch.randint(0, total, (n,), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(native.sort_unique(keys, total), torch.unique(keys))


@needs_native
def test_sort_unique_is_correct_for_uneven_keys_too():
    # Repeats, a cluster and the extremes of the range: correct, only the O(n) time assumes even keys.
    keys = torch.tensor([7, 7, 0, 10**9 - 1, 5, 6, 5, *range(100, 400)] * 3, dtype=torch.int64)
    assert torch.equal(native.sort_unique(keys, 10**9), torch.unique(keys))
