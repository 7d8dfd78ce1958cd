"""Self-checks for chapter 5's exercises (the transformer block).

    from gptlib.exercises import ch05
    ch05.post_norm_block(PostNormBlock)   # exercise 1: a class built from a GPTConfig
    ch05.dropout(my_dropout)              # exercise 2: my_dropout(x, p, training) -> tensor
    ch05.eval_loss(loss_without_dropout)  # exercise 3: fn(model, xb, yb) -> the loss, dropout off

Each returns a `Verdict`: "correct" with what was confirmed, or "not yet" with a hint.
"""

from dataclasses import replace

import torch

from gptlib.config import GPTConfig
from gptlib.exercises import Verdict, correct, not_yet, run_answer

# A small config for the checks: 4 heads of 4 channels, context 8, no dropout unless a check adds it.
_CONFIG = GPTConfig(vocab_size=65, block_size=8, n_embd=16, n_head=4, n_layer=2, dropout=0.0)


def post_norm_block(block_class) -> Verdict:
    """Exercise 1: ``block_class(config)`` is the post-norm block, ``x = ln1(x + sa(x))`` then
    ``x = ln2(x + ffwd(x))``, with the layers named as in `gptlib.model.Block` (sa, ffwd, ln1, ln2)."""
    from gptlib.ladder import PostNormBlock
    from gptlib.model import Block

    torch.manual_seed(0)
    reference = PostNormBlock(_CONFIG)
    yours = run_answer(block_class, _CONFIG, what="your class")
    if isinstance(yours, Verdict):
        return yours
    try:
        yours.load_state_dict(reference.state_dict())
    except Exception as error:  # missing or extra layers: the reader's names differ from Block's
        return not_yet("give it the layers of Block, with the same names: sa, ffwd, ln1, ln2 "
                       f"(loading Block's weights said: {str(error).splitlines()[0]})")
    x = torch.randn(3, _CONFIG.block_size, _CONFIG.n_embd, generator=torch.Generator().manual_seed(1))
    out = run_answer(yours, x, what="your block")
    if isinstance(out, Verdict):
        return out
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return not_yet(f"a block keeps the shape (B,T,C) = {tuple(x.shape)}; "
                       f"yours returned {getattr(out, 'shape', type(out).__name__)}")
    with torch.no_grad():
        want = reference(x)
        pre = Block(_CONFIG)
        pre.load_state_dict(reference.state_dict())
        if torch.allclose(out, pre(x), atol=1e-5):
            return not_yet("that is the pre-norm block (normalise, then the sub-layer): in post-norm "
                           "the sub-layer reads x itself, and the LayerNorm comes after the addition")
    if not torch.allclose(out, want, atol=1e-5):
        return not_yet("the output differs from the post-norm block's: add each sub-layer's output to "
                       "x first, then normalise the sum (ln1 after attention, ln2 after feed-forward)")
    later = x.clone()
    later[:, 5:] = torch.randn(3, _CONFIG.block_size - 5, _CONFIG.n_embd)
    with torch.no_grad():
        if not torch.allclose(yours(later)[:, :5], out[:, :5], atol=1e-5):
            return not_yet("changing tokens after position 4 changed the outputs before it: "
                           "the attention must stay masked")
    return correct("post-norm, ln1(x + sa(x)) then ln2(x + ffwd(x)); shape kept; causal")


def dropout(fn) -> Verdict:
    """Exercise 2: ``fn(x, p, training)`` is dropout: in training, each element zeroed with
    probability ``p`` and the survivors scaled by 1/(1-p); at evaluation, ``x`` unchanged."""
    x = torch.rand(200_000, generator=torch.Generator().manual_seed(0)) + 0.5  # no zeros in x
    kept = x.clone()
    torch.manual_seed(0)
    off = run_answer(fn, x, 0.2, False)
    if isinstance(off, Verdict):
        return off
    if not torch.equal(x, kept):
        return not_yet("your function changed x in place: return a new tensor and leave x as it was")
    if not isinstance(off, torch.Tensor) or off.shape != x.shape or not torch.equal(off, x):
        return not_yet("with training=False dropout does nothing: return x unchanged")
    for p in (0.2, 0.5):
        y = run_answer(fn, x, p, True)
        if isinstance(y, Verdict):
            return y
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            return not_yet(f"return a tensor of x's shape {tuple(x.shape)}")
        if not torch.equal(x, kept):
            return not_yet("your function changed x in place: return a new tensor and leave x as it was")
        dropped = (y == 0).float().mean().item()
        if abs(dropped - (1 - p)) < 0.02 and abs(p - 0.5) > 0.1:
            return not_yet(f"with p={p} you zeroed about {dropped:.0%} of the elements: p is the "
                           "probability of dropping an element, not of keeping it")
        if abs(dropped - p) > 0.02:
            return not_yet(f"with p={p} about {p:.0%} of the elements should be zeroed, "
                           f"yours zeroed {dropped:.1%}")
        survivors = y != 0
        if torch.allclose(y[survivors], x[survivors]):
            return not_yet("the survivors are unchanged, so the expected value of the output shrinks "
                           "by (1-p): scale what you keep so that the mean stays that of x")
        if not torch.allclose(y[survivors], x[survivors] / (1 - p), rtol=1e-5):
            return not_yet("each surviving element should be the input times one and the same factor, "
                           "the one that keeps the expected value of every element unchanged")
    zero = run_answer(fn, x, 0.0, True)
    if isinstance(zero, Verdict):
        return zero
    if not torch.allclose(zero, x):
        return not_yet("with p=0 nothing is dropped: the output should equal x")
    return correct("drops a fraction p, scales the rest by 1/(1-p); identity at evaluation")


def eval_loss(fn) -> Verdict:
    """Exercise 3: ``fn(model, xb, yb)`` returns the model's loss on the batch with dropout off
    (eval mode) as a number, and leaves the model in the mode it found it."""
    from gptlib.model import GPT

    config = replace(_CONFIG, dropout=0.5)
    torch.manual_seed(0)
    model = GPT(config)
    g = torch.Generator().manual_seed(2)
    xb = torch.randint(0, config.vocab_size, (4, config.block_size), generator=g)
    yb = torch.randint(0, config.vocab_size, (4, config.block_size), generator=g)
    model.eval()
    with torch.no_grad():
        want = model(xb, yb)[1].item()
    for mode in (True, False):  # a model in training mode, then one already in eval mode
        model.train(mode)
        got = [run_answer(fn, model, xb, yb) for _ in range(2)]
        for value in got:
            if isinstance(value, Verdict):
                return value
        try:
            got = [float(v) for v in got]
        except (TypeError, ValueError):
            return not_yet("return the loss as a number (a float, or a one-element tensor)")
        if model.training != mode:
            return not_yet(f"the model was in {'training' if mode else 'eval'} mode and your function "
                           "left it in the other: remember the mode and put it back")
        if any(abs(v - want) > 1e-5 for v in got):
            return not_yet("the loss you return still has dropout in it (two calls give "
                           f"{'different' if got[0] != got[1] else 'the same'} numbers): "
                           "switch the model to eval mode before the forward pass")
    return correct("dropout off, the same loss on every call, the model left in its mode")
