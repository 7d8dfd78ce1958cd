"""Sampling text from a trained model: `generate`, a pure function of the model, the prompt and a
``torch.Generator``.

Shapes: B = batch, T = time, V = vocabulary size.
"""

import math
from collections.abc import Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.errors import ConfigError


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: int | None, vocab_size: int | None) -> None:
    """Raise a clear `ValueError` for a sampling argument out of range."""
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ConfigError(f"top_k must be an integer >= 1 (or None for no limit), got {top_k!r}")
        if vocab_size is not None and top_k > vocab_size:
            raise ConfigError(f"top_k ({top_k}) cannot exceed the vocabulary size ({vocab_size})")


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token from the last position's logits (B,V) -> (B,1)."""
    if top_k is not None and top_k > logits.shape[-1]:
        raise ConfigError(f"top_k ({top_k}) cannot exceed the vocabulary size ({logits.shape[-1]})")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy: the single most likely token
    logits = logits / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]  # (B,1), the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))  # keep only the k most likely
    probs = F.softmax(logits, dim=-1)  # (B,V)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, num_samples=1, generator=generator).to(logits.device)  # (B,1)


@torch.no_grad()
def iter_generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield ``max_new_tokens`` new tokens one at a time, each (B,1), for text that appears as it is made.

    The naive way: every step runs the model over the whole context again, cropped to the last
    ``block_size`` tokens (the position table has no rows beyond that). Dropout is off while sampling.
    """
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ConfigError(f"idx must be a (B,T) tensor of token ids with T >= 1 (a non-empty prompt), "
                          f"got shape {tuple(idx.shape)}")
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    check_sampling_args(max_new_tokens, temperature, top_k, vocab_size)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -model.block_size:]  # (B, <=block_size)
            logits, _ = model(idx_cond)  # (B,T,V)
            idx_next = sample_next(logits[:, -1, :], temperature, top_k, generator)  # (B,1)
            idx = torch.cat((idx, idx_next), dim=1)  # (B,T+1)
            yield idx_next
    finally:
        model.train(was_training)


def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Extend ``idx`` (B,T) by ``max_new_tokens`` sampled tokens -> (B, T + max_new_tokens).

    ``temperature`` 0 means greedy; ``top_k`` keeps only the k most likely tokens at each step;
    ``generator`` makes the samples reproducible.
    """
    new = list(iter_generate(model, idx, max_new_tokens, temperature, top_k, generator))
    return torch.cat([idx, *new], dim=1)
