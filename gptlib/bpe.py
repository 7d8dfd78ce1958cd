"""`BPETokenizer`: byte-level byte-pair encoding, GPT-2's tokenizer (ch. 8). Ids 0..255 are the bytes;
training makes the most frequent pair of neighbouring tokens a new token (a *merge*), within the chunks
GPT-2's pre-split pattern cuts (a token never spans two words); encoding replays the merges in order.
``python -m gptlib.bpe`` times it on Tiny Shakespeare."""

import argparse
import heapq
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from gptlib.errors import ConfigError, DataError
from gptlib.tokenizer import look_up

# GPT-2's pattern (openai/gpt-2 src/encoder.py) ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
# ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`` in `re`, which has no \p{...}: a letter is [^\W\d_], a number \d. They
# differ only on non-digit numerals ("½"), 4 control characters and characters newer than `re`'s Unicode.
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d"""  # English contractions: "don't" -> "don", "'t"
    r"""| ?[^\W\d_]+"""  # a word, with the space before it
    r"""| ?\d+"""  # a run of digits, with the space before it
    r"""| ?(?:[^\s\w]|_)+"""  # a run of punctuation and symbols, with the space before it
    r"""|\s+(?!\S)"""  # whitespace, leaving its last space to the next word
    r"""|\s+"""  # whitespace at the end of the text
)

# A pattern read from a file must cut this text into pieces that join back into it.
_SPLIT_PROBE = "First Citizen:\nWe're 2 of 10,000 -- isn't it?\t  Ça va! 🤖 _x_\r\n"

MIN_VOCAB_SIZE = 256  # the 256 byte values
MAX_VOCAB_SIZE = 65_536  # ids fit in 16 bits; GPT-2 has 50,257 tokens, GPT-4's cl100k_base ~100k

Pair = tuple[int, int]


def split_text(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """The chunks of ``text`` that BPE merges within; joined together they give ``text`` back."""
    return re.findall(pattern, text)


def count_pairs(words: Iterable[Sequence[int]], weights: Iterable[int]) -> Counter:
    """How often each pair of neighbouring ids occurs, over ``words`` each counted ``weight`` times."""
    counts = Counter()
    for ids, weight in zip(words, weights):
        for pair in zip(ids, ids[1:]):
            counts[pair] += weight
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """``ids`` with every occurrence of ``pair``, left to right, replaced by ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        hit = i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]
        out.append(new_id if hit else ids[i])
        i += 2 if hit else 1
    return out


