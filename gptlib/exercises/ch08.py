"""Self-checks for chapter 8, "Byte-pair encoding".

    from gptlib.exercises import ch08
    ch08.cl100k_pattern(pattern)          # exercise 1: GPT-4's pre-split in Python's re
    ch08.bytes_per_token(measure)         # exercise 3: the compression of a text
    ch08.special_token(Tokenizer)         # exercise 4: <|endoftext|>, never made by the merges
"""

import re

from gptlib.bpe import GPT2_SPLIT_PATTERN, MIN_VOCAB_SIZE, BPETokenizer
from gptlib.exercises import Verdict, correct, not_yet, run_answer, run_number

# tiktoken's cl100k_base pattern, with \p{L} written [^\W\d_] and \p{N} written \d as in chapter 8.
_CL100K = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}"""
           r"""| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
_SAMPLES = [
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "I'LL pay thee 12345 ducats,   DON'T fear.\n\n  Exit.",
    "in 1599, (said he) x_1 = 3.14159;\r\n\r\n    return -42",
]


def cl100k_pattern(pattern) -> Verdict:
    """Exercise 1: ``pattern`` (a string for Python's ``re``) splits text as GPT-4's cl100k_base does."""
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as err:
        return not_yet(f"re cannot compile it: {err}")
    for text in _SAMPLES:
        got, want = compiled.findall(text), re.findall(_CL100K, text)
        if got == want:
            continue
        if "".join(got) != text:
            return not_yet(f"on {text!r} the chunks do not join back to the text: every character must "
                           "land in exactly one chunk (end with the whitespace alternatives)")
        if pattern == GPT2_SPLIT_PATTERN:
            return not_yet("that is GPT-2's pattern; GPT-4's splits numbers into runs of at most three "
                           "digits and matches contractions in any case")
        first = next(i for i, (a, b) in enumerate(zip(got + [None] * len(want), want)) if a != b)
        return not_yet(f"on {text!r}, chunk {first} is {got[first] if first < len(got) else None!r} "
                       f"where cl100k_base has {want[first]!r}")
    return correct(f"the same chunks as cl100k_base on {len(_SAMPLES)} texts")


def bytes_per_token(measure) -> Verdict:
    """Exercise 3: ``measure(tokenizer, text)`` gives the UTF-8 bytes per token of ``text``."""
    tokenizer = BPETokenizer.train("the cat sat on the mat, and the rat ate the hat. " * 20, 270)
    for text in ["the cat ate the rat", "Le chat a mangé le gâteau à côté."]:
        got = run_number(measure, tokenizer, text, what="measure(tokenizer, text)")
        if isinstance(got, Verdict):
            return got
        ids = tokenizer.encode(text)
        want = len(text.encode("utf-8")) / len(ids)
        if abs(got - want) < 1e-9:
            continue
        if abs(got - len(text) / len(ids)) < 1e-9:
            return not_yet(f"on {text!r} you count characters; a token stands for bytes, and 'é' is two")
        if abs(got - len(ids) / len(text.encode("utf-8"))) < 1e-9:
            return not_yet("that is tokens per byte; divide the other way round")
        return not_yet("divide the number of UTF-8 bytes of the text by the number of its tokens")
    return correct("bytes per token, on English and on French with accents")


def special_token(tokenizer_class) -> Verdict:
    """Exercise 4: ``tokenizer_class(merges)`` is a `BPETokenizer` whose ``encode`` turns the literal
    ``<|endoftext|>`` into one id, the first after the merges, and whose ``decode`` turns it back."""
    base = BPETokenizer.train("the end of one play, the start of the next. " * 20, 270)
    tok = run_answer(tokenizer_class, base.merges, what="tokenizer_class(merges)")
    if isinstance(tok, Verdict):
        return tok
    special = MIN_VOCAB_SIZE + len(base.merges)
    text = "the end.<|endoftext|>the start<|endoftext|><|endoftext|>"
    ids = run_answer(tok.encode, text, what="encode")
    if isinstance(ids, Verdict):
        return ids
    if list(ids).count(special) != 3:
        return not_yet(f"encode gives {list(ids).count(special)} special ids for 3 <|endoftext|>: split "
                       f"the text on the literal string first; the special id is {special}, the first "
                       "id after the merges")
    pieces = text.split("<|endoftext|>")
    if [i for i in ids if i != special] != [i for p in pieces for i in base.encode(p)]:
        return not_yet("the text between the special tokens must encode as the plain tokenizer "
                       "encodes it")
    back = run_answer(tok.decode, ids, what="decode")
    if back != text:
        return not_yet(f"decode gives {back!r}, not the text back: map the special id to its string")
    lookalike = "<|endoftext|"  # almost the special string: ordinary bytes
    plain = tok.encode(lookalike)
    if special in plain or plain != base.encode(lookalike):
        return not_yet("text that merely looks like the special token must encode as ordinary bytes")
    return correct(f"<|endoftext|> is id {special}, decodes back, and no other text makes it")
