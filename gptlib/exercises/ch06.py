"""Self-checks for chapter 6, "Making it fast".

    from gptlib.exercises import ch06
    ch06.whole_mapping(to_fast)           # exercise 1: a GPT's weights in a FastGPT
    ch06.drop_probability(p)              # exercise 4: the drop probability the 16-bit masks use
    ch06.rescaled_dropout(attend)         # exercise 5: the 1/(1-p) rescaling on the small tensor
"""


import torch

from gptlib.config import GPTConfig
from gptlib.exercises import Verdict, correct, not_yet, run_answer
from gptlib.fast import fast_to_readable
from gptlib.model import GPT


def whole_mapping(to_fast) -> Verdict:
    """Exercise 1: ``to_fast(gpt)`` returns a `FastGPT` that computes the same logits as ``gpt``, and
    whose state dict maps back (`fast_to_readable`) to ``gpt``'s tensors."""
    cfg = GPTConfig(vocab_size=29, block_size=12, n_embd=24, n_head=3, n_layer=2, dropout=0.0)
    torch.manual_seed(6)
    gpt = GPT(cfg).eval()
    fast = run_answer(to_fast, gpt, what="to_fast(gpt)")
    if isinstance(fast, Verdict):
        return fast
    if not isinstance(fast, torch.nn.Module):
        return not_yet(f"to_fast(gpt) returned a {type(fast).__name__}; return the FastGPT module")
    fast.eval()
    x = torch.randint(cfg.vocab_size, (2, cfg.block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = run_answer(fast, x, what="your model")
        if isinstance(out, Verdict):
            return out
        want, _ = gpt(x)
    logits = out[0] if isinstance(out, tuple) else out
    if logits.shape != want.shape:
        return not_yet(f"the logits have shape {tuple(logits.shape)}, not {tuple(want.shape)}")
    gap = (logits - want).abs().max().item()
    if gap > 1e-4:
        return not_yet(f"the logits differ from the GPT's by up to {gap:.2g}: did you load the mapped "
                       "weights (readable_to_fast of the GPT's state dict) into the FastGPT?")
    back = fast_to_readable(fast.state_dict(), cfg)
    for name, tensor in gpt.state_dict().items():
        if name not in back or not torch.equal(back[name], tensor):
            return not_yet(f"mapped back with fast_to_readable, {name!r} is not the GPT's tensor")
    return correct("the same logits, and the weights map back to the GPT's exactly")


def drop_probability(p) -> Verdict:
    """Exercise 4: the probability with which `dropout_drop_mask(..., 0.2, ...)` drops an element."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        return not_yet("give the probability as a number")
    exact = round(0.2 * 2**16) / 2**16
    if abs(p - exact) < 1e-8:  # 0.19999695 counts
        return correct(f"{p:.8f}, 0.2 rounded to a multiple of 1/65536")
    if abs(p - 0.2) < 1e-8:
        return not_yet("that is the p you asked for; the mask compares 16-bit numbers with an integer "
                       "threshold, so how many of the 65,536 values fall below it?")
    if abs(p - exact) < 2**-16:
        return not_yet("close: count the 16-bit values that are dropped exactly, and divide by 2**16")
    return not_yet("a 16-bit random number takes 65,536 values with equal probability; the mask drops "
                   "those below a threshold of round(0.2 * 65536) of them")


def rescaled_dropout(attend) -> Verdict:
    """Exercise 5: ``attend(wei, v, keep, p)`` equals ``dropout(wei) @ v`` with the mask ``keep``
    (1 keeps, 0 drops), with the 1/(1-p) rescaling applied to the (T,hs) output."""
    g = torch.Generator().manual_seed(5)
    for p in (0.2, 0.5):
        wei = torch.rand(2, 3, 8, 8, generator=g).softmax(-1)  # (B,nh,T,T)
        v = torch.randn(2, 3, 8, 4, generator=g)  # (B,nh,T,hs)
        keep = (torch.rand(2, 3, 8, 8, generator=g) >= p).float()
        out = run_answer(attend, wei, v, keep, p, what="attend(wei, v, keep, p)")
        if isinstance(out, Verdict):
            return out
        want = (wei * keep / (1 - p)) @ v  # nn.Dropout's way: rescale the (T,T) weights
        if not isinstance(out, torch.Tensor) or out.shape != want.shape:
            return not_yet(f"return a tensor of shape {tuple(want.shape)}, (B,nh,T,hs)")
        if torch.allclose(out, want * (1 - p), atol=1e-5):
            return not_yet("the dropped weights are right but not rescaled: the kept ones must count "
                           "1/(1-p) times, so that the expected output is unchanged")
        if not torch.allclose(out, want, atol=1e-5):
            return not_yet("the output differs from dropout(wei) @ v; apply the mask to the weights, "
                           "multiply by v, then rescale")
    return correct("the same output as rescaling the (T,T) weights, for p = 0.2 and 0.5")