def best_pair(counts: dict) -> Pair:
    """The most frequent pair; among equally frequent pairs the smallest, so training is deterministic."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


class PairCounts:
    """`count_pairs` of weighted words, kept up to date as merges rewrite them: a merge recounts only the
    words that hold the pair, and a heap of (-count, pair) gives the best pair, skipping stale entries."""

    def __init__(self, words: list[list[int]], weights: list[int]):
        self.words, self.weights = words, weights
        self.counts = count_pairs(words, weights)
        self.where: dict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words that held it
        for w, ids in enumerate(words):
            for pair in zip(ids, ids[1:]):
                self.where[pair].add(w)
        self.heap = [(-count, pair) for pair, count in self.counts.items()]
        heapq.heapify(self.heap)

    def best(self) -> Pair | None:
        """The pair `best_pair` would pick (None when no pair is left), in O(log n)."""
        while self.heap:
            neg_count, pair = self.heap[0]
            if self.counts.get(pair) == -neg_count:
                return pair
            heapq.heappop(self.heap)  # a stale entry: this pair's count has changed since
        return None

    def merge(self, pair: Pair, new_id: int) -> None:
        """Replace ``pair`` by ``new_id`` in every word, updating the counts of the words it touched."""
        changed = set()
        for w in self.where.pop(pair, ()):
            old = self.words[w]
            new = merge(old, pair, new_id)
            if len(new) == len(old):
                continue  # the index is lazy: an earlier merge already took this pair from this word
            weight = self.weights[w]
            for p in zip(old, old[1:]):  # take the word's old pairs out...
                self.counts[p] -= weight
            for p in zip(new, new[1:]):  # ...and put its new pairs in
                self.counts[p] += weight
                self.where[p].add(w)
            changed.update(zip(old, old[1:]), zip(new, new[1:]))
            self.words[w] = new
        for p in changed:
            if self.counts[p] > 0:
                heapq.heappush(self.heap, (-self.counts[p], p))
            else:
                del self.counts[p]


class BPETokenizer:
    """Byte-level BPE: ids 0..255 are bytes, each later id is a merge of two earlier ones."""

    def __init__(self, merges: Sequence[Sequence[int]], pattern: str = GPT2_SPLIT_PATTERN):
        self.merges: list[Pair] = []
        for rank, pair in enumerate(merges):
            new_id = MIN_VOCAB_SIZE + rank
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(type(i) is int and 0 <= i < new_id for i in pair)):  # bool is no id
                raise DataError(f"merge {rank} is {pair!r}: a merge is two ids of earlier tokens "
                                f"(0..{new_id - 1}); the merges are corrupt, train the tokenizer again")
            self.merges.append(tuple(pair))
        if len(set(self.merges)) != len(self.merges):
            raise DataError("the same pair is merged twice: the merges are corrupt, train it again")
        try:
            self.pattern = re.compile(pattern)
        except (re.error, TypeError) as err:
            raise DataError(f"the pre-split pattern {pattern!r} is not a regular expression: {err}") from None
        pieces = self.pattern.findall(_SPLIT_PROBE)
        if not all(isinstance(piece, str) for piece in pieces) or "".join(pieces) != _SPLIT_PROBE:
            raise DataError(f"the pre-split pattern {pattern!r} does not cut a text into pieces that join "
                            f"back into it, as a pre-split pattern must; train the tokenizer again")
        self.ranks = {pair: MIN_VOCAB_SIZE + rank for rank, pair in enumerate(self.merges)}  # pair -> id
        self.vocab = [bytes([i]) for i in range(MIN_VOCAB_SIZE)]  # id -> the bytes it stands for
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._cache: dict[str, list[int]] = {}  # chunk -> its ids; text repeats its words

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text`` (give it the training split only)."""
        if type(vocab_size) is not int or not MIN_VOCAB_SIZE <= vocab_size <= MAX_VOCAB_SIZE:
            raise ConfigError(f"vocab_size must be an integer from {MIN_VOCAB_SIZE} (the bytes, no merges) "
                              f"to {MAX_VOCAB_SIZE:,}, got {vocab_size!r}")
        if not isinstance(text, str) or not text:
            raise DataError("BPE needs a non-empty text to learn its merges from")
        chunk_counts = Counter(split_text(text, pattern))  # each distinct chunk once: far fewer than bytes
        pairs = PairCounts([list(c.encode("utf-8")) for c in chunk_counts], list(chunk_counts.values()))
        merges = []
        for new_id in range(MIN_VOCAB_SIZE, vocab_size):
            if (pair := pairs.best()) is None:
                raise DataError(f"the text allows only {len(merges)} merges (every chunk is one token by "
                                f"then); use vocab_size <= {MIN_VOCAB_SIZE + len(merges)} or a longer text")
            pairs.merge(pair, new_id)
            merges.append(pair)
        return cls(merges, pattern)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary: 256 bytes plus one per merge."""
        return MIN_VOCAB_SIZE + len(self.merges)

    def unknown_chars(self, text: str) -> list[str]:
        """Always empty: every character is UTF-8 bytes, and every byte is a token."""
        return []

    def _encode_chunk(self, chunk: str) -> list[int]:
        """One chunk's ids: merge the earliest-learned pair present, until no learned pair is left."""
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            # The pair that was merged first in training; pairs never merged rank after all others.
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = merge(ids, pair, self.ranks[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        """Text to token ids; every string encodes (a lone surrogate is a `DataError`)."""
        out = []
        for chunk in self.pattern.findall(text):
            if (ids := self._cache.get(chunk)) is None:
                try:
                    ids = self._cache[chunk] = self._encode_chunk(chunk)
                except UnicodeEncodeError as err:
                    raise DataError(f"the text holds {chunk[err.start]!r}, a lone surrogate that is not a "
                                    f"character and has no UTF-8 bytes; remove it") from None
            out.extend(ids)
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Token ids to the bytes they stand for; an id outside the vocabulary is a `DataError`."""
        return b"".join(look_up(self.vocab, ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids to text; bytes that are not UTF-8 (a sample cut mid-character) become "\\ufffd"."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        """Plain lists, ints and strings (a checkpoint loads with ``torch.load(weights_only=True)``)."""
        return {"kind": "bpe", "vocab_size": self.vocab_size, "pattern": self.pattern.pattern,
                "merges": [list(pair) for pair in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        """The tokenizer that `to_dict` described; a malformed description is a `DataError`."""
        if not isinstance(d, dict) or d.get("kind") != "bpe" or not isinstance(d.get("merges"), list):
            raise DataError("not a BPE tokenizer description (expected {'kind': 'bpe', 'merges': [...]})")
        tokenizer = cls(d["merges"], d.get("pattern", GPT2_SPLIT_PATTERN))
        if d.get("vocab_size", tokenizer.vocab_size) != tokenizer.vocab_size:
            raise DataError(f"the description says vocab_size {d['vocab_size']} but its "
                            f"{len(tokenizer.merges)} merges make {tokenizer.vocab_size}")
        return tokenizer

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, BPETokenizer) and self.merges == other.merges
                and self.pattern.pattern == other.pattern.pattern)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gptlib.bpe``: train on Tiny Shakespeare's training split, report time and compression."""
    parser = argparse.ArgumentParser(prog="python -m gptlib.bpe", description=main.__doc__)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--data", default=None, help="a UTF-8 text file (default: Tiny Shakespeare)")
    args = parser.parse_args(argv)
    from gptlib.data import load_text
    text = load_text(args.data, progress=False)
    n = int(0.9 * len(text))  # the same 90/10 split as the character model's
    train_text, val_text = text[:n], text[n:]
    t0 = time.perf_counter()
    tokenizer = BPETokenizer.train(train_text, args.vocab_size)
    t1 = time.perf_counter()
    val_ids = tokenizer.encode(val_text)
    print(f"trained vocab_size {tokenizer.vocab_size} on {len(train_text.encode()):,} bytes in {t1 - t0:.2f} "
          f"s; encoded the validation text in {time.perf_counter() - t1:.2f} s")
    print(f"validation: {len(val_text.encode()) / len(val_ids):.3f} bytes per token "
          f"({len(val_text):,} characters -> {len(val_ids):,} tokens)")
    assert tokenizer.decode(val_ids) == val_text


if __name__ == "__main__":
    main()
