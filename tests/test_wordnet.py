"""Tests of the WordNet gloss corpus, its tokenizer and its PPMI-SVD embedding, on a tiny corpus
written in the real WordNet 3.0 data-file format. Nothing here installs or downloads: apt is a fake."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import torch

from swatlib.cache import ResultsCache
from swatlib.data import provision, wordnet
from swatlib.data.__main__ import main
from swatlib.data.errors import CorruptDataError, DatasetNotFoundError

HEADER = "".join(f"  {i} This software and database is being provided to you, the LICENSEE, by  \n"
                 for i in range(1, 30))
GLOSSES = {
    "data.noun": ["a domesticated carnivorous mammal that barks; \"the dog barked all night\"",
                  "a small domesticated feline mammal with soft fur",
                  "a large body of salt water", "a building where people live",
                  "the act of running quickly", "a tree that bears fruit"],
    "data.verb": ["move fast by using one's feet", "make a loud noise like a dog",
                  "live in a building or house"],
    "data.adj": ["having a high speed; \"a fast car\"", "small in size or amount"],
    "data.adv": ["in a quick manner", "without musical accompaniment; \"they performed a cappella\""],
}


def synset_line(offset: int, gloss: str) -> str:
    """One data-file line in WordNet's format: offset, lex_filenum, ss_type, words, pointers, gloss."""
    return f"{offset:08d} 03 n 02 word 0 other_word 0 001 @ 00001740 n 0000 | {gloss}  \n"


def write_corpus(directory: Path, corpus: dict[str, list[str]] = GLOSSES) -> dict[str, str]:
    """The four data files with the licence header; returns their sha256 digests."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, glosses in corpus.items():
        text = HEADER + "".join(synset_line(1740 + 100 * i, g) for i, g in enumerate(glosses))
        (directory / name).write_text(text)
        digests[name] = hashlib.sha256(text.encode()).hexdigest()
    return digests


@pytest.fixture
def isolated(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conftest's isolated data directories, WordNet's system directory inside tmp_path too."""
    monkeypatch.setattr(wordnet, "SYSTEM_DIR", tmp_path / "usr-share-wordnet")
    return isolated


@pytest.fixture
def tiny(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny corpus as a user's copy of dict/ in $SWATLIB_DATA/wordnet, its digests accepted."""
    digests = write_corpus(isolated / "wordnet")
    monkeypatch.setattr(wordnet, "SHA256", digests)
    return isolated / "wordnet"


def test_parse_skips_the_header_and_keeps_the_text_after_the_bar(tmp_path):
    text = HEADER + synset_line(1740, "first gloss; \"an example\"") + synset_line(1841, "second")
    assert wordnet.parse_glosses(text, tmp_path / "data.noun") == ["first gloss; \"an example\"", "second"]


def test_parse_rejects_a_line_that_is_not_a_synset(tmp_path):
    with pytest.raises(CorruptDataError, match=r"data.noun:2 is not a WordNet synset line"):
        wordnet.parse_glosses(HEADER.splitlines(True)[0] + "garbage without a bar\n", tmp_path / "data.noun")


def test_load_reads_every_gloss_and_splits_by_gloss(tiny):
    corpus = wordnet.load_wordnet(held_out_fraction=0.3)
    every = [g for name in wordnet.FILES for g in GLOSSES[name]]
    assert sorted(corpus.train + corpus.held_out) == sorted(every)
    assert set(corpus.held_out) == {g for g in every if wordnet.is_held_out(g, 0.3)}
    assert corpus.train == tuple(g for g in every if not wordnet.is_held_out(g, 0.3))  # file order kept
    assert corpus.source == str(tiny)
    again = wordnet.load_wordnet(held_out_fraction=0.3)
    assert again == corpus


def test_split_fraction_is_about_right_and_monotone():
    glosses = [f"gloss number {i}" for i in range(4000)]
    small = {g for g in glosses if wordnet.is_held_out(g, 0.05)}
    large = {g for g in glosses if wordnet.is_held_out(g, 0.2)}
    assert small <= large
    assert 140 < len(small) < 260 and 700 < len(large) < 900


def test_digest_identifies_the_files(tiny, monkeypatch):
    before = wordnet.load_wordnet().digest
    (tiny / "data.adv").write_text((tiny / "data.adv").read_text() + synset_line(9999, "one more"))
    assert wordnet.load_wordnet(verify=False).digest != before


def test_a_changed_file_fails_its_checksum_naming_it(tiny):
    (tiny / "data.verb").write_text((tiny / "data.verb").read_text().replace("feet", "legs"))
    with pytest.raises(CorruptDataError, match=r"data.verb fails its sha256 check"):
        wordnet.load_wordnet()


def test_missing_corpus_names_make_data(isolated):
    with pytest.raises(DatasetNotFoundError, match=r"make data") as info:
        wordnet.load_wordnet()
    assert "\n" not in str(info.value)


def test_system_directory_is_found(isolated, monkeypatch):
    digests = write_corpus(wordnet.SYSTEM_DIR)
    monkeypatch.setattr(wordnet, "SHA256", digests)
    assert wordnet.find_wordnet() == wordnet.SYSTEM_DIR
    assert wordnet.load_wordnet().source == str(wordnet.SYSTEM_DIR)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="held_out_fraction"):
        wordnet.load_wordnet(held_out_fraction=fraction)


# ----------------------------------------------------------------------------- ensure / make data


def test_ensure_found_does_nothing(tiny):
    lines: list[str] = []
    assert provision.ensure("wordnet", use_apt=True, run=pytest.fail, log=lines.append) == tiny
    assert lines == [f"wordnet: found in {tiny}"]


