"""Self-checks for chapter 7, "Training the full GPT".

    from gptlib.exercises import ch07
    ch07.previous_score(score)        # exercise 3: a head's mean weight on the previous character
    ch07.best_step(pick)              # exercise 4: the step whose weights best.pt keeps
    ch07.lr_schedule(lr)              # exercise 5: warm-up, then cosine decay
"""

import math

import torch

from gptlib.config import TrainConfig
from gptlib.exercises import Verdict, correct, not_yet, run_answer, run_number
from gptlib.training import get_lr


def previous_score(score) -> Verdict:
    """Exercise 3: ``score(weights)`` gives, for one head's (T,T) attention weights, the mean weight a
    token puts on the token just before it, over the rows 1..T-1 (row 0 has no previous token)."""
    g = torch.Generator().manual_seed(7)
    T = 9
    scores = torch.randn(T, T, generator=g).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    weights = scores.softmax(-1)  # (T,T), causal
    got = run_number(score, weights, what="score(weights)", hint="return one number for the head")
    if isinstance(got, Verdict):
        return got
    t = torch.arange(1, T)
    want = weights[t, t - 1].mean().item()
    if abs(got - want) < 1e-6:
        return correct(f"{got:.4f} on a random causal head, as head_summary counts it")
    if abs(got - weights[t, t].mean().item()) < 1e-6:
        return not_yet("that is the weight on the token itself (the diagonal); take the entry one "
                       "column to the left of it")
    if abs(got - weights.diagonal(-1).sum().item() / T) < 1e-6:
        return not_yet("divide by the number of rows that have a previous token, T - 1, not T")
    return not_yet("for row t, take the weight in column t - 1, for t = 1 .. T-1, and average them")


def _best(history) -> int:
    return min(zip(history["val_loss"], history["step"]))[1]


def best_step(pick) -> Verdict:
    """Exercise 4: ``pick(history)`` returns the step whose weights ``best.pt`` keeps, from a history
    with the lists ``step``, ``train_loss`` and ``val_loss``."""
    cases = [
        {"step": [0, 100, 200, 300, 400], "train_loss": [4.2, 2.4, 2.0, 1.7, 1.4],
         "val_loss": [4.2, 2.5, 2.2, 2.3, 2.6]},  # turns up after step 200
        {"step": [0, 100, 200, 300], "train_loss": [4.2, 2.4, 2.1, 1.9],
         "val_loss": [4.2, 2.6, 2.3, 2.2]},  # still falling: the last one
    ]
    for history in cases:
        got = run_answer(pick, {k: list(v) for k, v in history.items()}, what="pick(history)")
        if isinstance(got, Verdict):
            return got
        want = _best(history)
        if got == want:
            continue
        if got == history["step"][-1]:
            return not_yet("that is the last evaluation; best.pt is rewritten only when the validation "
                           "loss sets a new best")
        if got == min(zip(history["train_loss"], history["step"]))[1]:
            return not_yet("that is where the training loss is lowest; best.pt follows the validation "
                           "loss")
        if got in range(len(history["step"])) and got not in history["step"]:
            return not_yet("return the step (from history['step']), not its index in the list")
        return not_yet("find the evaluation with the lowest validation loss and return its step")
    return correct("the lowest validation loss's step, whether the curve turned up or not")


def lr_schedule(lr) -> Verdict:
    """Exercise 5: ``lr(step, config)`` is the learning rate of a `TrainConfig`'s schedule: a linear
    warm-up over ``warmup_iters`` steps, then a cosine decay to ``min_lr`` at ``max_iters``."""
    configs = [TrainConfig(max_iters=700, warmup_iters=50, learning_rate=2e-3, min_lr=2e-4,
                           decay_lr=True),
               TrainConfig(max_iters=5000, warmup_iters=100, learning_rate=1e-3, min_lr=1e-4,
                           decay_lr=True)]
    for config in configs:
        for step in sorted({0, 1, config.warmup_iters - 1, config.warmup_iters,
                            config.warmup_iters + 1, config.max_iters // 2, config.max_iters - 1,
                            config.max_iters, config.max_iters + 10}):
            got = run_answer(lr, step, config, what=f"lr({step}, config)")
            if isinstance(got, Verdict):
                return got
            want = get_lr(step, config)
            try:
                ok = math.isclose(float(got), want, rel_tol=1e-6)
            except (TypeError, ValueError):
                return not_yet(f"lr({step}, config) returned {type(got).__name__}; return a number")
            if ok:
                continue
            if step < config.warmup_iters:
                return not_yet(f"at step {step} of a {config.warmup_iters}-step warm-up: the warm-up "
                               "rises linearly to learning_rate, reaching it as the warm-up ends "
                               "(step 0 gets learning_rate * 1 / warmup_iters)")
            if step >= config.max_iters:
                return not_yet(f"at step {step}, past max_iters: the rate stays at min_lr")
            return not_yet(f"at step {step}: after the warm-up, the cosine goes from learning_rate to "
                           "min_lr over the remaining max_iters - warmup_iters steps, "
                           "min_lr + (learning_rate - min_lr) * (1 + cos(pi * progress)) / 2")
    return correct("warm-up and cosine decay as the trainer's, on the cpu and lecture presets")
