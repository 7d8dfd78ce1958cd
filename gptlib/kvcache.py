"""KV-cache generation (chapter 6), beside the naive `gptlib.sampling.generate`: a step feeds only the new
token. Positions are absolute, so a full cache is rebuilt from the last ``block_size // 2`` tokens: the
text is `generate`'s while it fits in ``block_size``. The cache has the weights' dtype (bf16: half the bytes).

Shapes: B = batch, T = time, C = channels, nh = heads, hs = head size, V = vocabulary size."""

from collections.abc import Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.errors import ConfigError
from gptlib.fast import CausalSelfAttention, FastGPT, fast_from_readable
from gptlib.model import GPT
from gptlib.sampling import check_sampling_args, sample_next


class KVCache:
    """The keys and values of every layer for the tokens seen so far, preallocated to ``block_size``."""

    def __init__(self, n_layer: int, batch_size: int, n_head: int, block_size: int, head_size: int,
                 device: torch.device | str, dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, block_size, head_size)  # (L,B,nh,block_size,hs)
        self.k, self.v = (torch.zeros(shape, device=device, dtype=dtype) for _ in range(2))
        self.length, self.block_size = 0, block_size  # tokens held (the next one's position), room

    def reset(self) -> None:
        """Forget every token (the memory is kept and overwritten)."""
        self.length = 0


def _attend_cached(sa: CausalSelfAttention, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
    """``sa`` for the new tokens ``x`` (B,Tn,C), reading earlier keys/values from ``cache`` -> (B,Tn,C)."""
    B, Tn, C = x.shape
    nh, hs, T0 = sa.n_head, C // sa.n_head, cache.length  # T0: tokens already cached
    q, k, v = sa.qkv(x).split(C, dim=2)  # (B,Tn,C) -> 3 x (B,Tn,C)
    q, k, v = (t.view(B, Tn, nh, hs).transpose(1, 2) for t in (q, k, v))  # 3 x (B,nh,Tn,hs)
    cache.k[layer, :, :, T0:T0 + Tn], cache.v[layer, :, :, T0:T0 + Tn] = k, v  # at their positions
    keys, values = cache.k[layer, :, :, :T0 + Tn], cache.v[layer, :, :, :T0 + Tn]  # 2 x (B,nh,T0+Tn,hs)
    # One new token reads every cached one; a prefill is plain causal; else new token i reads <= T0 + i.
    mask = None if Tn == 1 or T0 == 0 else torch.ones(Tn, T0 + Tn, dtype=torch.bool, device=x.device).tril(T0)
    y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=T0 == 0 and Tn > 1)
    return sa.proj(y.transpose(1, 2).reshape(B, Tn, C))  # (B,nh,Tn,hs) -> (B,Tn,C); no dropout when sampling


@torch.no_grad()
def forward_cached(model: FastGPT, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B,Tn,V) for the new tokens ``idx`` (B,Tn), placed after the ``cache.length`` cached ones."""
    Tn, T0 = idx.shape[1], cache.length
    if T0 + Tn > cache.block_size:
        raise ConfigError(f"{T0} cached tokens and {Tn} new ones exceed block_size {cache.block_size}")
    x = model.embed(idx, start=T0)  # (B,Tn,C), the new tokens at their absolute positions
    for layer, block in enumerate(model.blocks):
        x = x + _attend_cached(block.sa, block.ln1(x), cache, layer)  # (B,Tn,C)
        x = x + block.ffwd(block.ln2(x))  # (B,Tn,C)
    cache.length = T0 + Tn
    return model.lm_head(model.ln_f(x))  # (B,Tn,V)


def iter_generate_cached(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                         top_k: int | None = None,
                         generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """`gptlib.sampling.iter_generate` with a KV cache: each new token (B,1); checked as it checks."""
    if not isinstance(model, GPT):
        raise ConfigError(f"KV-cache generation needs a GPT or FastGPT, got {type(model).__name__}")
    check_sampling_args(max_new_tokens, temperature, top_k, model.config.vocab_size, idx)
    fast = model if isinstance(model, FastGPT) else fast_from_readable(model)  # the GPT's weights as they are
    return _iter_tokens_cached(fast, idx, max_new_tokens, temperature, top_k, generator)


@torch.inference_mode()  # no_grad, and no version counters either: ~10% faster per token on a CPU
def _iter_tokens_cached(fast: FastGPT, idx: torch.Tensor, max_new_tokens: int, temperature: float,
                        top_k: int | None, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """The KV-cache sampling loop (arguments already checked)."""
    was_training, block_size, p = fast.training, fast.block_size, next(fast.parameters())
    fast.eval()
    cache = KVCache(len(fast.blocks), idx.shape[0], fast.config.n_head, block_size, fast.config.head_size,
                    p.device, p.dtype)
    try:
        context = idx[:, -block_size:]  # the tokens the cache holds (for re-prefilling)
        for _ in range(max_new_tokens):
            logits = forward_cached(fast, context[:, cache.length:], cache)  # the prompt, then 1 token a step
            idx_next = sample_next(logits[:, -1, :].float(), temperature, top_k, generator)  # (B,1)
            yield idx_next
            context = torch.cat((context, idx_next), dim=1)  # (B,T+1): the cache's tokens and the new one
            if cache.length == block_size:  # full: positions are absolute, so rebuild from position 0
                context = context[:, -max(1, block_size // 2):]  # with the last block_size // 2 tokens
                cache.reset()
    finally:
        fast.train(was_training)


def generate_cached(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """`gptlib.sampling.generate` with a KV cache: extend ``idx`` (B,T) -> (B, T + max_new_tokens)."""
    new = list(iter_generate_cached(model, idx, max_new_tokens, temperature, top_k, generator))
    return torch.cat([idx, *new], dim=1)
