"""Compressed tensors saved for the backward pass: the kept values plus a bitmap or flat indices.

SWAT's memory saving (SPEC §5) comes from what a layer *keeps* between its forward and its
backward pass: ``X_s = TopK(X)`` and ``W_s = TopK(W)`` instead of the dense tensors. A Top-K
tensor stored densely, with zeros, saves nothing, so SWAT layers store it compressed:

* ``"bitmap"`` — the nonzero values, plus one bit per dense element packed eight to a
  ``uint8`` (``numel / 8`` bytes; the cheaper index above a density of 1/32 with int32 indices);
* ``"indices"`` — the nonzero values, plus their flat positions as ``int32`` (``int64`` for a
  tensor of 2³¹ elements or more).

Only the *nonzero* kept entries are stored: when the Top-K threshold is 0 (the tensor has fewer
nonzeros than ``k``, e.g. after a ReLU), the zeros it "keeps" cost nothing.
:meth:`CompressedTensor.decompress` returns ``x·mask`` exactly.

Compression, decompression and bit packing run chunk by chunk (:data:`swatlib.topk.CHUNK`
elements): beyond their result, they never allocate a tensor of the dense size — no dense
boolean mask, no int64 position per element — so the peak memory of a training step is not
raised by the very step that is meant to save memory. :func:`compress` takes the Top-K either as
a mask or as its threshold θ (``|x| >= θ``, tested chunk by chunk).

A :class:`CompressedTensor` is a plain record of tensors; an autograd Function saves its
:attr:`~CompressedTensor.parts` with ``ctx.save_for_backward`` so that saved-tensor hooks (and
:mod:`swatlib.swat.memory`) see the real bytes, and rebuilds it with
:meth:`CompressedTensor.from_parts` in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from swatlib.checks import check_choice
from swatlib.topk import CHUNK, check_chunk

__all__ = ["INDEX_FORMATS", "ROLES", "ROLE_ATTRIBUTE", "CompressedTensor", "compress",
           "pack_bits", "pack_where", "unpack_bits", "masked_multiply"]

#: Index formats of a :class:`CompressedTensor`.
INDEX_FORMATS = ("bitmap", "indices")
#: What a compressed tensor holds, for memory accounting: an activation or a weight.
ROLES = ("activation", "weight")
#: Name of the tensor attribute that carries the role to saved-tensor hooks.
ROLE_ATTRIBUTE = "_swat_role"

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def _pack_chunk(mask: torch.Tensor, out: torch.Tensor) -> None:
    """Pack a boolean chunk (length a multiple of 8, or the last chunk) into ``out``."""
    padding = (-mask.numel()) % 8
    if padding:
        mask = torch.cat([mask, mask.new_zeros(padding)])
    weights = _BIT_WEIGHTS.to(mask.device)
    torch.sum(mask.view(torch.uint8).view(-1, 8) * weights, dim=1, dtype=torch.uint8, out=out)


def pack_where(x: torch.Tensor, keep: Callable[[torch.Tensor, int], torch.Tensor], *,
               chunk: int = CHUNK) -> tuple[torch.Tensor, list[int]]:
    """Pack ``keep(x)`` into a bitmap chunk by chunk, never holding the whole boolean tensor.

    Parameters
    ----------
    x : torch.Tensor
        Read flat, ``chunk`` elements at a time.
    keep : callable
        ``(chunk of x, its flat start) -> boolean tensor of the chunk's length``.
    chunk : int
        A multiple of 8 (:data:`swatlib.topk.CHUNK`).

    Returns
    -------
    packed : torch.Tensor
        ``uint8``, ``ceil(numel / 8)`` bytes (LSB first), as :func:`pack_bits`.
    counts : list of int
        True entries per chunk.
    """
    check_chunk(chunk)
    flat = x.detach().reshape(-1)
    packed = torch.empty((flat.numel() + 7) // 8, dtype=torch.uint8, device=x.device)
    counts = []
    for start in range(0, flat.numel(), chunk):
        kept = keep(flat[start:start + chunk], start)
        counts.append(int(kept.sum()))
        _pack_chunk(kept, packed[start // 8:(start + chunk) // 8])
    return packed, counts


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Pack a boolean tensor into ``ceil(numel / 8)`` bytes, eight elements per ``uint8`` (LSB first)."""
    return pack_where(mask.to(torch.bool), lambda kept, _: kept)[0]


