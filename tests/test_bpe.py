"""BPETokenizer: hand-counted merges, incremental counts == a recount, lossless round trips, bad input.

Run: pytest tests/test_bpe.py
"""

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gptlib import data as gdata
from gptlib.bpe import (GPT2_SPLIT_PATTERN, BPETokenizer, PairCounts, best_pair, count_pairs, main,
                        merge, split_text)
from gptlib.checkpoint import load_checkpoint, save_checkpoint
from gptlib.config import GPTConfig
from gptlib.errors import ConfigError, DataError, DataNotFoundError
from gptlib.model import GPT
from gptlib.checkpoint import tokenizer_from_dict

# Several scripts, so that merges build multi-byte characters (and pieces of them) into tokens.
UNICODE_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    "Ça va? Très bien, merci — naïve café, déjà vu. Straße, Größe.\n"
    "Привет, как дела? Всё хорошо.\n日本語のテキストです。東京。\n"
    "Ελληνικά: καλημέρα. עברית: שלום. 😀😀 🎉 x_y = 3.14 + 42; don't, WE'LL\n"
) * 5

# No deadline: a busy CPU is slow for no fault of the code. No example database: nothing is written
# into the checkout (a failure prints the example that reproduces it).
settings.register_profile("gptlib", deadline=None, max_examples=100, database=None)
settings.load_profile("gptlib")


@pytest.fixture(scope="module")
def unicode_tokenizer() -> BPETokenizer:
    return BPETokenizer.train(UNICODE_TEXT, 400)


def naive_train(text: str, vocab_size: int) -> list[tuple[int, int]]:
    """The merges, recounting every pair from scratch at every step (the chapter's inline version)."""
    chunks = {}
    for chunk in split_text(text):
        chunks[chunk] = chunks.get(chunk, 0) + 1
    words, weights = [list(c.encode("utf-8")) for c in chunks], list(chunks.values())
    merges = []
    for new_id in range(256, vocab_size):
        pair = best_pair(count_pairs(words, weights))
        words = [merge(w, pair, new_id) for w in words]
        merges.append(pair)
    return merges


# --- hand-counted examples ---------------------------------------------------------------------

def test_first_merges_match_a_hand_count():
    # "aaabdaaabac" (Wikipedia's example) is one chunk. Pairs, overlaps included: aa 4, ab 2, bd 1,
    # da 1, ba 1, ac 1 -> merge aa = 256, leaving [256 a b d 256 a b a c]. Then (256, a) and ab both
    # occur twice; the tie goes to the smaller pair, ab = (97, 98) -> 257, leaving [256 257 d 256 257
    # a c], where (256, 257) occurs twice -> 258.
    tok = BPETokenizer.train("aaabdaaabac", 259)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert [tok.vocab[i] for i in range(256, 259)] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_pre_split_keeps_pairs_inside_words():
    # Chunks: "the", " cat", " the", " hat", " the". No pair spans a space after a word ("e ").
    chunks = split_text("the cat the hat the")
    assert chunks == ["the", " cat", " the", " hat", " the"]
    counts = count_pairs([list(c.encode()) for c in chunks], [1] * len(chunks))
    b = lambda s: tuple(s.encode())  # noqa: E731  "he" -> (104, 101)
    assert counts == {b("th"): 3, b("he"): 3, b(" t"): 2, b(" c"): 1, b("ca"): 1, b("at"): 2,
                      b(" h"): 1, b("ha"): 1}
    # "th" and "he" both occur 3 times; the tie goes to the smaller pair, "he" = (104, 101).
    assert BPETokenizer.train("the cat the hat the", 257).vocab[256] == b"he"


def test_split_pattern_pieces():
    # (as the `regex` module splits with GPT-2's own pattern) Whitespace leaves its last space to the
    # word after it: "   now" -> "  ", " now".
    assert split_text("Hello world, don't 42x  \n\nbye   now") == [
        "Hello", " world", ",", " don", "'t", " 42", "x", "  \n", "\n", "bye", "  ", " now"]


@given(st.text())
def test_split_covers_every_character(text):
    """The chunks are a partition of the text: nothing is dropped or repeated."""
    assert "".join(split_text(text)) == text


@given(st.text(st.characters(categories=["Lu", "Ll", "Lt", "Lo", "Nd", "P", "Sm", "Sc", "Zs"],
                             include_characters="\n\t'_")))
def test_split_matches_gpt2s_pattern_where_regex_is_installed(text):
    """Our `re` pattern splits like GPT-2's `regex` pattern (letters, digits, punctuation, spaces)."""
    regex = pytest.importorskip("regex")
    gpt2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    assert split_text(text) == regex.findall(gpt2, text)


