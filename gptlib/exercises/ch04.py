"""Self-checks for chapter 4's exercises (a model with attention).

    from gptlib.exercises import ch04
    ch04.no_position_lm(NoPositionSingleHeadLM)   # exercise 1
    ch04.heads_parameters(counts)                 # exercise 2
    ch04.causality_test(is_causal)                # exercise 3
"""

from dataclasses import replace

import torch

from gptlib.config import GPTConfig
from gptlib.exercises import Verdict, correct, not_yet, run_answer

# A small config of the ladder's shape: quick to build and run.
_CONFIG = GPTConfig(vocab_size=65, block_size=8, n_embd=32, n_head=4, n_layer=1, dropout=0.0)


def _logits(model, idx: torch.Tensor):
    out = model(idx)
    return out[0] if isinstance(out, tuple) else out


def no_position_lm(cls) -> Verdict:
    """Exercise 1: ``cls(config)`` is `SingleHeadLM` without position embeddings. Without them, the
    logits at the last position must not depend on the order of the tokens before it."""
    torch.manual_seed(0)
    model = run_answer(cls, _CONFIG, what=f"{getattr(cls, '__name__', 'your class')}(config)")
    if isinstance(model, Verdict):
        return model
    model.eval()
    idx = torch.randint(0, _CONFIG.vocab_size, (4, _CONFIG.block_size), generator=torch.Generator().manual_seed(1))
    logits = run_answer(_logits, model, idx, what="your model's forward")
    if isinstance(logits, Verdict):
        return logits
    if tuple(logits.shape) != (4, _CONFIG.block_size, _CONFIG.vocab_size):
        return not_yet(f"the logits have shape {tuple(logits.shape)}; the book's contract is (B, T, vocab_size)")
    perm = torch.tensor([6, 2, 0, 5, 1, 4, 3, 7])  # shuffles the first 7 tokens, keeps the last in place
    with torch.no_grad():
        shuffled = _logits(model, idx[:, perm])
        other = idx.clone()
        other[:, 0] = (other[:, 0] + 1) % _CONFIG.vocab_size  # a different token, far back
        changed = _logits(model, other)
    if not torch.allclose(logits[:, -1], shuffled[:, -1], atol=1e-5):
        return not_yet("the last position's logits still change when the tokens before it are reordered: "
                       "is a position embedding still added to the tokens somewhere?")
    if torch.allclose(logits[:, -1], changed[:, -1], atol=1e-6):
        return not_yet("the last position ignores the tokens before it: keep the attention head, only drop "
                       "the positions")
    return correct("the last position reads the tokens before it as a set, in any order")


def heads_parameters(counts: dict) -> Verdict:
    """Exercise 2: ``counts`` maps a number of heads (1, 2, 4, 8) to the parameter count of
    `gptlib.ladder.MultiHeadLM` with that many heads and n_embd = 32."""
    from gptlib.ladder import LADDER, MultiHeadLM

    if not isinstance(counts, dict):
        return not_yet("pass a dict {number of heads: number of parameters}")
    missing = [k for k in (1, 2, 4, 8) if k not in counts]
    if missing:
        return not_yet(f"count the parameters for 1, 2, 4 and 8 heads (missing: {missing})")
    wrong = []
    for k, n in counts.items():
        model = MultiHeadLM(replace(LADDER.model, n_head=k))
        if n != sum(p.numel() for p in model.parameters()):
            wrong.append(k)
    if wrong:
        return not_yet(f"the count for {wrong} head(s) is off: count with sum(p.numel() for p in "
                       "model.parameters()) on a model built with that n_head (the biases count too)")
    return correct("the same count for 1, 2, 4 and 8 heads: they split the same channels")


def causality_test(is_causal) -> Verdict:
    """Exercise 3: ``is_causal(model, idx)`` returns True when changing the tokens at positions 5, 6
    and 7 of ``idx`` leaves the logits at positions 0 to 4 unchanged, and False otherwise."""
    from gptlib.ladder import MultiHeadFeedForwardLM

    torch.manual_seed(0)
    causal = MultiHeadFeedForwardLM(_CONFIG).eval()
    leaky = MultiHeadFeedForwardLM(_CONFIG).eval()
    for head in leaky.sa_heads.heads:
        head.tril.fill_(1.0)  # no mask: every token sees the future
    idx = torch.randint(0, _CONFIG.vocab_size, (4, _CONFIG.block_size), generator=torch.Generator().manual_seed(2))
    on_causal = run_answer(is_causal, causal, idx.clone(), what="is_causal(model, idx)")
    if isinstance(on_causal, Verdict):
        return on_causal
    on_leaky = run_answer(is_causal, leaky, idx.clone(), what="is_causal(model, idx)")
    if isinstance(on_leaky, Verdict):
        return on_leaky
    if not bool(on_causal):
        return not_yet("it says a causal model is not causal: compare only positions 0 to 4 (the future "
                       "tokens' own logits do change), and put the model in eval() mode")
    if bool(on_leaky):
        return not_yet("it says a model whose heads see the future is causal: did you change the tokens "
                       "at positions 5 to 7 before the second forward pass?")
    return correct("it tells a causal model from one whose heads see the future")
