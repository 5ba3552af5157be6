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

A :class:`CompressedTensor` is a plain record of tensors; an autograd Function saves its
:attr:`~CompressedTensor.parts` with ``ctx.save_for_backward`` so that saved-tensor hooks (and
:mod:`swatlib.swat.memory`) see the real bytes, and rebuilds it with
:meth:`CompressedTensor.from_parts` in the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["INDEX_FORMATS", "ROLES", "ROLE_ATTRIBUTE", "CompressedTensor", "compress",
           "pack_bits", "unpack_bits", "check_index_format"]

#: Index formats of a :class:`CompressedTensor`.
INDEX_FORMATS = ("bitmap", "indices")
#: What a compressed tensor holds, for memory accounting: an activation or a weight.
ROLES = ("activation", "weight")
#: Name of the tensor attribute that carries the role to saved-tensor hooks.
ROLE_ATTRIBUTE = "_swat_role"

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def check_index_format(index_format: str) -> str:
    """Return ``index_format`` if it is one of :data:`INDEX_FORMATS`; else a ValueError naming it."""
    if index_format not in INDEX_FORMATS:
        raise ValueError(f"index_format must be one of {INDEX_FORMATS}, got {index_format!r}")
    return index_format


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Pack a boolean tensor into ``ceil(numel / 8)`` bytes, eight elements per ``uint8`` (LSB first)."""
    flat = mask.reshape(-1).to(torch.bool)
    padding = (-flat.numel()) % 8
    if padding:
        flat = torch.cat([flat, flat.new_zeros(padding)])
    weights = _BIT_WEIGHTS.to(flat.device)
    return (flat.view(torch.uint8).view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: a flat boolean tensor of ``numel`` elements."""
    weights = _BIT_WEIGHTS.to(packed.device)
    return (packed.unsqueeze(1) & weights).ne(0).reshape(-1)[:numel]


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
        flat[self.index.long()] = True
        return flat.view(self.shape)

    def decompress(self) -> torch.Tensor:
        """The dense tensor: stored values at their positions, zeros elsewhere."""
        dense = self.values.new_zeros(self.numel)
        if self.index_format == "bitmap":
            dense.masked_scatter_(unpack_bits(self.index, self.numel), self.values)
        else:
            dense[self.index.long()] = self.values
        return dense.view(self.shape)


def compress(x: torch.Tensor, mask: torch.Tensor, index_format: str = "bitmap", *,
             role: str = "activation") -> CompressedTensor:
    """Store the nonzero entries of ``x`` where ``mask`` holds.

    Parameters
    ----------
    x : torch.Tensor
        Dense tensor (detached inside).
    mask : torch.Tensor
        Boolean tensor of the same shape (e.g. from :class:`~swatlib.swat.topk_state.TopK`).
    index_format : {"bitmap", "indices"}
        See the module docstring.
    role : {"activation", "weight"}
        Tagged on the stored tensors (attribute ``_swat_role``) so that
        :class:`~swatlib.swat.memory.SavedTensorMeter` can split the bytes.

    Returns
    -------
    CompressedTensor
        ``decompress()`` equals ``x * mask``.

    Raises
    ------
    ValueError
        For an unknown ``index_format`` or ``role``, or shapes that differ.
    """
    check_index_format(index_format)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from x shape {tuple(x.shape)}")
    x = x.detach()
    keep = mask.reshape(-1)
    values = torch.masked_select(x.reshape(-1), keep)
    if values.numel() and not bool(values.all()):   # zeros kept (threshold 0): don't store them
        keep = keep & x.reshape(-1).ne(0)
        values = torch.masked_select(x.reshape(-1), keep)
    if index_format == "bitmap":
        index = pack_bits(keep)
    else:
        dtype = torch.int32 if x.numel() < 2**31 else torch.int64
        index = keep.nonzero().reshape(-1).to(dtype)
    for part in (values, index):
        setattr(part, ROLE_ATTRIBUTE, role)
    return CompressedTensor(values, index, x.shape, index_format)
