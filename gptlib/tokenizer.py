"""`CharTokenizer`: every distinct character of the text is one token (65 for Tiny Shakespeare)."""

from collections.abc import Iterable, Sequence

from gptlib.errors import DataError


class CharTokenizer:
    """Maps characters to integer ids and back; the vocabulary is the sorted set of characters."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars) or not 0 < len(set(chars)) == len(chars):
            raise DataError("a CharTokenizer needs a non-empty list of distinct single characters")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}  # string to integer

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose vocabulary is every character that occurs in ``text``."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        """The characters of ``text`` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.stoi))

    def encode(self, text: str) -> list[int]:
        """Text to token ids; an unknown character is a `ValueError` that names it."""
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError:
            unknown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in self.unknown_chars(text))
            raise DataError(f"unknown character(s) {unknown}: not in this vocabulary of "
                            f"{self.vocab_size} characters; remove or replace them") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids to text; an id outside the vocabulary is a `ValueError`."""
        return "".join(look_up(self.chars, ids))

    def to_dict(self) -> dict:
        """The vocabulary as plain data, for checkpoints (`tokenizer_from_dict` reads it back)."""
        return {"kind": "char", "chars": list(self.chars)}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars


def look_up(vocab: Sequence, ids: Iterable[int]) -> list:
    """``vocab[i]`` for each token id ``i``; an id outside the vocabulary is a `DataError`."""
    ids = list(map(int, ids))
    if outside := [i for i in ids if not 0 <= i < len(vocab)]:
        raise DataError(f"token id {outside[0]} is outside the vocabulary (0..{len(vocab) - 1})")
    return [vocab[i] for i in ids]
