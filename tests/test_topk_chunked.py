"""Chunked Top-K, compression and decompression equal their whole-tensor definitions exactly."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swatlib.swat import compressed
from swatlib.swat.compressed import compress, pack_bits, unpack_bits
from swatlib.topk import check_chunk, kth_largest_magnitude, magnitude_mask, topk_count, topk_threshold

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4)
chunks = st.integers(1, 12).map(lambda n: 8 * n)


def _tensor(shape, seed, dtype, ties):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct magnitudes, zeros and signed zeros: ties at the threshold
        x = torch.randint(-3, 4, shape, generator=g).to(dtype)
        return torch.where(torch.rand(shape, generator=g) < 0.1, -0.0, x)
    return torch.randn(*shape, generator=g, dtype=dtype)


@settings(max_examples=50, deadline=None)
@given(shape=shapes, density=st.floats(0.01, 1.0), seed=st.integers(0, 2**16), chunk=chunks,
       dtype=st.sampled_from([torch.float32, torch.float64]), ties=st.booleans())
def test_chunked_topk_equals_whole_tensor_kthvalue(shape, density, seed, chunk, dtype, ties):
    x = _tensor(shape, seed, dtype, ties)
    magnitudes = x.abs().flatten()
    k = topk_count(x.numel(), density)
    whole = magnitudes.kthvalue(magnitudes.numel() - k + 1).values
    threshold = topk_threshold(x, density, chunk=chunk)
    assert threshold.dtype == dtype and threshold.item() == whole.item()
    mask = magnitude_mask(x, threshold, chunk=chunk)
    assert torch.equal(mask, x.abs() >= whole)               # ties kept
    assert int(mask.sum()) >= k


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_threshold_is_the_kth_largest(dtype):
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)).to(dtype)
    for k in (1, 7, 500, 1000):
        assert kth_largest_magnitude(x, k, chunk=64).item() == x.abs().float().kthvalue(1001 - k).values.item()


@settings(max_examples=40, deadline=None)
@given(shape=shapes, density=st.floats(0.01, 1.0), seed=st.integers(0, 2**16), chunk=chunks,
       index_format=st.sampled_from(["bitmap", "indices"]), ties=st.booleans())
def test_compress_by_threshold_equals_compress_by_mask(shape, density, seed, chunk, index_format, ties):
    x = _tensor(shape, seed, torch.float32, ties)
    threshold = topk_threshold(x, density)
    mask = x.abs() >= threshold
    by_threshold = compress(x, threshold, index_format, chunk=chunk)
    by_mask = compress(x, mask, index_format, chunk=chunk)
    reference = torch.masked_select(x, mask & x.ne(0))     # the nonzero kept values, in order
    for c in (by_threshold, by_mask):
        assert torch.equal(c.values, reference)
        assert torch.equal(c.decompress(), x * mask)
        assert torch.equal(c.mask(), mask & x.ne(0))
    assert torch.equal(by_threshold.index, by_mask.index)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=2, max_size=4), seed=st.integers(0, 2**16),
       index_format=st.sampled_from(["bitmap", "indices"]), step=st.integers(1, 9),
       small_chunks=st.booleans())
def test_decompressed_slices_equal_narrowed_decompression(shape, seed, index_format, step,
                                                          small_chunks, monkeypatch_module):
    monkeypatch_module.setattr(compressed, "CHUNK", 16 if small_chunks else 1 << 20)
    x = _tensor(shape, seed, torch.float32, False)
    c = compress(x, topk_threshold(x, 0.4), index_format, chunk=8)
    dense = c.decompress()
    positions = torch.arange(x.numel() + 1)
    assert torch.equal(c.values_before(positions),
                       torch.cat([torch.zeros(1, dtype=torch.int64), dense.flatten().ne(0).cumsum(0)]))
    for dim in (1, len(shape) - 1):
        bounds = [(s, min(s + step, shape[dim])) for s in range(0, shape[dim], step)]
        for (start, stop), block in zip(bounds, c.decompress_slices(dim, bounds)):
            assert torch.equal(block, dense.narrow(dim, start, stop - start))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_bits_round_trip_across_chunks():
    mask = torch.rand(1001, generator=torch.Generator().manual_seed(0)) < 0.3
    packed = pack_bits(mask)
    assert packed.numel() == 126
    assert torch.equal(unpack_bits(packed, 1001, chunk=16), mask)


@pytest.mark.parametrize("bad", [0, 7, 12, -8, 8.0, True])
def test_bad_chunk_names_the_argument(bad):
    with pytest.raises(ValueError, match="chunk"):
        check_chunk(bad)
