"""Self-checks for chapter 3's exercises (the mathematical trick in self-attention).

    from gptlib.exercises import ch03
    ch03.encoder_head(EncoderHead)          # exercise 1
    ch03.einsum_scores("...")               # exercise 3
    ch03.causal_softmax(causal_softmax)     # exercise 4
"""

import torch
from torch.nn import functional as F

from gptlib.exercises import Verdict, correct, not_yet, run_answer


def encoder_head(cls) -> Verdict:
    """Exercise 1: ``cls(n_embd, head_size, block_size)`` is chapter 3's `Head` without the mask: scaled
    dot-product attention in which every token reads every other, the future too."""
    torch.manual_seed(0)
    head = run_answer(cls, 32, 16, 8, what=f"{getattr(cls, '__name__', 'your class')}(32, 16, 8)")
    if isinstance(head, Verdict):
        return head
    x = torch.randn(4, 8, 32, generator=torch.Generator().manual_seed(1))
    x2 = x.clone()
    x2[:, 5:] = torch.randn(4, 3, 32, generator=torch.Generator().manual_seed(2))  # another future
    with torch.no_grad():
        out = run_answer(head, x, what="your head's forward")
        if isinstance(out, Verdict):
            return out
        if tuple(out.shape) != (4, 8, 16):
            return not_yet(f"the output has shape {tuple(out.shape)}; a head gives (B, T, head_size)")
        if torch.allclose(out[:, :5], head(x2)[:, :5]):
            return not_yet("changing tokens 5, 6 and 7 leaves positions 0 to 4 unchanged: the head still "
                           "hides the future from them")
        parts = [getattr(head, name, None) for name in ("query", "key", "value")]
        if any(p is None for p in parts):
            return not_yet("keep the head's three linear maps, named query, key and value")
        q, k, v = (p(x) for p in parts)
        expected = F.softmax(q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5, dim=-1) @ v
    if not torch.allclose(out, expected, atol=1e-5):
        return not_yet("the future now reaches the past, but the output is not scaled dot-product "
                       "attention any more: delete only the masked_fill line, keep the scale and softmax")
    return correct("every token reads every other, the future too: an encoder head")


def einsum_scores(spec: str) -> Verdict:
    """Exercise 3: ``spec`` is the `torch.einsum` equation of a head's scores, q @ k.transpose(-2, -1),
    for q and k of shape (B, T, hs)."""
    if not isinstance(spec, str):
        return not_yet('pass the equation as a string, like "ts,bsc->btc"')
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 5, 3, generator=gen), torch.randn(2, 5, 3, generator=gen)
    scores = run_answer(torch.einsum, spec, q, k, what=f"torch.einsum({spec!r}, q, k)")
    if isinstance(scores, Verdict):
        return scores
    expected = q @ k.transpose(-2, -1)  # (B,T,T)
    if scores.shape != expected.shape:
        return not_yet(f"it gives shape {tuple(scores.shape)}; the scores are (B, T, T): sum over the "
                       "head's channels only")
    if torch.allclose(scores, expected.transpose(-2, -1), atol=1e-5) and not torch.allclose(
            scores, expected, atol=1e-5):
        return not_yet("the right numbers, transposed: row t must hold query t's scores against every key")
    if not torch.allclose(scores, expected, atol=1e-5):
        return not_yet("the result differs from q @ k.transpose(-2, -1): sum over the channel index that "
                       "q and k share, keep the batch index and both time indices")
    return correct("the same (B, T, T) scores as q @ k.transpose(-2, -1)")


def causal_softmax(fn) -> Verdict:
    """Exercise 4: ``fn(scores)`` turns (B, T, T) scores into causal attention weights: zero above the
    diagonal, each row a softmax over positions 0..t that sums to 1."""
    scores = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(0)) * 2
    weights = run_answer(fn, scores.clone(), what="your function")
    if isinstance(weights, Verdict):
        return weights
    if not isinstance(weights, torch.Tensor) or weights.shape != scores.shape:
        return not_yet("return a tensor of the same (B, T, T) shape as the scores")
    if weights.triu(1).abs().max() > 0:
        return not_yet("some weight above the diagonal is not zero: position t still reads the future")
    if not torch.allclose(weights.sum(-1), torch.ones(3, 6), atol=1e-5):
        return not_yet("the rows do not sum to 1: zeroing the future after the softmax leaves each row "
                       "short of 1; the masking has to happen before the softmax normalises")
    tril = torch.tril(torch.ones(6, 6))
    expected = F.softmax(scores.masked_fill(tril == 0, float("-inf")), dim=-1)
    if not torch.allclose(weights, expected, atol=1e-5):
        return not_yet("causal and normalised, but not the softmax of the scores over positions 0..t")
    return correct("causal weights: nothing above the diagonal, each row a softmax over the past")
