"""The self-checks of chapters 1-4: each accepts the reference solution (the one the chapter's folded
solution cell runs) and rejects a typical wrong answer with a hint, and never raises on a reader's
broken code.

Run: pytest tests/test_exercises_ch01_04.py
"""

import math
import re
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.batches import train_val_split
from gptlib.bigram import BigramLanguageModel
from gptlib.config import GPTConfig
from gptlib.data import load_text
from gptlib.exercises import Verdict, ch01, ch02, ch03, ch04
from gptlib.ladder import MultiHeadLM, SingleHeadLM
from gptlib.tokenizer import CharTokenizer


def passes(verdict):
    assert isinstance(verdict, Verdict) and verdict.passed, verdict
    assert str(verdict).startswith("✓ correct: ")


def fails(verdict, hint=""):
    assert isinstance(verdict, Verdict) and not verdict.passed, verdict
    assert str(verdict).startswith("✗ not yet: ") and hint in verdict.message, verdict


@pytest.fixture(scope="module")
def text():
    return load_text()


# --- chapter 1 ---------------------------------------------------------------------------------------

def test_ch01_split_characters(text):
    n = int(0.9 * len(text))
    train, val = set(text[:n]), set(text[n:])
    passes(ch01.split_characters(train - val, val - train))
    fails(ch01.split_characters(val - train, train - val), "swapped")
    fails(ch01.split_characters(set("$&"), val - train))  # two missing
    fails(ch01.split_characters(5, 6), "pass two collections")


def test_ch01_word_tokens(text):
    tokens = re.findall(r"\w+|\W", text)
    passes(ch01.word_tokens(tokens, len(set(tokens))))
    fails(ch01.word_tokens(tokens, len(tokens)), "distinct")  # the length, not the vocabulary
    fails(ch01.word_tokens(text.split(), len(set(text.split()))), "join")  # the spaces are lost
    fails(ch01.word_tokens(list(text), 65), "another cut")


def test_ch01_get_batch_gather():
    def reference(data, batch_size, block_size, generator):
        ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        chunk = data[ix[:, None] + torch.arange(block_size + 1)]
        return chunk[:, :-1], chunk[:, 1:]

    def unshifted(data, batch_size, block_size, generator):
        x, _ = reference(data, batch_size, block_size, generator)
        return x, x

    def off_by_one(data, batch_size, block_size, generator):
        x, y = reference(data, batch_size, block_size, generator)
        return x, y + 1  # every target one too high

    passes(ch01.get_batch_gather(reference))
    fails(ch01.get_batch_gather(unshifted), "shifted by one")
    fails(ch01.get_batch_gather(off_by_one), "y is not")
    fails(ch01.get_batch_gather(lambda *args: 1 / 0), "ZeroDivisionError")


def test_ch01_examples_per_batch():
    passes(ch01.examples_per_batch(64 * 256))
    fails(ch01.examples_per_batch(64), "one per position")
    fails(ch01.examples_per_batch(64 * 257), "not one more")


# --- chapter 2 ---------------------------------------------------------------------------------------

def test_ch02_uniform_start():
    model = BigramLanguageModel(65)
    nn.init.zeros_(model.token_embedding_table.weight)
    passes(ch02.uniform_start(model))
    torch.manual_seed(0)
    fresh = BigramLanguageModel(65)
    nn.init.normal_(fresh.token_embedding_table.weight)  # the lecture's N(0, 1) table: loss ~4.8
    fails(ch02.uniform_start(fresh), "not ln 65")
    fails(ch02.uniform_start(object()), "BigramLanguageModel")


def _counts(data, V):
    counts = torch.ones(V, V)
    counts.index_put_((data[:-1], data[1:]), torch.ones(len(data) - 1), accumulate=True)
    return counts / counts.sum(1, keepdim=True)


def test_ch02_counts_model(text):
    tokenizer = CharTokenizer.from_text(text)
    train, val = train_val_split(torch.tensor(tokenizer.encode(text), dtype=torch.long))
    model = BigramLanguageModel(65)
    with torch.no_grad():
        model.token_embedding_table.weight.copy_(_counts(train, 65).log())
    passes(ch02.counts_model(model))
    with torch.no_grad():
        model.token_embedding_table.weight.copy_(_counts(train, 65))  # probabilities, not logits
    fails(ch02.counts_model(model), "log-probabilities")
    with torch.no_grad():
        model.token_embedding_table.weight.copy_(_counts(val, 65).log())  # counted on val
    fails(ch02.counts_model(model), "training split")


def test_ch02_cross_entropy():
    def reference(logits, targets):
        return -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean()

    def summed(logits, targets):
        return -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).sum()

    def unstable(logits, targets):  # softmax by hand: exp overflows for large logits
        probs = logits.exp() / logits.exp().sum(-1, keepdim=True)
        return -probs.gather(-1, targets.unsqueeze(-1)).log().mean()

    def no_log(logits, targets):
        return -F.softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).mean()

    passes(ch02.cross_entropy(reference))
    fails(ch02.cross_entropy(summed), "mean")
    fails(ch02.cross_entropy(unstable), "overflows")
    fails(ch02.cross_entropy(no_log), "differs")
    fails(ch02.cross_entropy(lambda logits, targets: logits.mean(-1)), "one number")


# --- chapter 3 ---------------------------------------------------------------------------------------

