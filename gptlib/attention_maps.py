"""Attention maps (chapter 7): every head's attention weights for one prompt, read through the readable
`GPT` (fused kernels never write the (T,T) weights to memory), and a few numbers per head.

Shapes: T = time, C = channels (n_embd), L = layers, nh = heads per layer."""

import torch

from gptlib.errors import ConfigError
from gptlib.model import GPT


@torch.no_grad()
def attention_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Every layer's and head's attention weights for one sequence ``idx`` (T,) or (1,T) -> (L,nh,T,T):
    [l, h, t, s] is how much token t reads from token s in head h of block l; in eval mode, as sampling."""
    if not all(hasattr(getattr(b, "sa", None), "heads") for b in getattr(model, "blocks", [None])):
        raise ConfigError("attention_maps needs the readable GPT (gptlib.model.GPT), whose heads can "
                          "return their weights; map a fast model's weights to a GPT first")
    idx = idx[None] if idx.dim() == 1 else idx  # (T,) -> (1,T)
    if idx.dim() != 2 or idx.shape[0] != 1 or not 0 < idx.shape[1] <= model.block_size:
        raise ConfigError(f"idx must be one sequence of 1 to block_size ({model.block_size}) token ids, "
                          f"(T,) or (1,T); got shape {tuple(idx.shape)}")
    was_training = model.training
    model.eval()
    try:
        x = model.embed(idx)  # (1,T,C), the same start as GPT.forward
        maps = []
        for block in model.blocks:
            h = block.ln1(x)  # (1,T,C): what the block's attention sees (pre-norm)
            maps.append(torch.stack([head.attention_weights(h)[0] for head in block.sa.heads]))  # (nh,T,T)
            x = block(x)  # (1,T,C), on to the next block exactly as the model does
    finally:
        model.train(was_training)
    return torch.stack(maps)  # (L,nh,T,T)


def head_summary(maps: torch.Tensor, tokens: str | None = None) -> list[dict]:
    """Per head of ``maps`` (L,nh,T,T), the mean over rows t >= 1 of the weight on t-1 (``previous``), on t
    (``current``), the row's entropy over log(t+1) (``spread``: 0 reads one token, 1 evenly); given the
    prompt's characters ``tokens``, on the start of the word and line (``word_start``, ``line_start``)."""
    L, nh, T, _ = maps.shape
    if T < 2:
        raise ConfigError("head_summary needs at least two tokens")
    if tokens is not None and len(tokens) != T:
        raise ConfigError(f"tokens has {len(tokens)} characters but the maps are for {T} tokens")
    t = torch.arange(1, T, device=maps.device)
    rows = maps[:, :, 1:, :]  # (L,nh,T-1,T)
    entropy = -(rows * rows.clamp_min(1e-12).log()).sum(-1)  # (L,nh,T-1)
    stats = {"previous": maps[:, :, t, t - 1].mean(-1),  # (L,nh)
             "current": maps[:, :, t, t].mean(-1),  # (L,nh)
             "spread": (entropy / (t + 1).log()).mean(-1)}  # (L,nh), each row over its own maximum
    if tokens is not None:
        stats["word_start"] = _weight_on_start(maps, tokens, " \n")
        stats["line_start"] = _weight_on_start(maps, tokens, "\n")
    return [{"layer": layer, "head": head, **{k: v[layer, head].item() for k, v in stats.items()}}
            for layer in range(L) for head in range(nh)]


def _weight_on_start(maps: torch.Tensor, tokens: str, marks: str) -> torch.Tensor:
    """Mean weight on the last of ``marks`` and the next char, from t >= mark + 3 (else NaN): (L,nh)."""
    pairs, last = [], None  # (t, the last mark before t - 2)
    for t, ch in enumerate(tokens):
        if last is not None and last < t - 2:
            pairs.append((t, last))
        if ch in marks:
            last = t
    if not pairs:
        return torch.full(maps.shape[:2], float("nan"), device=maps.device)
    rows, cols = torch.tensor(pairs, device=maps.device).T  # 2 x (P,)
    return (maps[:, :, rows, cols] + maps[:, :, rows, cols + 1]).mean(-1)  # (L,nh)
