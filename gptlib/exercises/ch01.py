"""Self-checks for chapter 1's exercises (the data).

    from gptlib.exercises import ch01
    ch01.split_characters(train_only, val_only)   # exercise 1
    ch01.word_tokens(tokens, vocab_size)          # exercise 2
    ch01.get_batch_gather(get_batch_gather)       # exercise 3
    ch01.examples_per_batch(n)                    # exercise 4
"""

import re

import torch

from gptlib.batches import get_batch
from gptlib.data import load_text
from gptlib.exercises import Verdict, correct, not_yet, run_answer


def _split_sets() -> tuple[set, set]:
    text = load_text()
    n = int(0.9 * len(text))  # the chapter's 90/10 cut
    return set(text[:n]), set(text[n:])


def split_characters(train_only, val_only) -> Verdict:
    """Exercise 1: the characters that occur only in the training text, and only in the validation
    text (any iterable of characters: a set, a list, a string)."""
    try:
        train_only, val_only = set(train_only), set(val_only)
    except TypeError:
        return not_yet("pass two collections of characters: a set, a list or a string each")
    train, val = _split_sets()
    if train_only == val - train and val_only == train - val and train_only != val_only:
        return not_yet("the two answers are swapped: which split has the characters, which lacks them?")
    if train_only != train - val:
        return not_yet("not the characters of the training text that the validation text never uses: "
                       "compare set(text[:n]) with set(text[n:]), n = int(0.9 * len(text))")
    if val_only != val - train:
        return not_yet("not the characters of the validation text that the training text lacks")
    return correct("those are the characters only one split has")


def word_tokens(tokens, vocab_size) -> Verdict:
    """Exercise 2: the text cut by ``re.findall(r"\\w+|\\W", text)``, and its number of distinct tokens."""
    text = load_text()
    try:
        joined = "".join(tokens)
    except TypeError:
        return not_yet("tokens should be a list of strings, as re.findall returns")
    if joined != text:
        return not_yet('"".join(tokens) is not the text: every character must be in exactly one token')
    if len(set(tokens)) != len(set(re.findall(r"\w+|\W", text))):
        return not_yet(r'these tokens are another cut of the text than re.findall(r"\w+|\W", text)')
    if vocab_size == len(tokens):
        return not_yet("that is the length of the text in tokens; the vocabulary counts distinct ones")
    if vocab_size != len(set(tokens)):
        return not_yet("the vocabulary size is the number of distinct tokens: len(set(tokens))")
    return correct("the text, cut into words and single characters, and its vocabulary")


def get_batch_gather(fn) -> Verdict:
    """Exercise 3: ``fn(data, batch_size, block_size, generator)`` draws the same batches as
    `gptlib.batches.get_batch` from the same generator seed."""
    data = torch.arange(1000)  # distinct values: an off-by-one shows
    for seed in (0, 1):
        ours = run_answer(fn, data, 4, 8, torch.Generator().manual_seed(seed), what="your get_batch")
        if isinstance(ours, Verdict):
            return ours
        x, y = get_batch(data, 4, 8, torch.Generator().manual_seed(seed))
        try:
            xb, yb = ours
        except (TypeError, ValueError):
            return not_yet("return two tensors, x and y")
        if tuple(xb.shape) != (4, 8) or tuple(yb.shape) != (4, 8):
            return not_yet(f"x and y should be (B, T) = (4, 8); got {tuple(xb.shape)} and {tuple(yb.shape)}")
        if torch.equal(xb, x) and torch.equal(yb, xb):
            return not_yet("y equals x: the targets are the same chunk shifted by one position")
        if not torch.equal(xb, x):
            return not_yet("x differs from get_batch's with the same seed: draw the start positions with "
                           "torch.randint(len(data) - block_size, (batch_size,), generator=generator)")
        if not torch.equal(yb, y):
            return not_yet("x is right but y is not: y is the (B, T+1) block's last T columns")
    return correct("the same batches as gptlib.batches.get_batch, in one gather")


def examples_per_batch(n) -> Verdict:
    """Exercise 4: how many (context, target) examples one batch of 64 chunks of 256 characters is."""
    if n == 64:
        return not_yet("each chunk holds not one example but one per position")
    if n == 64 * 257:
        return not_yet("a chunk of block_size + 1 characters gives block_size examples, not one more")
    if n != 64 * 256:
        return not_yet("count one example for every position of every chunk")
    return correct("one example per position of every chunk")