class _Head(nn.Module):
    """chapter 3's Head: explicit sizes, causal"""

    def __init__(self, n_embd, head_size, block_size):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))

    def scores(self, x):
        k, q = self.key(x), self.query(x)
        return q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5

    def forward(self, x):
        T = x.shape[1]
        wei = self.scores(x).masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


class _EncoderHead(_Head):
    def forward(self, x):
        return F.softmax(self.scores(x), dim=-1) @ self.value(x)


class _UnscaledEncoderHead(_Head):
    def forward(self, x):
        return F.softmax(self.query(x) @ self.key(x).transpose(-2, -1), dim=-1) @ self.value(x)


def test_ch03_encoder_head():
    passes(ch03.encoder_head(_EncoderHead))
    fails(ch03.encoder_head(_Head), "hides the future")  # the mask is still there
    fails(ch03.encoder_head(_UnscaledEncoderHead), "keep the scale")
    fails(ch03.encoder_head(lambda *sizes: 1 / 0), "ZeroDivisionError")  # a verdict, not a traceback


def test_ch03_einsum_scores():
    passes(ch03.einsum_scores("btd,bsd->bts"))
    passes(ch03.einsum_scores("bij,bkj->bik"))  # any letters
    fails(ch03.einsum_scores("btd,bsd->bst"), "transposed")
    fails(ch03.einsum_scores("btd,bsd->bt"), "(B, T, T)")
    fails(ch03.einsum_scores("btd,bsd->bxs"), "raised")  # x is no input's index
    fails(ch03.einsum_scores(42), "string")


def test_ch03_causal_softmax():
    def reference(scores):
        T = scores.shape[-1]
        return F.softmax(scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")), -1)

    def after(scores):  # zero the future after the softmax: rows no longer sum to 1
        return F.softmax(scores, -1) * torch.tril(torch.ones(scores.shape[-1], scores.shape[-1]))

    passes(ch03.causal_softmax(reference))
    fails(ch03.causal_softmax(after), "do not sum to 1")
    fails(ch03.causal_softmax(lambda s: F.softmax(s, -1)), "above the diagonal")
    fails(ch03.causal_softmax(lambda s: s.tril()), "do not sum to 1")


# --- chapter 4 ---------------------------------------------------------------------------------------

class _NoPositionSingleHeadLM(SingleHeadLM):
    def __init__(self, config):
        super().__init__(config)
        del self.position_embedding_table

    def forward(self, idx, targets=None):
        logits = self.lm_head(self.sa_head(self.token_embedding_table(idx)))
        return logits, None


class _NoAttentionLM(_NoPositionSingleHeadLM):
    def forward(self, idx, targets=None):  # positions gone, and the head too: a bigram
        return self.lm_head(self.token_embedding_table(idx)), None


def test_ch04_no_position_lm():
    passes(ch04.no_position_lm(_NoPositionSingleHeadLM))
    fails(ch04.no_position_lm(SingleHeadLM), "position embedding")  # the positions are still there
    fails(ch04.no_position_lm(_NoAttentionLM), "keep the attention head")
    fails(ch04.no_position_lm(lambda config: 1 / 0), "ZeroDivisionError")


def test_ch04_heads_parameters():
    base = GPTConfig(vocab_size=65, block_size=8, n_embd=32, n_head=4, n_layer=3, dropout=0.0)
    counts = {k: sum(p.numel() for p in MultiHeadLM(replace(base, n_head=k)).parameters())
              for k in (1, 2, 4, 8)}
    passes(ch04.heads_parameters(counts))
    # a hand count that forgets the biases of the projection and the head
    fails(ch04.heads_parameters({k: n - 32 - 65 for k, n in counts.items()}), "biases")
    fails(ch04.heads_parameters({1: counts[1], 2: counts[2]}), "missing")
    fails(ch04.heads_parameters([1, 2, 4, 8]), "dict")


def test_ch04_causality_test():
    @torch.no_grad()
    def reference(model, idx):
        model.eval()
        idx2 = idx.clone()
        idx2[:, 5:] = (idx2[:, 5:] + 1) % 65
        return torch.allclose(model(idx)[0][:, :5], model(idx2)[0][:, :5])

    @torch.no_grad()
    def every_position(model, idx):  # compares the future positions too: never "causal"
        idx2 = idx.clone()
        idx2[:, 5:] = (idx2[:, 5:] + 1) % 65
        return torch.allclose(model(idx)[0], model(idx2)[0])

    @torch.no_grad()
    def unchanged(model, idx):  # forgets to change the tokens: always "causal"
        return torch.allclose(model(idx)[0][:, :5], model(idx.clone())[0][:, :5])

    passes(ch04.causality_test(reference))
    fails(ch04.causality_test(every_position), "compare only positions 0 to 4")
    fails(ch04.causality_test(unchanged), "did you change the tokens")


def test_the_checks_never_print_the_answer(text):
    """A failing verdict gives a hint, not the number or the code the exercise asks for."""
    assert str(64 * 256) not in ch01.examples_per_batch(1).message
    assert "16,384" not in ch01.examples_per_batch(1).message
    assert "bts" not in ch03.einsum_scores("btd,bsd->bst").message
    assert f"{math.log(65):.4f}" not in ch02.uniform_start(BigramLanguageModel(65)).message