# --- the incremental counts ----------------------------------------------------------------------

def test_incremental_counts_equal_a_recount_after_every_merge():
    chunks = {}
    for chunk in split_text(UNICODE_TEXT):
        chunks[chunk] = chunks.get(chunk, 0) + 1
    words, weights = [list(c.encode()) for c in chunks], list(chunks.values())
    pairs = PairCounts([list(w) for w in words], weights)
    for new_id in range(256, 400):
        recount = count_pairs(words, weights)
        assert pairs.counts == recount
        assert pairs.best() == best_pair(recount)
        pair = best_pair(recount)
        pairs.merge(pair, new_id)
        words = [merge(w, pair, new_id) for w in words]
        assert pairs.words == words


def test_library_merges_equal_the_naive_loop(unicode_tokenizer):
    assert unicode_tokenizer.merges == naive_train(UNICODE_TEXT, 400)


def test_training_is_deterministic():
    assert BPETokenizer.train(UNICODE_TEXT, 300) == BPETokenizer.train(UNICODE_TEXT, 300)
    assert BPETokenizer.train(UNICODE_TEXT, 300) != BPETokenizer.train(UNICODE_TEXT, 299)


def test_encode_replays_the_merges_of_training():
    """Encoding a training chunk gives what the training loop turned it into."""
    tok = BPETokenizer.train(UNICODE_TEXT, 400)
    chunks = list(dict.fromkeys(split_text(UNICODE_TEXT)))
    words = [list(c.encode()) for c in chunks]
    for new_id, pair in enumerate(tok.merges, start=256):
        words = [merge(w, pair, new_id) for w in words]
    assert [tok.encode(c) for c in chunks] == words


# --- round trips ---------------------------------------------------------------------------------

@given(st.text())
def test_round_trip_on_arbitrary_unicode(unicode_tokenizer, text):
    ids = unicode_tokenizer.encode(text)
    assert all(0 <= i < unicode_tokenizer.vocab_size for i in ids)
    assert unicode_tokenizer.decode(ids) == text


@given(st.text(min_size=1))
def test_trained_on_any_text_the_round_trip_holds(text):
    """Train on the text itself (as many merges as it allows, up to 20), then encode it back."""
    possible = sum(len(c.encode()) - 1 for c in set(split_text(text)))  # an upper bound on merges
    try:
        tok = BPETokenizer.train(text, 256 + min(possible, 20))
    except DataError as err:  # fewer merges were possible than the bound: the error says so
        assert "vocab_size <=" in str(err)
        return
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) <= len(text.encode())


def test_round_trip_on_the_whole_of_tiny_shakespeare():
    try:
        text = gdata.load_text(progress=False)
    except DataNotFoundError:
        pytest.skip(f"Tiny Shakespeare is not available offline here (set {gdata.ENV_VAR})")
    n = int(0.9 * len(text))
    tok = BPETokenizer.train(text[:n], 512)  # the training split only
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode()) / 1.4  # it compresses (1.5 bytes a token when measured)


def test_decode_replaces_a_broken_character(unicode_tokenizer):
    """A sequence that stops inside a multi-byte character decodes with U+FFFD, not an error."""
    e_acute = list("é".encode())  # two bytes: 0xC3 0xA9
    assert unicode_tokenizer.decode(e_acute[:1]) == "\ufffd"
    assert unicode_tokenizer.decode(e_acute) == "é"
    assert unicode_tokenizer.decode_bytes(e_acute[:1]) == b"\xc3"


