"""A toy BERT (SPEC §8, seed 002): pre-LN encoder blocks and a masked-language-model head.

``ToyBERT`` maps token ids ``(batch, seq)`` to logits. Its attention has explicit ``q``, ``k``, ``v``
and ``out`` :class:`torch.nn.Linear` layers around :func:`torch.nn.functional.scaled_dot_product_attention`
(``nn.MultiheadAttention`` keeps a bare ``in_proj_weight`` and bypasses ``out_proj.forward``, so layer
swapping and FLOP hooks would miss them); the feed-forward is ``fc2(GELU(fc1(x)))``. Each block is
pre-LN: ``x + attn(LN(x))`` then ``x + ffn(LN(x))``, and a final LayerNorm precedes the MLM decoder.

The input embedding is **frozen** — in the study it is the "self-pre-trained (PPMI-SVD on the same
corpus)" embedding (:func:`swatlib.data.wordnet.ppmi_svd_embedding`) — and the decoder is a separate,
trainable ``nn.Linear`` (untied: tied to the frozen embedding it learnt worse). Positions have a
learnt embedding. The decoder is applied only where asked (``positions``), because the MLM loss
needs the masked positions only and the decoder is the largest matrix of the model.

The sparsifiable layers are the encoder's linears (:meth:`ToyBERT.encoder_linears`);
:func:`sparsify` turns them into truly sparse :class:`~swatlib.sparse.SparseLinear` layers or masks them
with :class:`~swatlib.sparse.MaskedWeight`, from one random topology, so both kinds start from the same
weights — or into SWAT layers (:class:`~swatlib.swat.SWATLinear`, dense weights, Top-K per step).
:class:`MaskedLM` is the training task for :func:`swatlib.train.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from swatlib.checks import check_choice, check_choices, check_int
from swatlib.densities import check_density
from swatlib.sparse import MaskedWeight, SparseLinear, random_mask

__all__ = ["ENCODER_LINEARS", "Attention", "EncoderBlock", "MaskedLM", "ToyBERT", "mask_tokens", "sparsify"]

#: The linear layers of one encoder block, in forward order.
ENCODER_LINEARS = ("attn.q", "attn.k", "attn.v", "attn.out", "fc1", "fc2")
#: Which of them belong to the attention and which to the feed-forward.
ATTENTION_LINEARS = ENCODER_LINEARS[:4]
FFN_LINEARS = ENCODER_LINEARS[4:]


class Attention(nn.Module):
    """Multi-head self-attention with explicit ``q``, ``k``, ``v``, ``out`` linears (no masking)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads must divide width={width}, got heads={heads}")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (proj(x).view(b, t, self.heads, c // self.heads).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))``, then ``x + fc2(GELU(fc1(LN(x))))``."""

    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.fc1, self.fc2 = nn.Linear(width, ffn), nn.Linear(ffn, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ToyBERT(nn.Module):
    """Pre-LN encoder with a frozen input embedding and an untied MLM decoder (module docstring).

    Parameters
    ----------
    vocab_size
        Tokens of the tokenizer the model is trained with.
    width, depth, heads, ffn
        Model width, encoder blocks, attention heads (must divide ``width``), feed-forward width.
    max_seq
        Longest sequence (positions with an embedding).
    embedding
        ``vocab_size × width`` initial input embedding, kept frozen; ``None``: a frozen N(0, 1) draw.
    generator
        Randomness of every initialisation (the trainable layers use torch's default schemes).

    Raises
    ------
    ValueError
        For a non-positive size, ``heads`` not dividing ``width``, or an embedding of the wrong shape.
    """

    def __init__(self, vocab_size: int, *, width: int = 128, depth: int = 2, heads: int = 4, ffn: int = 512,
                 max_seq: int = 64, embedding: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("width", width), ("depth", depth), ("heads", heads),
                            ("ffn", ffn), ("max_seq", max_seq)):
            check_int(value, name)
        if width % heads:
            raise ValueError(f"heads must divide width={width}, got heads={heads}")
        if embedding is not None and tuple(embedding.shape) != (vocab_size, width):
            raise ValueError(f"embedding must have shape (vocab_size, width) = ({vocab_size}, {width}), "
                             f"got {tuple(embedding.shape)}")
        self.vocab_size, self.width, self.max_seq = vocab_size, width, max_seq
        self.embed = nn.Embedding(vocab_size, width)
        self.embed.weight.requires_grad_(False)
        self.position = nn.Parameter(torch.empty(max_seq, width))
        self.blocks = nn.ModuleList(EncoderBlock(width, heads, ffn) for _ in range(depth))
        self.ln = nn.LayerNorm(width)
        self.decoder = nn.Linear(width, vocab_size)
        self._init(embedding, generator)

    @torch.no_grad()
    def _init(self, embedding: torch.Tensor | None, generator: torch.Generator | None) -> None:
        """torch's default init of every linear, drawn from ``generator``; positions N(0, 0.02²)."""
        if embedding is None:
            self.embed.weight.normal_(generator=generator)
        else:
            self.embed.weight.copy_(embedding)
        self.position.normal_(0.0, 0.02, generator=generator)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)      # = kaiming_uniform(a=√5) of nn.Linear
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(batch, seq, width)`` after the final LayerNorm.

        Raises
        ------
        ValueError
            If ``tokens`` is not ``(batch, seq)`` int64 ids with ``seq <= max_seq`` and ids below
            ``vocab_size``.
        """
        if tokens.dim() != 2 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens must be a (batch, seq) int64 tensor, got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_seq:
            raise ValueError(f"tokens has seq={tokens.shape[1]} > max_seq={self.max_seq}: build the model with "
                             f"a larger max_seq or cut the sequences")
        if tokens.numel() and (int(tokens.max()) >= self.vocab_size or int(tokens.min()) < 0):
            raise ValueError(f"tokens holds ids outside [0, vocab_size={self.vocab_size}): the tokenizer's "
                             f"vocabulary differs from the model's vocab_size")
        x = self.embed(tokens) + self.position[:tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln(x)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: ``(batch, seq, vocab)``, or ``(n, vocab)`` at the ``n`` True entries of the boolean
        ``(batch, seq)`` mask ``positions`` (row-major order)."""
        hidden = self.encode(tokens)
        if positions is not None:
            hidden = hidden[positions]
        return self.decoder(hidden)

    def encoder_linears(self, which: str = "all") -> dict[str, nn.Module]:
        """The sparsifiable layers by qualified name, in forward order.

        Parameters
        ----------
        which
            ``"all"`` (every encoder linear), ``"ffn"`` (``fc1``, ``fc2``) or ``"attention"``.
        """
        names = {"all": ENCODER_LINEARS, "ffn": FFN_LINEARS, "attention": ATTENTION_LINEARS}
        check_choice(which, names, "which")
        return {f"blocks.{i}.{name}": block.get_submodule(name)
                for i, block in enumerate(self.blocks) for name in names[which]}


