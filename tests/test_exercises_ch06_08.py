"""The self-checks of chapters 6-8 and of "Training on more than one GPU": each accepts the reference
solution and rejects a typical wrong answer with a hint (never the answer), and a reader's exception
is a verdict, not a traceback. The multi-GPU page's solutions, which no notebook runs, run here.

Run: pytest tests/test_exercises_ch06_08.py
"""

import math
import re
from pathlib import Path

import torch

from gptlib.bpe import GPT2_SPLIT_PATTERN, MIN_VOCAB_SIZE, BPETokenizer
from gptlib.exercises import ch06, ch07, ch08, multi_gpu
from gptlib.fast import FastGPT, readable_to_fast
from helpers import accepts, boom, rejects, solution_blocks

ROOT = Path(__file__).resolve().parent.parent


# chapter 6

def test_whole_mapping():
    def to_fast(gpt):
        fast = FastGPT(gpt.config)
        fast.load_state_dict(readable_to_fast(gpt.state_dict(), gpt.config))
        return fast

    accepts(ch06.whole_mapping(to_fast))
    rejects(ch06.whole_mapping(lambda gpt: FastGPT(gpt.config)), "load the mapped weights")
    rejects(ch06.whole_mapping(boom), "ZeroDivisionError")


def test_drop_probability():
    accepts(ch06.drop_probability(round(0.2 * 65536) / 65536))
    accepts(ch06.drop_probability(0.19999695))
    rejects(ch06.drop_probability(0.2), "threshold")
    rejects(ch06.drop_probability("a lot"))


def test_rescaled_dropout():
    accepts(ch06.rescaled_dropout(lambda wei, v, keep, p: ((wei * keep) @ v) / (1 - p)))
    rejects(ch06.rescaled_dropout(lambda wei, v, keep, p: (wei * keep) @ v), "rescaled")
    rejects(ch06.rescaled_dropout(lambda wei, v, keep, p: wei @ v / (1 - p)), "mask")
    rejects(ch06.rescaled_dropout(boom), "ZeroDivisionError")


# chapter 7

def test_previous_score():
    def score(w):
        t = torch.arange(1, w.shape[0])
        return w[t, t - 1].mean().item()

    accepts(ch07.previous_score(score))
    rejects(ch07.previous_score(lambda w: w.diagonal(-1).sum().item() / w.shape[0]), "T - 1")
    rejects(ch07.previous_score(lambda w: w.diagonal()[1:].mean().item()), "diagonal")
    rejects(ch07.previous_score(boom), "ZeroDivisionError")


def test_best_step():
    def pick(history):
        best = min(range(len(history["step"])), key=history["val_loss"].__getitem__)
        return history["step"][best]

    accepts(ch07.best_step(pick))
    rejects(ch07.best_step(lambda h: h["step"][-1]), "last evaluation")
    rejects(ch07.best_step(lambda h: min(range(len(h["step"])), key=h["val_loss"].__getitem__)),
            "not its index")


def test_lr_schedule():
    def lr(step, c):
        if step < c.warmup_iters:
            return c.learning_rate * (step + 1) / c.warmup_iters
        progress = min(1.0, (step - c.warmup_iters) / (c.max_iters - c.warmup_iters))
        return c.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (c.learning_rate - c.min_lr)

    def no_warmup(step, c):
        progress = min(1.0, step / c.max_iters)
        return c.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (c.learning_rate - c.min_lr)

    accepts(ch07.lr_schedule(lr))
    rejects(ch07.lr_schedule(no_warmup), "warm-up")
    rejects(ch07.lr_schedule(lambda step, c: c.learning_rate * (step + 1) / c.warmup_iters
                             if step < c.warmup_iters else c.learning_rate), "cosine")


# chapter 8

CL100K = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}"""
          r"""| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def test_cl100k_pattern():
    accepts(ch08.cl100k_pattern(CL100K))
    rejects(ch08.cl100k_pattern(GPT2_SPLIT_PATTERN), "GPT-2")
    rejects(ch08.cl100k_pattern(r"\w+"), "join back")
    rejects(ch08.cl100k_pattern("(unclosed"), "compile")


def test_bytes_per_token():
    accepts(ch08.bytes_per_token(lambda tok, s: len(s.encode("utf-8")) / len(tok.encode(s))))
    rejects(ch08.bytes_per_token(lambda tok, s: len(s) / len(tok.encode(s))), "characters")
    rejects(ch08.bytes_per_token(lambda tok, s: len(tok.encode(s)) / len(s.encode("utf-8"))),
            "other way")


class WithSpecial(BPETokenizer):
    SPECIAL = "<|endoftext|>"

    def __init__(self, merges, **kw):
        super().__init__(merges, **kw)
        self.special_id = MIN_VOCAB_SIZE + len(self.merges)

    def encode(self, text):
        ids = []
        for piece in re.split(f"({re.escape(self.SPECIAL)})", text):
            ids += [self.special_id] if piece == self.SPECIAL else super().encode(piece)
        return ids

    def decode(self, ids):
        parts, run = [], []
        for i in ids:
            if i == self.special_id:
                parts += [super().decode(run), self.SPECIAL]
                run = []
            else:
                run.append(i)
        return "".join(parts + [super().decode(run)])


def test_special_token():
    accepts(ch08.special_token(WithSpecial))
    rejects(ch08.special_token(BPETokenizer), "special ids")
    rejects(ch08.special_token(boom), "ZeroDivisionError")


# Training on more than one GPU

def test_row_weights():
    accepts(multi_gpu.row_weights([1 / 12] * 4 + [1 / 9] * 6))
    rejects(multi_gpu.row_weights([0.1] * 10), "one big batch")
    rejects(multi_gpu.row_weights([0.1] * 9), "10 numbers")


def test_accumulate():
    def step(model, x, y, grad_accum):
        for xb, yb in zip(x.chunk(grad_accum), y.chunk(grad_accum)):
            (model(xb, yb)[1] / grad_accum).backward()

    def undivided(model, x, y, grad_accum):
        for xb, yb in zip(x.chunk(grad_accum), y.chunk(grad_accum)):
            model(xb, yb)[1].backward()

    accepts(multi_gpu.accumulate(step))
    rejects(multi_gpu.accumulate(undivided), "too big")
    rejects(multi_gpu.accumulate(boom), "ZeroDivisionError")


def test_max_parameters():
    accepts(multi_gpu.max_parameters(5e9, 4e10))
    rejects(multi_gpu.max_parameters(2e10, 1.6e11), "4 bytes")
    rejects(multi_gpu.max_parameters(5e9, 5e9), "1/8")


def test_multi_gpu_page_solutions_run_and_pass(capsys):
    """Every Python solution on the page runs, and a self-checked one prints a passing verdict."""
    page = ROOT / "book" / "multi_gpu.md"
    exercises = re.findall(r"^(\d+)\. \*\*", page.read_text().split("## Exercises", 1)[1], flags=re.M)
    code = solution_blocks(page)
    assert len(exercises) >= 5 and len(code) >= 3
    assert all(block.startswith("# Solution to exercise") for block in code)
    namespace = {}
    for block in code:
        exec(compile(block, str(page), "exec"), namespace)
    out = capsys.readouterr().out
    assert out.count("✓ correct") >= 3 and "✗ not yet" not in out, out
