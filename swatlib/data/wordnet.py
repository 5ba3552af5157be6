"""WordNet 3.0 glosses: the text corpus of the toy-BERT study (SPEC §8, seed 002).

Every synset line of WordNet's four data files (``data.noun``, ``data.verb``, ``data.adj``,
``data.adv``) ends with ``| gloss``: a definition, often followed by quoted examples. Those glosses
(≈ 118 k, 8.9 MB, 1.5 M words) are the corpus. Debian's ``wordnet-base`` package installs the files in
``/usr/share/wordnet`` (:data:`SYSTEM_DIR`); a user's copy of the WordNet 3.0 ``dict/`` files can
instead live in ``wordnet/`` under any data directory (:func:`swatlib.data.data_dirs`), which is
searched first. The files' licence header (lines starting with two spaces) is skipped.

Each file's sha256 is checked against :data:`SHA256` (Debian's ``wordnet-base`` 3.0 files; a copy
that differs in a byte fails, naming the file), and the corpus is identified by
:attr:`WordNetCorpus.digest`, a hash of those four digests, under which derived artefacts (the
tokenizer, the embedding) are cached.

The train / held-out split is by gloss and deterministic: a gloss is held out when the first eight
bytes of its sha256, read as an integer, fall below ``held_out_fraction · 2⁶⁴``. It depends on
neither the file order nor a random seed, and a gloss that occurs twice lands on one side only.

From text to model input: :func:`train_tokenizer` (sentencepiece unigram, trained on the training
glosses, cached under the corpus digest), :func:`encode` and :func:`pack` (fixed-length windows),
:func:`unigram_entropy` (the loss of a context-free model, the bar an MLM must clear) and
:func:`ppmi_svd_embedding`, the frozen input embedding labelled :data:`EMBEDDING_LABEL`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from swatlib.data import _files
from swatlib.checks import check_int
from swatlib.data.errors import CorruptDataError, DatasetNotFoundError

NAME = "WordNet 3.0 glosses"
SUBDIR = "wordnet"
FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
APT_PACKAGE = "wordnet-base"
#: Where Debian's ``wordnet-base`` installs the dict files (read at call time, so tests can patch it).
SYSTEM_DIR = Path("/usr/share/wordnet")

#: sha256 of each data file as Debian's ``wordnet-base`` (WordNet 3.0) installs it. Read at call
#: time, so a test can monkeypatch it to accept tiny files in the same format.
SHA256 = {
    "data.noun": "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2",
    "data.verb": "adcf43e35b581e8036d8b5a52d63d9cd3d3b4870b2720d3c03c799df44777bc2",
    "data.adj": "c89120dfc1f046ddff4a631bf9b7e9fa1a36b5e86565a23bf82dbe14f30b88a7",
    "data.adv": "444a63bf3955080ab7524f5079cfc07ff9bc682cb98bdb1db73b0fb9829f1139",
}

ENSURE_COMMAND = "make data"
NOT_FOUND_FIX = (
    f"run `{ENSURE_COMMAND}` (or `sudo apt-get install {APT_PACKAGE}`), or copy WordNet 3.0's "
    f"dict/ files {', '.join(FILES)} into {SUBDIR}/ under a directory listed in SWATLIB_DATA"
)


@dataclass(frozen=True)
class WordNetCorpus:
    """The glosses, split by gloss into training and held-out text.

    Attributes
    ----------
    train, held_out : tuple of str
        Glosses in file order (noun, verb, adj, adv; synset order within a file).
    digest : str
        sha256 over the four files' digests: identifies the corpus in cache keys.
    source : str
        The directory the files were read from.
    held_out_fraction : float
        The fraction the split aimed at.
    """

    train: tuple[str, ...]
    held_out: tuple[str, ...]
    digest: str
    source: str
    held_out_fraction: float


def find_wordnet() -> Path | None:
    """The first directory holding the four data files: ``wordnet/`` in a data directory, else
    :data:`SYSTEM_DIR`; None if neither."""
    found = _files.find_dir(SUBDIR, FILES)
    if found is None and all((SYSTEM_DIR / name).is_file() for name in FILES):
        found = SYSTEM_DIR
    return found


def repair_hint(path: Path) -> str:
    """The command that replaces a damaged copy of ``path``, depending on where it lives."""
    if path.is_relative_to(SYSTEM_DIR):
        return f"reinstall it with `sudo apt-get install --reinstall {APT_PACKAGE}`"
    return f"replace {path} with WordNet 3.0's dict/{path.name} (as Debian's {APT_PACKAGE} installs it)"


def parse_glosses(text: str, what: Path) -> list[str]:
    """The glosses of one data file's text, in file order.

    Lines starting with two spaces are the licence header. Every other line is a synset:
    ``offset lex_filenum ss_type w_cnt word lex_id … | gloss``.

    Raises
    ------
    CorruptDataError
        If a synset line lacks the ``|`` separator or does not start with an 8-digit offset.
    """
    glosses = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("  "):
            continue
        head, bar, gloss = line.partition(" | ")
        offset = head.split(" ", 1)[0]
        if not bar or len(offset) != 8 or not offset.isdigit():
            raise CorruptDataError(f"{what}:{number} is not a WordNet synset line: {repair_hint(what)}")
        gloss = gloss.strip()
        if gloss:
            glosses.append(gloss)
    return glosses


def is_held_out(gloss: str, fraction: float) -> bool:
    """Whether ``gloss`` belongs to the held-out split (module docstring)."""
    value = int.from_bytes(hashlib.sha256(gloss.encode()).digest()[:8], "big")
    return value < fraction * 2.0**64


def load_wordnet(*, held_out_fraction: float = 0.05, verify: bool = True) -> WordNetCorpus:
    """Read the glosses of the four data files, checked, and split them by gloss.

    Parameters
    ----------
    held_out_fraction
        Expected fraction of glosses held out, in (0, 1).
    verify
        Check each file's sha256 against :data:`SHA256`.

    Raises
    ------
    ValueError
        If ``held_out_fraction`` is outside (0, 1).
    DatasetNotFoundError
        If the files are nowhere; the message names ``make data``.
    CorruptDataError
        If a file fails its checksum or is not in WordNet's format.
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must lie in (0, 1), got {held_out_fraction!r}")
    directory = find_wordnet()
    if directory is None:
        searched = ", ".join([*(str(root / SUBDIR) for root in _files.data_dirs()), str(SYSTEM_DIR)])
        raise DatasetNotFoundError(f"{NAME} not found (looked for {', '.join(FILES)} in {searched}): "
                                   f"{NOT_FOUND_FIX}")
    digests, glosses = [], []
    for name in FILES:
        path = directory / name
        data = path.read_bytes()
        if verify:
            _files.check_digest(data, "sha256", SHA256[name], path, repair_hint(path))
        digests.append(hashlib.sha256(data).hexdigest())
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptDataError(f"{path} is not UTF-8 text ({exc}): {repair_hint(path)}") from None
        glosses += parse_glosses(text, path)
    held = [is_held_out(gloss, held_out_fraction) for gloss in glosses]
    return WordNetCorpus(
        train=tuple(g for g, h in zip(glosses, held) if not h),
        held_out=tuple(g for g, h in zip(glosses, held) if h),
        digest=hashlib.sha256(" ".join(digests).encode()).hexdigest(),
        source=str(directory),
        held_out_fraction=float(held_out_fraction),
    )