def sparsify(model: ToyBERT, densities: Mapping[str, float], *, kind: str = "sparse",
             generator: torch.Generator | None = None) -> list:
    """Make some encoder linears sparse, each from a uniformly random topology of its density.

    Parameters
    ----------
    model
        The model (changed in place).
    densities
        Qualified layer name (from :meth:`ToyBERT.encoder_linears`) → density in (0, 1].
    kind
        ``"sparse"``: replace the layer by a truly sparse :class:`~swatlib.sparse.SparseLinear` holding the
        kept weights; ``"masked"``: keep the ``nn.Linear`` and mask it (:class:`~swatlib.sparse.MaskedWeight`).
        Both draw the same mask from an equal generator, so they start from identical weights.
        ``"swat"``: no fixed topology — the layer becomes a :class:`~swatlib.swat.SWATLinear` sharing
        the dense weight (SWAT, SPEC §5: Top-K weights forward, Top-K weights and activations
        backward at the density, every weight updated); the generator is not used.
    generator
        Randomness of the topologies.

    Returns
    -------
    list
        The topology layers (``SparseLinear`` or ``MaskedWeight``), in forward order, for
        :mod:`swatlib.topology`; for ``"swat"`` the SWAT layers (no topology algorithm applies).

    Raises
    ------
    ValueError
        For an unknown kind or layer name, or a density outside (0, 1].
    """
    check_choice(kind, ("sparse", "masked", "swat"), "kind")
    linears = model.encoder_linears()
    check_choices(densities, linears, "the layers of densities")
    if kind == "swat":
        from swatlib.swat import name_swat_layers, swat_layer  # swatlib.swat imports the models
    layers = []
    for name, linear in linears.items():
        if name not in densities:
            continue
        density = check_density(densities[name], f"densities[{name!r}]")
        if kind == "swat":
            replacement = swat_layer(linear, density=density)
        else:
            mask = random_mask(linear.weight.shape, density, generator, linear.weight.device)
            if kind == "masked":
                layers.append(MaskedWeight(linear, mask=mask))
                continue
            with torch.no_grad():
                linear.weight.mul_(mask)
                linear.weight[mask & (linear.weight == 0)] = torch.finfo(linear.weight.dtype).tiny
            replacement = SparseLinear.from_dense(linear)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, replacement)
        layers.append(replacement)
    if kind == "swat":
        name_swat_layers(model)
    return layers


