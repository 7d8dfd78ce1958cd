"""Attention maps: every head's attention weights for one prompt, read through the readable `GPT`.

Fused attention kernels (``F.scaled_dot_product_attention``, `gptlib.fast`) never write the (T,T)
weights to memory, so they cannot be plotted. `attention_maps` walks the readable model block by
block instead and asks each `Head` for its weights (`Head.attention_weights`); the tests check that
these weights reproduce the model's own outputs.

Shapes: T = time, C = channels (n_embd), L = layers, nh = heads per layer.
"""

import torch

from gptlib.errors import ConfigError
from gptlib.model import GPT


@torch.no_grad()
def attention_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The attention weights of every layer and head for one sequence ``idx`` (T,) or (1,T) ->
    (L, nh, T, T); entry [l, h, t, s] is how much token t reads from token s in head h of block l.

    Computed in eval mode (no dropout), as when sampling; the model's mode is put back afterwards.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(getattr(b, "sa", None), "heads") for b in blocks):
        raise ConfigError("attention_maps needs the readable GPT (gptlib.model.GPT), whose heads can "
                          "return their weights; map a fast model's weights to a GPT first")
    if idx.dim() == 1:
        idx = idx[None]  # (T,) -> (1,T)
    if idx.dim() != 2 or idx.shape[0] != 1 or idx.shape[1] == 0:
        raise ConfigError(f"idx must be one non-empty sequence of token ids, (T,) or (1,T); got shape "
                          f"{tuple(idx.shape)}")
    T = idx.shape[1]
    if T > model.block_size:
        raise ConfigError(f"the prompt has {T} tokens, more than block_size {model.block_size}; crop it")
    was_training = model.training
    model.eval()
    try:
        tok_emb = model.token_embedding_table(idx)  # (1,T) -> (1,T,C)
        pos_emb = model.position_embedding_table(torch.arange(T, device=idx.device))  # (T,C)
        x = tok_emb + pos_emb  # (1,T,C), the same start as GPT.forward
        maps = []
        for block in blocks:
            h = block.ln1(x)  # (1,T,C): what the block's attention sees (pre-norm)
            maps.append(torch.stack([head.attention_weights(h)[0] for head in block.sa.heads]))  # (nh,T,T)
            x = block(x)  # (1,T,C), on to the next block exactly as the model does
    finally:
        model.train(was_training)
    return torch.stack(maps)  # (L,nh,T,T)


def head_summary(maps: torch.Tensor, tokens: str | None = None) -> list[dict]:
    """A few numbers per head of ``maps`` (L,nh,T,T), to find heads worth a closer look:

    - ``previous``: mean weight a token puts on the token just before it (t-1)
    - ``current``: mean weight a token puts on itself
    - ``spread``: mean entropy of a row over the most it could be, log(t+1): 0 = reads one token,
      1 = an even average of everything so far

    averaged over the rows t >= 1 (row 0 can only read itself); and, given the prompt's characters
    ``tokens``:

    - ``word_start``: mean weight on the start of the token's word (the space or newline before it,
      plus its first character), over the tokens at least two characters past that first character
      (so that it is not simply the previous token)
    - ``line_start``: the same for the start of the line (the newline, plus the line's first character)

    (NaN when the prompt has no such token). Returns one dict per head, layer by layer.
    """
    L, nh, T, _ = maps.shape
    if T < 2:
        raise ConfigError("head_summary needs at least two tokens")
    if tokens is not None and len(tokens) != T:
        raise ConfigError(f"tokens has {len(tokens)} characters but the maps are for {T} tokens")
    t = torch.arange(1, T, device=maps.device)
    stats = {
        "previous": maps[:, :, t, t - 1].mean(-1),  # (L,nh)
        "current": maps[:, :, t, t].mean(-1),  # (L,nh)
    }
    rows = maps[:, :, 1:, :]  # (L,nh,T-1,T)
    entropy = -(rows * rows.clamp_min(1e-12).log()).sum(-1)  # (L,nh,T-1)
    stats["spread"] = (entropy / (t + 1).log()).mean(-1)  # (L,nh), each row over its own maximum
    if tokens is not None:
        stats["word_start"] = _weight_on_start(maps, tokens, " \n")
        stats["line_start"] = _weight_on_start(maps, tokens, "\n")
    return [{"layer": layer, "head": head, **{k: v[layer, head].item() for k, v in stats.items()}}
            for layer in range(L) for head in range(nh)]


def _weight_on_start(maps: torch.Tensor, tokens: str, marks: str) -> torch.Tensor:
    """Mean weight each head puts on the last character in ``marks`` plus the character after it, from
    the tokens at t >= mark + 3 -> (L,nh)."""
    rows, cols, last = [], [], None
    for t, ch in enumerate(tokens):
        if last is not None and last < t - 2:
            rows.append(t)
            cols.append(last)
        if ch in marks:
            last = t
    if not rows:
        return torch.full(maps.shape[:2], float("nan"), device=maps.device)
    rows = torch.tensor(rows, device=maps.device)  # (P,)
    cols = torch.tensor(cols, device=maps.device)  # (P,)
    return (maps[:, :, rows, cols] + maps[:, :, rows, cols + 1]).mean(-1)  # (L,nh)