def _unpack_chunk(packed: torch.Tensor, numel: int, skip: int = 0) -> torch.Tensor:
    """Bits ``skip .. skip + numel`` of ``packed`` as booleans."""
    weights = _BIT_WEIGHTS.to(packed.device)
    return (packed.unsqueeze(1) & weights).ne(0).reshape(-1)[skip:skip + numel]


#: Set bits of every byte value.
_POPCOUNT = torch.tensor([bin(byte).count("1") for byte in range(256)], dtype=torch.int64)


def unpack_bits(packed: torch.Tensor, numel: int, *, chunk: int = CHUNK) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: a flat boolean tensor of ``numel`` elements."""
    check_chunk(chunk)
    out = torch.empty(numel, dtype=torch.bool, device=packed.device)
    for start in range(0, numel, chunk):
        stop = min(start + chunk, numel)
        out[start:stop] = _unpack_chunk(packed[start // 8:(stop + 7) // 8], stop - start)
    return out


def masked_multiply(x: torch.Tensor, packed: torch.Tensor, *, chunk: int = CHUNK) -> torch.Tensor:
    """``x * mask`` for the bitmap ``packed`` of a mask of ``x``'s shape, unpacked chunk by chunk."""
    check_chunk(chunk)
    flat = x.reshape(-1)
    out = torch.empty_like(flat)
    for start in range(0, flat.numel(), chunk):
        stop = min(start + chunk, flat.numel())
        torch.mul(flat[start:stop], _unpack_chunk(packed[start // 8:(stop + 7) // 8], stop - start),
                  out=out[start:stop])
    return out.view(x.shape)


@dataclass(frozen=True)
class CompressedTensor:
    """The nonzero kept entries of a tensor, with a bitmap or flat indices.

    Attributes
    ----------
    values : torch.Tensor
        1-D, the stored entries in flat (row-major) order, dtype of the original tensor.
    index : torch.Tensor
        ``uint8`` packed bitmap (``"bitmap"``) or ``int32`` / ``int64`` flat positions
        (``"indices"``).
    shape : torch.Size
        Shape of the dense tensor.
    index_format : str
        One of :data:`INDEX_FORMATS`.
    """

    values: torch.Tensor
    index: torch.Tensor
    shape: torch.Size
    index_format: str

    @property
    def nnz(self) -> int:
        """Stored values."""
        return self.values.numel()

    @property
    def numel(self) -> int:
        """Elements of the dense tensor."""
        return self.shape.numel()

    @property
    def nbytes(self) -> int:
        """Real bytes held: values plus index."""
        return self.values.nbytes + self.index.nbytes

    @property
    def parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, index)``: the tensors to pass to ``ctx.save_for_backward``."""
        return self.values, self.index

    @classmethod
    def from_parts(cls, parts: tuple[torch.Tensor, ...], shape: torch.Size,
                   index_format: str) -> CompressedTensor:
        """Rebuild from :attr:`parts` (e.g. ``ctx.saved_tensors``) and the recorded shape and format."""
        values, index = parts
        return cls(values, index, shape, index_format)

    def mask(self) -> torch.Tensor:
        """Boolean tensor of :attr:`shape`: where the stored values go."""
        if self.index_format == "bitmap":
            return unpack_bits(self.index, self.numel).view(self.shape)
        flat = torch.zeros(self.numel, dtype=torch.bool, device=self.values.device)
        for start in range(0, self.nnz, CHUNK):
            flat[self.index[start:start + CHUNK].long()] = True
        return flat.view(self.shape)

    def decompress(self) -> torch.Tensor:
        """The dense tensor: stored values at their positions, zeros elsewhere.

        Built chunk by chunk: beyond the dense result, the temporaries are one chunk's mask or
        int64 positions (:data:`swatlib.topk.CHUNK` elements).
        """
        dense = self.values.new_zeros(self.numel)
        offset = 0
        if self.index_format == "bitmap":
            for start in range(0, self.numel, CHUNK):
                stop = min(start + CHUNK, self.numel)
                kept = _unpack_chunk(self.index[start // 8:(stop + 7) // 8], stop - start)
                count = int(kept.sum())
                dense[start:stop].masked_scatter_(kept, self.values[offset:offset + count])
                offset += count
        else:
            for start in range(0, self.nnz, CHUNK):
                dense[self.index[start:start + CHUNK].long()] = self.values[start:start + CHUNK]
        return dense.view(self.shape)


    def values_before(self, positions: torch.Tensor) -> torch.Tensor:
        """How many stored values precede each flat position (int64, positions sorted or not).

        Read from the bitmap chunk by chunk (byte population counts) or by a binary search of
        the indices: no tensor of the dense size.
        """
        positions = positions.to(torch.int64)
        if self.index_format == "indices":
            return torch.searchsorted(self.index, positions.to(self.index.dtype))
        out = torch.full_like(positions, self.nnz)  # a position at the end: every value
        byte, bit = positions // 8, positions % 8
        popcount = _POPCOUNT.to(self.index.device)
        before, step = 0, CHUNK // 8
        for start in range(0, self.index.numel(), step):
            chunk = self.index[start:start + step].long()
            counts = popcount[chunk]
            exclusive = counts.cumsum(0) - counts + before
            here = (byte >= start) & (byte < start + chunk.numel())
            local = byte[here] - start
            partial = popcount[chunk[local] & ((1 << bit[here]) - 1)]
            out[here] = exclusive[local] + partial
            before += int(counts.sum())
        return out

    def decompress_slices(self, dim: int,
                          bounds: list[tuple[int, int]]) -> Iterator[torch.Tensor]:
        """``decompress().narrow(dim, start, stop - start)`` for each ``(start, stop)``, in turn.

        What the chunked backward pass reads: blocks of input channels (``dim=1``) of a
        convolution's input, or of input features (the last dim) of a linear layer's input,
        without the whole dense tensor. Temporaries: the block, its mask and the positions of
        its values.
        """
        shape = self.shape
        outer, inner = shape[:dim].numel(), shape[dim + 1:].numel()
        device = self.values.device
        rows = torch.arange(outer, dtype=torch.int64, device=device) * shape[dim]
        firsts = torch.stack([(rows + start) * inner for start, _ in bounds])
        lasts = torch.stack([(rows + stop) * inner for _, stop in bounds])
        before = self.values_before(torch.cat([firsts.reshape(-1), lasts.reshape(-1)]))
        before = before.view(2, len(bounds), outer)
        aligned_rows = (shape[dim] * inner) % 8 == 0
        for block, (start, stop) in enumerate(bounds):
            whole_rows = start == 0 and stop == shape[dim]  # then row r's values end where r + 1's begin
            width = (stop - start) * inner
            lo, hi = before[0, block].tolist(), before[1, block].tolist()
            block_firsts = firsts[block].tolist()
            out = self.values.new_zeros(outer, width)
            group = max(1, CHUNK // width)  # rows filled at a time: temporaries of a chunk
            for r0 in range(0, outer, group):
                r1 = min(r0 + group, outer)
                values = (self.values[lo[r0]:hi[r1 - 1]] if whole_rows
                          else torch.cat([self.values[lo[r]:hi[r]] for r in range(r0, r1)]))
                if self.index_format == "indices":
                    lengths = torch.tensor([hi[r] - lo[r] for r in range(r0, r1)], device=device)
                    row = torch.repeat_interleave(torch.arange(r0, r1, device=device), lengths)
                    position = torch.cat([self.index[lo[r]:hi[r]] for r in range(r0, r1)])
                    out[row, position.long() - firsts[block][row]] = values
                elif aligned_rows and (start * inner) % 8 == 0:
                    # every row starts on a byte: unpack the group's rows at once
                    nbytes = (width + 7) // 8
                    first_byte = (firsts[block][r0:r1] >> 3).unsqueeze(1)
                    packed = self.index[first_byte + torch.arange(nbytes, device=device)]
                    kept = _unpack_chunk(packed.reshape(-1), (r1 - r0) * nbytes * 8)
                    out[r0:r1].masked_scatter_(kept.view(r1 - r0, -1)[:, :width], values)
                else:
                    for r in range(r0, r1):
                        first = block_firsts[r]
                        kept = _unpack_chunk(self.index[first // 8:(first + width + 7) // 8],
                                             width, first % 8)
                        out[r].masked_scatter_(kept, self.values[lo[r]:hi[r]])
            yield out.view(*shape[:dim], stop - start, *shape[dim + 1:])


def compress(x: torch.Tensor, keep: torch.Tensor, index_format: str = "bitmap", *,
             role: str = "activation", chunk: int = CHUNK) -> CompressedTensor:
    """Store the nonzero entries of ``x`` that ``keep`` selects, chunk by chunk.

    Parameters
    ----------
    x : torch.Tensor
        Dense tensor (detached inside).
    keep : torch.Tensor
        A boolean mask of ``x``'s shape (e.g. from :class:`~swatlib.swat.topk_state.TopK`),
        or a 0-d magnitude threshold θ: keep ``|x| >= θ`` (Top-K without a dense mask).
    index_format : {"bitmap", "indices"}
        See the module docstring.
    role : {"activation", "weight"}
        Tagged on the stored tensors (attribute ``_swat_role``) so that
        :class:`~swatlib.swat.memory.SavedTensorMeter` can split the bytes.
    chunk : int
        Elements processed at a time (:data:`swatlib.topk.CHUNK`): the temporaries beyond the
        result are a chunk's mask, values and positions, never a tensor of ``x``'s size.

    Returns
    -------
    CompressedTensor
        ``decompress()`` equals ``x * mask`` (``mask = |x| >= θ`` for a threshold).

    Raises
    ------
    ValueError
        For an unknown ``index_format`` or ``role``, or shapes that differ.
    """
    check_choice(index_format, INDEX_FORMATS, "index_format")
    check_choice(role, ROLES, "role")
    threshold = keep.dim() == 0 and keep.dtype != torch.bool
    if not threshold and keep.shape != x.shape:
        raise ValueError(f"mask shape {tuple(keep.shape)} differs from x shape {tuple(x.shape)}")
    flat = x.detach().reshape(-1)
    mask = None if threshold else keep.reshape(-1)

    def kept(values: torch.Tensor, start: int) -> torch.Tensor:
        # Zeros "kept" (threshold 0, e.g. after a ReLU) cost nothing: they are not stored.
        selected = (values.abs() >= keep) if mask is None else mask[start:start + values.numel()]
        return selected & values.ne(0)

    bitmap, counts = pack_where(flat, kept, chunk=chunk)
    values = flat.new_empty(sum(counts))
    positions = None
    if index_format == "indices":
        positions = torch.empty(sum(counts), device=x.device,
                                dtype=torch.int32 if x.numel() < 2**31 else torch.int64)
    offset = 0
    for start, count in zip(range(0, flat.numel(), chunk), counts):
        stop = min(start + chunk, flat.numel())
        chosen = _unpack_chunk(bitmap[start // 8:(stop + 7) // 8], stop - start)
        torch.masked_select(flat[start:stop], chosen, out=values[offset:offset + count])
        if positions is not None:
            positions[offset:offset + count] = chosen.nonzero().reshape(-1) + start
        offset += count
    index = bitmap if positions is None else positions
    for part in (values, index):
        setattr(part, ROLE_ATTRIBUTE, role)
    return CompressedTensor(values, index, x.shape, index_format)
