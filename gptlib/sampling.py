"""Sampling text (chapter 2): `generate` (model, prompt, ``torch.Generator``) and `sample_text` (string to
string), each checking its arguments once; a seed draws on the CPU: one text on a CPU or a GPU.

Shapes: B = batch, T = time, V = vocabulary size."""

import codecs
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.config import check_seed
from gptlib.errors import ConfigError


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: int | None,
                        vocab_size: int | None, idx: torch.Tensor | None = None) -> None:
    """A `ConfigError` that names the sampling argument (or prompt ids ``idx``) out of range, if one is."""
    if idx is not None and (idx.dim() != 2 or idx.shape[1] == 0):
        raise ConfigError(f"idx must be a (B,T) tensor of token ids with T >= 1 (a non-empty prompt), "
                          f"got shape {tuple(idx.shape)}")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 (or None for no limit), got {top_k!r}")
    if top_k is not None and vocab_size is not None and top_k > vocab_size:
        raise ConfigError(f"top_k ({top_k}) cannot exceed the vocabulary size ({vocab_size})")


def default_prompt(tokenizer) -> str:
    """The prompt when none is given: a newline (where a speech starts), else the vocabulary's first token."""
    return tokenizer.decode([0]) if tokenizer.unknown_chars("\n") else "\n"  # (BPE: every text is known)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token from the last position's logits (B,V) -> (B,1)."""
    # Below the smallest normal float (a GPU may flush it to 0: 0 / 0 = NaN), greedy is the answer anyway.
    if temperature < torch.finfo(torch.promote_types(logits.dtype, torch.float32)).tiny:
        return logits.argmax(dim=-1, keepdim=True)  # greedy: the single most likely token, the limit T -> 0
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # best 0: no inf; <1 sharpens
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]  # (B,1), the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))  # keep only the k most likely
    probs = F.softmax(logits, dim=-1).to(logits.device if generator is None else generator.device)  # (B,V)
    return torch.multinomial(probs, num_samples=1, generator=generator).to(logits.device)  # (B,1)


@torch.no_grad()
def _iter_tokens(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float,
                 top_k: int | None, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """The naive sampling loop (arguments already checked): each new token, (B,1)."""
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -model.block_size:]  # (B, <=block_size)
            logits, _ = model(idx_cond)  # (B,T,V)
            idx_next = sample_next(logits[:, -1, :], temperature, top_k, generator)  # (B,1)
            idx = torch.cat((idx_cond, idx_next), dim=1)  # (B, <=block_size+1): what the next step reads
            yield idx_next
    finally:
        model.train(was_training)


def iter_generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None,
                  generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Each new token (B,1) as it is made (arguments checked now), from the whole context (<= block_size)."""
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)  # (the bigram model: None)
    check_sampling_args(max_new_tokens, temperature, top_k, vocab_size, idx)
    return _iter_tokens(model, idx, max_new_tokens, temperature, top_k, generator)


def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Extend ``idx`` (B,T) by ``max_new_tokens`` sampled tokens -> (B, T + max_new_tokens):
    ``temperature`` 0 is greedy, ``top_k`` keeps the k most likely, ``generator`` makes it reproducible."""
    return torch.cat([idx, *iter_generate(model, idx, max_new_tokens, temperature, top_k, generator)], dim=1)


def stream_text(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 300,
                temperature: float = 1.0, top_k: int | None = None, seed: int = 1337, *,
                prompt_name: str = "the prompt") -> Iterator[str]:
    """Check every argument now (``prompt_name`` names the prompt), then the new text token by token."""
    if not isinstance(prompt, str) or not prompt:
        raise ConfigError(f"{prompt_name} is empty: give at least one character for the model to "
                          f"continue (a newline will do)")
    ids = tokenizer.encode(prompt)  # an unknown character is a DataError that names it
    check_sampling_args(max_new_tokens, temperature, top_k, tokenizer.vocab_size)
    generator = torch.Generator().manual_seed(check_seed(seed))  # on the CPU: one text anywhere
    idx = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)  # (1,T)
    tokens = _iter_tokens(model, idx, max_new_tokens, temperature, top_k, generator)
    if hasattr(tokenizer, "decode_bytes"):  # BPE: a character's bytes may span two tokens
        return _utf8_pieces(tokenizer, tokens)
    return (tokenizer.decode(tok[0].tolist()) for tok in tokens)


def _utf8_pieces(tokenizer, tokens: Iterator[torch.Tensor]) -> Iterator[str]:
    """Each token's text once its bytes complete a character (BPE may split one); U+FFFD if never."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for tok in tokens:
        yield decoder.decode(tokenizer.decode_bytes(tok[0].tolist()))
    yield decoder.decode(b"", final=True)


def sample_text(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 300,
                temperature: float = 1.0, top_k: int | None = None, seed: int = 1337,
                on_token: Callable[[str], None] | None = None) -> str:
    """``prompt`` and ``max_new_tokens`` sampled tokens (checked as `stream_text` checks; one text a
    ``seed``); ``on_token`` gets each new token's text as soon as it is made."""
    pieces = []
    for piece in stream_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, seed):
        pieces.append(piece)
        if on_token is not None:
            on_token(piece)
    return prompt + "".join(pieces)
