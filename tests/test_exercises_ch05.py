"""Chapter 5's self-checks accept the worked solutions and reject the typical wrong answers, with a
hint and never a traceback.

Run: pytest tests/test_exercises_ch05.py
"""

import torch
import torch.nn as nn

from gptlib.attention import MultiHeadAttention
from gptlib.exercises import Verdict, ch05
from gptlib.model import Block, FeedForward


class PostNormBlock(nn.Module):
    """The chapter's solution to exercise 1."""

    def __init__(self, config):
        super().__init__()
        self.sa = MultiHeadAttention(config)
        self.ffwd = FeedForward(config)
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)

    def forward(self, x):
        x = self.ln1(x + self.sa(x))
        x = self.ln2(x + self.ffwd(x))
        return x


class OneNormAtTheEnd(PostNormBlock):
    """Wrong: both additions first, one LayerNorm at the end."""

    def forward(self, x):
        x = x + self.sa(x)
        return self.ln2(self.ln1(x + self.ffwd(x)))


class WithoutNames(nn.Module):
    """Wrong: the right computation, but the layers under other names than Block's."""

    def __init__(self, config):
        super().__init__()
        self.attention = MultiHeadAttention(config)

    def forward(self, x):
        return x


def _not_yet(verdict, *words):
    assert isinstance(verdict, Verdict) and not verdict, verdict
    assert all(w in verdict.message for w in words), verdict.message
    assert "Traceback" not in verdict.message


def test_post_norm_block_accepts_the_solution():
    verdict = ch05.post_norm_block(PostNormBlock)
    assert verdict and "causal" in repr(verdict) and repr(verdict).startswith("✓ correct")


def test_post_norm_block_rejects_pre_norm_and_other_wrong_blocks():
    _not_yet(ch05.post_norm_block(Block), "pre-norm")  # the chapter's own block
    _not_yet(ch05.post_norm_block(OneNormAtTheEnd), "differs")
    _not_yet(ch05.post_norm_block(WithoutNames), "sa, ffwd, ln1, ln2")

    class Broken(PostNormBlock):
        def forward(self, x):
            raise ValueError("oops")

    _not_yet(ch05.post_norm_block(Broken), "ValueError", "oops")


def _dropout(x, p, training):  # the chapter's solution to exercise 2
    if not training or p == 0:
        return x
    keep = torch.rand_like(x) >= p
    return x * keep / (1 - p)


def test_dropout_accepts_the_solution_and_torchs():
    assert ch05.dropout(_dropout)
    assert ch05.dropout(lambda x, p, training: nn.functional.dropout(x, p, training))


def test_dropout_rejects_the_typical_mistakes():
    def unscaled(x, p, training):
        return x * (torch.rand_like(x) >= p) if training else x

    def keeps_p(x, p, training):
        return x * (torch.rand_like(x) < p) / (1 - p) if training else x

    def always_on(x, p, training):
        return _dropout(x, p, True)

    def in_place(x, p, training):
        return x.mul_(torch.rand_like(x) >= p).div_(1 - p) if training else x

    _not_yet(ch05.dropout(unscaled), "scale")
    _not_yet(ch05.dropout(keeps_p), "probability of dropping")
    _not_yet(ch05.dropout(always_on), "training=False")
    _not_yet(ch05.dropout(in_place), "in place")
    _not_yet(ch05.dropout(lambda x, p: x), "TypeError")


@torch.no_grad()
def _loss_without_dropout(model, xb, yb):  # the chapter's solution to exercise 3
    was_training = model.training
    model.eval()
    _, loss = model(xb, yb)
    model.train(was_training)
    return loss.item()


def test_eval_loss_accepts_the_solution():
    assert ch05.eval_loss(_loss_without_dropout)


def test_eval_loss_rejects_dropout_left_on_and_a_mode_not_restored():
    def dropout_on(model, xb, yb):
        return model(xb, yb)[1].item()

    def left_in_eval(model, xb, yb):
        model.eval()
        return model(xb, yb)[1].item()

    def always_back_to_train(model, xb, yb):
        model.eval()
        loss = model(xb, yb)[1].item()
        model.train()
        return loss

    _not_yet(ch05.eval_loss(dropout_on), "eval mode")
    _not_yet(ch05.eval_loss(left_in_eval), "put it back")
    _not_yet(ch05.eval_loss(always_back_to_train), "put it back")
    _not_yet(ch05.eval_loss(lambda model, xb, yb: "low"), "number")