def _plain(value) -> bool:
    """Only lists, dicts with string keys, ints and strings: what torch.load(weights_only=True) reads."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, (int, str))


def test_to_dict_from_dict_round_trip(unicode_tokenizer, tmp_path):
    d = unicode_tokenizer.to_dict()
    assert d["kind"] == "bpe" and d["vocab_size"] == 400 and len(d["merges"]) == 144
    assert d["pattern"] == GPT2_SPLIT_PATTERN
    assert _plain(d)
    torch.save({"tokenizer": d}, tmp_path / "t.pt")
    loaded = BPETokenizer.from_dict(torch.load(tmp_path / "t.pt", weights_only=True)["tokenizer"])
    assert loaded == unicode_tokenizer
    assert loaded.encode(UNICODE_TEXT) == unicode_tokenizer.encode(UNICODE_TEXT)


def test_a_checkpoint_keeps_the_bpe_tokenizer(unicode_tokenizer, tmp_path):
    """save_checkpoint stores the merges; load_checkpoint (weights_only) gives the same tokenizer."""
    config = GPTConfig(vocab_size=unicode_tokenizer.vocab_size, block_size=8, n_embd=16, n_head=2,
                       n_layer=1, dropout=0.0)
    save_checkpoint(tmp_path / "best.pt", GPT(config), unicode_tokenizer, config)
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert isinstance(ckpt.tokenizer, BPETokenizer) and ckpt.tokenizer == unicode_tokenizer
    assert tokenizer_from_dict(unicode_tokenizer.to_dict()) == unicode_tokenizer


def test_the_timing_command_runs_on_any_text(tmp_path, capsys):
    """``python -m gptlib.bpe --data FILE``: trains on the first 90%, reports time and compression."""
    (tmp_path / "t.txt").write_text(UNICODE_TEXT, encoding="utf-8")
    main(["--vocab-size", "300", "--data", str(tmp_path / "t.txt")])
    out = capsys.readouterr().out
    assert "trained vocab_size 300" in out and "bytes per token" in out


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("vocab_size", [255, 0, 65_537, "512", 300.0, True])
def test_vocab_size_out_of_range_is_a_config_error(vocab_size):
    with pytest.raises(ConfigError, match="vocab_size"):
        BPETokenizer.train(UNICODE_TEXT, vocab_size)


def test_no_merges_is_a_byte_tokenizer():
    tok = BPETokenizer.train("abc", 256)
    assert tok.merges == [] and tok.vocab_size == 256 and tok.encode("abc") == [97, 98, 99]


def test_bad_text_and_ids_are_data_errors():
    with pytest.raises(DataError, match="non-empty"):
        BPETokenizer.train("", 300)
    with pytest.raises(DataError, match=r"only 2 merges.*vocab_size <= 258"):
        BPETokenizer.train("abc", 300)  # "abc" is one chunk: ab, then abc, then nothing left
    tok = BPETokenizer.train("abc", 257)
    with pytest.raises(DataError, match=r"257 is outside the vocabulary \(0..256\)"):
        tok.decode([97, 257])
    with pytest.raises(DataError, match="outside"):
        tok.decode([-1])
    with pytest.raises(DataError, match="surrogate"):
        tok.encode("a\ud800b")
    assert tok.unknown_chars("anything at all ☃") == []


@pytest.mark.parametrize("d", [
    {"kind": "char", "chars": ["a"]},
    {"kind": "bpe"},
    {"kind": "bpe", "merges": [[97, 256]]},  # refers to itself
    {"kind": "bpe", "merges": [[97]]},
    {"kind": "bpe", "merges": [97]},
    {"kind": "bpe", "merges": [[97, 98], [97, 98]]},
    {"kind": "bpe", "merges": [["a", "b"]]},
    {"kind": "bpe", "merges": [[97, 98]], "vocab_size": 300},
    {"kind": "bpe", "merges": [], "pattern": "("},
])
def test_malformed_description_is_a_data_error(d):
    with pytest.raises(DataError):
        BPETokenizer.from_dict(d)


def test_train_and_sample_with_bpe_on_the_command_line(tmp_path, capsys):
    """The issue's commands: train --tokenizer bpe, then sample reads the tokenizer from the checkpoint;
    a prompt always encodes (bytes can encode anything), so there is no unknown-character error."""
    from gptlib.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("ROMEO: But soft, what light through yonder window breaks? Café ✓\n" * 200)
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--tokenizer", "bpe", "--vocab-size", "270",
                 "--data", str(corpus), "--out", str(out), "--sample-tokens", "0"]) == 0
    # the loss per token, restated per character (comparable with a character model's): the
    # validation text's characters over its tokens, from the same split the run made
    best = [line for line in capsys.readouterr().out.splitlines() if line.startswith("best val loss")]
    m = re.match(r"best val loss ([\d.]+) per token = ([\d.]+) per character, ([\d.]+) bits per character",
                 best[0])
    text = corpus.read_text()
    from gptlib.checkpoint import load_checkpoint
    tokenizer = load_checkpoint(out / "best.pt").tokenizer
    val = text[int(0.9 * len(text)):]
    per_char = float(m[1]) * len(tokenizer.encode(val)) / len(val)
    assert float(m[2]) == pytest.approx(per_char, abs=2e-4) and float(m[3]) == pytest.approx(
        per_char / math.log(2), abs=2e-3)
    assert main(["sample", "--checkpoint", str(out / "best.pt"), "--prompt", "ROMEO: ☃ 日本",
                 "--max-new-tokens", "10"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO: ☃ 日本")
    from gptlib.checkpoint import load_checkpoint
    assert load_checkpoint(out / "best.pt").tokenizer.vocab_size == 270