# ------------------------------------------------------------------------------ tokens
#: Special pieces of the tokenizer, with fixed ids.
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2
MASK_PIECE = "[MASK]"
#: The label of the frozen input embedding, wherever it is shown.
EMBEDDING_LABEL = "self-pre-trained (PPMI-SVD on the same corpus)"
#: Power iterations of the embedding's randomized SVD.
SVD_ITERATIONS = 7


def _tokenizer_config(corpus: WordNetCorpus, vocab_size: int) -> dict:
    import sentencepiece

    return {"artefact": "wordnet-sentencepiece", "corpus": corpus.digest,
            "held_out_fraction": corpus.held_out_fraction, "vocab_size": vocab_size,
            "model_type": "unigram", "sentencepiece": sentencepiece.__version__}


def train_tokenizer(corpus: WordNetCorpus, *, vocab_size: int = 4096, cache=None):
    """A sentencepiece unigram tokenizer trained on ``corpus.train``, cached under the corpus hash.

    Ids 0, 1, 2 are padding, unknown and ``[MASK]`` (:data:`PAD_ID`, :data:`UNK_ID`,
    :data:`MASK_ID`); there are no sentence-boundary pieces. Training runs on one thread over the
    glosses in file order, so the same corpus gives the same model; the serialised model is kept
    in the results cache (:class:`swatlib.cache.ResultsCache`, atomic, checksummed) under a key made
    of the corpus digest, the vocabulary size and the sentencepiece version.

    Parameters
    ----------
    corpus
        From :func:`load_wordnet` (or a tiny corpus in tests).
    vocab_size
        Pieces including the three special ones.
    cache
        A :class:`~swatlib.cache.ResultsCache`; default: the project's.

    Returns
    -------
    sentencepiece.SentencePieceProcessor

    Raises
    ------
    ValueError
        If ``vocab_size`` < 8 or the corpus cannot support that many pieces (the message says so).
    """
    import io

    import sentencepiece
    import torch

    from swatlib.cache import ResultsCache

    check_int(vocab_size, "vocab_size", 8)

    def compute():
        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(corpus.train), model_writer=model, vocab_size=vocab_size,
                model_type="unigram", pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1, eos_id=-1,
                user_defined_symbols=[MASK_PIECE], character_coverage=1.0, num_threads=1,
                shuffle_input_sentence=False, minloglevel=2)
        except RuntimeError as exc:
            raise ValueError(f"vocab_size={vocab_size} cannot be trained on this corpus: {exc}") from None
        blob = torch.frombuffer(bytearray(model.getvalue()), dtype=torch.uint8)
        return {"vocab_size": vocab_size}, {"model": blob.clone()}

    entry = (cache or ResultsCache()).get_or_compute(_tokenizer_config(corpus, vocab_size), compute)
    processor = sentencepiece.SentencePieceProcessor()
    processor.LoadFromSerializedProto(entry.tensors["model"].numpy().tobytes())
    if processor.piece_to_id(MASK_PIECE) != MASK_ID or processor.pad_id() != PAD_ID:
        raise CorruptDataError(f"the cached tokenizer for corpus {corpus.digest[:12]} has unexpected "
                               f"special ids: delete build/cache and rerun")
    return processor