def mask_tokens(tokens: torch.Tensor, vocab_size: int, mask_id: int, generator: torch.Generator, *,
                rate: float = 0.15, first_regular: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: pick ``rate`` of the positions; of those 80 % → ``[MASK]``, 10 % → a random
    regular token (ids ``first_regular … vocab_size-1``), 10 % kept.

    Every sequence gets at least one picked position, so a batch always has a loss.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The corrupted tokens and the boolean ``(batch, seq)`` mask of picked positions.
    """
    u = torch.rand(tokens.shape, generator=generator)
    picked = u < rate
    first = torch.argmin(u, dim=1)
    picked[torch.arange(len(tokens)), first] = True
    action = torch.rand(tokens.shape, generator=generator)
    random_ids = torch.randint(first_regular, vocab_size, tokens.shape, generator=generator)
    corrupted = tokens.clone()
    corrupted[picked & (action < 0.8)] = mask_id
    swap = picked & (action >= 0.8) & (action < 0.9)
    corrupted[swap] = random_ids[swap]
    return corrupted, picked


class MaskedLM:
    """The masked-language-model task for :func:`swatlib.train.fit`.

    One "epoch" of :func:`~swatlib.train.fit` is ``steps_per_epoch`` training steps (the evaluation
    interval), each on ``batch_size`` windows drawn without replacement from a permutation of the
    training windows (a new permutation whenever one is used up) and masked afresh
    (:func:`mask_tokens`). The loss is the cross-entropy at the picked positions only. The held-out
    windows are masked once, from ``eval_seed``, so every evaluation of every run scores the same
    positions (paired comparisons).

    Parameters
    ----------
    train, held_out
        ``(n, seq)`` int64 windows (:func:`swatlib.data.wordnet.pack`).
    vocab_size, mask_id
        The tokenizer's vocabulary size and ``[MASK]`` id.
    steps_per_epoch
        Training steps between evaluations.
    eval_seed
        Seed of the fixed held-out masks.
    rate
        Fraction of positions picked.

    Raises
    ------
    ValueError
        On a non-positive size, a rate outside (0, 1), or token ids outside the vocabulary.
    """

    def __init__(self, train: torch.Tensor, held_out: torch.Tensor, *, vocab_size: int, mask_id: int,
                 steps_per_epoch: int = 100, eval_seed: int = 0, rate: float = 0.15) -> None:
        check_int(vocab_size, "vocab_size")
        check_int(steps_per_epoch, "steps_per_epoch")
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must lie in (0, 1), got {rate!r}")
        for name, windows in (("train", train), ("held_out", held_out)):
            if windows.dim() != 2 or len(windows) == 0:
                raise ValueError(f"{name} must be a non-empty (n, seq) tensor of token ids")
            if int(windows.max()) >= vocab_size:
                raise ValueError(f"{name} holds ids >= vocab_size={vocab_size}: the tokenizer's vocabulary "
                                 f"differs from vocab_size")
        self.train, self.held_out = train, held_out
        self.vocab_size, self.mask_id, self.rate = vocab_size, mask_id, rate
        self.steps_per_epoch = steps_per_epoch
        self.picked = 0
        self._order = torch.empty(0, dtype=torch.int64)
        self.eval_tokens, self.eval_positions = mask_tokens(
            held_out, vocab_size, mask_id, torch.Generator().manual_seed(eval_seed), rate=rate)

    def _next(self, count: int, generator: torch.Generator) -> torch.Tensor:
        if len(self._order) < count:
            self._order = torch.cat([self._order, torch.randperm(len(self.train), generator=generator)])
        chosen, self._order = self._order[:count], self._order[count:]
        return chosen

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """``steps_per_epoch`` batches ``(corrupted, positions, targets)``."""
        for _ in range(self.steps_per_epoch):
            tokens = self.train[self._next(batch_size, generator)]
            corrupted, positions = mask_tokens(tokens, self.vocab_size, self.mask_id, generator, rate=self.rate)
            self.picked += int(positions.sum())
            yield corrupted, positions, tokens[positions]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Mean cross-entropy at the picked positions."""
        corrupted, positions, targets = batch
        return F.cross_entropy(model(corrupted, positions), targets)

    def examples(self, batch: tuple[torch.Tensor, ...]) -> int:
        """Sequences in the batch."""
        return len(batch[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batch_size: int = 256) -> dict[str, float]:
        """``test_loss``: mean cross-entropy over every picked held-out position, in eval mode."""
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for start in range(0, len(self.eval_tokens), batch_size):
            tokens = self.eval_tokens[start:start + batch_size]
            positions = self.eval_positions[start:start + batch_size]
            targets = self.held_out[start:start + batch_size][positions]
            total += F.cross_entropy(model(tokens, positions), targets, reduction="sum").item()
            count += len(targets)
        model.train(was_training)
        return {"test_loss": total / count}