def test_ensure_installs_wordnet_base_as_root(isolated):
    commands: list[list[str]] = []

    def fake_apt(command, **kwargs):
        commands.append(command)
        if command[1] == "install":
            write_corpus(wordnet.SYSTEM_DIR)
        return subprocess.CompletedProcess(command, 0)

    assert provision.ensure("wordnet", use_apt=True, run=fake_apt, log=lambda _: None) == wordnet.SYSTEM_DIR
    assert commands == [["apt-get", "update"], ["apt-get", "install", "-y", "wordnet-base"]]


def test_ensure_without_apt_fails_in_one_line_naming_the_fix(isolated):
    with pytest.raises(DatasetNotFoundError, match=r"apt-get install wordnet-base") as info:
        provision.ensure("wordnet", use_apt=False, run=pytest.fail, log=lambda _: None)
    assert "\n" not in str(info.value)


def test_ensure_when_apt_fails(isolated):
    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 100)

    with pytest.raises(DatasetNotFoundError, match="make data"):
        provision.ensure("wordnet", use_apt=True, run=failing, log=lambda _: None)


def test_cli_ensures_wordnet(tiny, monkeypatch, capsys):
    monkeypatch.setattr(provision, "apt_usable", lambda: False)
    assert main(["ensure", "wordnet"]) == 0
    for path in tiny.iterdir():
        path.unlink()
    assert main(["ensure", "wordnet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "make data" in err and err.count("\n") == 1


def test_makefile_data_target_ensures_wordnet():
    from swatlib.paths import PROJECT_ROOT

    makefile = (PROJECT_ROOT / "Makefile").read_text()
    data = makefile.split("\ndata:", 1)[1].split("\n\n", 1)[0]
    assert "-m swatlib.data ensure wordnet" in data


# ----------------------------------------------------------------------------- tokens


@pytest.fixture
def corpus(tiny):
    return wordnet.load_wordnet(held_out_fraction=0.2)


def test_tokenizer_specials_roundtrip_and_cache(corpus, tmp_path):
    cache = ResultsCache(tmp_path / "cache")
    tok = wordnet.train_tokenizer(corpus, vocab_size=60, cache=cache)
    assert tok.get_piece_size() == 60
    assert tok.pad_id() == wordnet.PAD_ID and tok.unk_id() == wordnet.UNK_ID
    assert tok.piece_to_id(wordnet.MASK_PIECE) == wordnet.MASK_ID
    assert tok.decode(tok.encode(corpus.train[0])) == corpus.train[0]
    stored = list((tmp_path / "cache").rglob("*.json"))
    assert len(stored) == 1
    again = wordnet.train_tokenizer(corpus, vocab_size=60, cache=cache)       # a cache hit
    assert list((tmp_path / "cache").rglob("*.json")) == stored
    assert again.serialized_model_proto() == tok.serialized_model_proto()
    fresh = wordnet.train_tokenizer(corpus, vocab_size=60, cache=ResultsCache(tmp_path / "other"))
    assert fresh.serialized_model_proto() == tok.serialized_model_proto()       # deterministic


def test_tokenizer_rejects_an_impossible_vocabulary(corpus, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        wordnet.train_tokenizer(corpus, vocab_size=4, cache=ResultsCache(tmp_path))
    with pytest.raises(ValueError, match="vocab_size=5000 cannot be trained"):
        wordnet.train_tokenizer(corpus, vocab_size=5000, cache=ResultsCache(tmp_path))


def test_pack_concatenates_in_order_and_drops_the_tail():
    windows = wordnet.pack([[1, 2, 3], [4], [5, 6, 7, 8]], 3)
    assert windows.tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="seq_len=9 exceeds"):
        wordnet.pack([[1, 2]], 9)


def test_unigram_entropy():
    assert wordnet.unigram_entropy([[3, 3, 3]], 8) == pytest.approx(0.0)
    assert wordnet.unigram_entropy([[3, 4], [5, 6]], 8) == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_ppmi_svd_embedding_groups_tokens_that_share_contexts():
    # tokens 3 and 4 always appear between 10 and 11; 5 and 6 between 12 and 13
    ids = [[10, 3, 11], [10, 4, 11], [12, 5, 13], [12, 6, 13]] * 5
    emb, flops = wordnet.ppmi_svd_embedding(ids, 16, 4, window=1)
    assert emb.shape == (16, 4) and emb.dtype == torch.float32 and flops > 0
    assert emb.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-5)
    assert emb[0].abs().sum() == 0                                    # never co-occurs: zero row
    cos = torch.nn.functional.cosine_similarity
    assert cos(emb[3], emb[4], dim=0) > 0.99 and cos(emb[5], emb[6], dim=0) > 0.99
    assert abs(cos(emb[3], emb[5], dim=0)) < 0.1
    again, _ = wordnet.ppmi_svd_embedding(ids, 16, 4, window=1)
    assert torch.equal(emb, again)
    with pytest.raises(ValueError, match="width"):
        wordnet.ppmi_svd_embedding(ids, 16, 17)


@pytest.mark.parametrize("width, window, match", [
    (0, 1, r"width \(at most the vocabulary size\) must be an integer in \[1, 17\), got 0"),
    (17, 1, r"width \(at most the vocabulary size\) must be an integer in \[1, 17\), got 17"),
    (4, 0, "window must be a positive integer, got 0"),
])
def test_ppmi_svd_embedding_refuses_a_bad_width_or_window(width, window, match):
    with pytest.raises(ValueError, match=match):
        wordnet.ppmi_svd_embedding([[1, 2, 3]], 16, width, window=window)