def encode(tokenizer, glosses) -> list:
    """Token ids of each gloss: one list of ints per gloss, in order."""
    return tokenizer.encode(list(glosses))


def pack(ids: list, seq_len: int):
    """The glosses' ids concatenated in order and cut into ``(n, seq_len)`` windows (the tail dropped).

    Raises
    ------
    ValueError
        If ``seq_len`` < 1 or there are fewer than ``seq_len`` tokens.
    """
    import torch

    check_int(seq_len, "seq_len")
    stream = torch.tensor([t for gloss in ids for t in gloss], dtype=torch.int64)
    n = stream.numel() // seq_len
    if n == 0:
        raise ValueError(f"seq_len={seq_len} exceeds the {stream.numel()} tokens of the text")
    return stream[:n * seq_len].reshape(n, seq_len)


def unigram_entropy(ids: list, vocab_size: int) -> float:
    """Entropy in nats of the token distribution of ``ids`` (a list of per-gloss id lists).

    The loss of a model that ignores the context and predicts the token frequencies: an MLM must
    end clearly below it to have learnt anything from the context.
    """
    import torch

    counts = torch.bincount(torch.tensor([t for gloss in ids for t in gloss]), minlength=vocab_size)
    p = counts[counts > 0].double() / counts.sum()
    return float(-(p * p.log()).sum())


def ppmi_svd_embedding(ids: list, vocab_size: int, width: int, *, window: int = 4):
    """A ``vocab_size × width`` embedding from the positive PMI of co-occurrences, via truncated SVD.

    Co-occurrences are counted between tokens at most ``window`` positions apart within one gloss
    (symmetric); PPMI(a, b) = max(0, log(p(a, b) / (p(a) p(b)))); the embedding is ``U·√S`` of the
    PPMI matrix's top ``width`` singular triplets (a deterministic randomized SVD), each column's sign
    fixed so that its largest-magnitude entry is positive, scaled to root-mean-square 1 (the scale of
    torch's ``nn.Embedding`` init). Tokens that never co-occur get a zero row. This is the
    "self-pre-trained (PPMI-SVD on the same corpus)" embedding (:data:`EMBEDDING_LABEL`).

    Returns
    -------
    (torch.Tensor, float)
        The float32 embedding and the FLOPs spent on it (pair counting, PPMI, and the SVD's
        ``2·V²·(width + 10)·(2·iterations + 2)`` matrix products), counted once for all variants.
    """
    import numpy as np
    import torch
    from sklearn.utils.extmath import randomized_svd

    check_int(width, "width (at most the vocabulary size)", 1, vocab_size + 1)
    check_int(window, "window")
    stream = np.fromiter((t for gloss in ids for t in gloss), dtype=np.int64)
    owner = np.repeat(np.arange(len(ids)), [len(gloss) for gloss in ids])
    counts = np.zeros(vocab_size * vocab_size, dtype=np.float64)
    pairs = 0
    for k in range(1, window + 1):
        same = owner[:-k] == owner[k:]
        a, b = stream[:-k][same], stream[k:][same]
        keys = np.concatenate([a * vocab_size + b, b * vocab_size + a])
        counts += np.bincount(keys, minlength=vocab_size * vocab_size)
        pairs += keys.size
    counts = counts.reshape(vocab_size, vocab_size)
    total = counts.sum()
    embedding = np.zeros((vocab_size, width), dtype=np.float64)
    if total > 0:
        marginal = counts.sum(1) / total
        with np.errstate(divide="ignore", invalid="ignore"):
            pmi = np.log(counts / total / np.outer(marginal, marginal))
        ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
        u, s, _ = randomized_svd(ppmi, width, n_oversamples=10, n_iter=SVD_ITERATIONS, random_state=0)
        embedding = u * np.sqrt(s)
        embedding[marginal == 0] = 0.0                 # exactly, not the SVD's round-off
        peak = np.abs(embedding).argmax(0)
        embedding *= np.sign(embedding[peak, np.arange(width)] + (embedding[peak, np.arange(width)] == 0))
        rms = np.sqrt((embedding ** 2).mean())
        if rms > 0:
            embedding /= rms
    flops = pairs + 6.0 * vocab_size ** 2 + 2.0 * vocab_size ** 2 * (width + 10) * (2 * SVD_ITERATIONS + 2)
    return torch.from_numpy(embedding.astype(np.float32)), float(flops)
