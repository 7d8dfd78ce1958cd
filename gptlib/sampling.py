"""Sampling text from a trained model: `generate`, a pure function of the model, the prompt and a
``torch.Generator``, and `sample_text`, the same from a prompt string to a string.

Inputs are checked once, where they enter: `generate` / `iter_generate` (and the KV-cache versions
in `gptlib.kvcache`) check a tensor prompt and the sampling arguments, `sample_text` /
`stream_text` check a text prompt, the arguments and the seed; the loops below them trust their
callers.

**One seeding rule.** A seed makes a ``torch.Generator`` on the CPU (`seeded_generator`), and every
token is drawn on the CPU from the model's probabilities, wherever the model runs: the same seed
gives the same text in the command line and the widget, on a CPU or a GPU (up to the last bits of
the logits, which a GPU computes in another order).

Shapes: B = batch, T = time, V = vocabulary size.
"""

import codecs
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.errors import ConfigError

SEED_LIMIT = 2**63  # seeds are 0 .. 2**63 - 1: the range every torch.Generator accepts


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` if it is an integer in [0, 2**63); else a `ConfigError` that says the range."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{name} must be an integer from 0 to 2**63 - 1, got {seed!r}")
    return seed


def seeded_generator(seed: int) -> torch.Generator:
    """The generator a seed stands for: on the CPU, so the same seed draws the same tokens anywhere."""
    return torch.Generator().manual_seed(check_seed(seed))


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: int | None,
                        vocab_size: int | None) -> None:
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


def check_generate_args(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float,
                        top_k: int | None) -> None:
    """The checks of the tensor entry points (`generate` and `gptlib.kvcache.generate_cached`)."""
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ConfigError(f"idx must be a (B,T) tensor of token ids with T >= 1 (a non-empty prompt), "
                          f"got shape {tuple(idx.shape)}")
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    check_sampling_args(max_new_tokens, temperature, top_k, vocab_size)


def default_prompt(tokenizer) -> str:
    """The prompt when none is given: a newline (where a text, and a Shakespeare speech, starts) if
    the vocabulary has one, else the vocabulary's first token (for characters: the lowest, often a
    space). It comes from the vocabulary, so it never names a character the model has not seen."""
    try:
        tokenizer.encode("\n")
    except ValueError:  # a DataError: a text without a newline
        return tokenizer.decode([0])
    return "\n"


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token from the last position's logits (B,V) -> (B,1)."""
    # The division below runs in fp32 for fp32/bf16/fp16 logits (fp64 for fp64). A temperature under
    # that type's smallest normal number (1.2e-38 in fp32) is subnormal or 0 there, and a GPU (or a CPU
    # after torch.set_flush_denormal(True)) flushes subnormals to 0: 0 / 0 would be NaN. There, a
    # logit gap of even 1e-7 (fp32's spacing near 1) is 1e31 temperatures wide: every token but the
    # best has probability exp(-1e31) = 0, so the distribution is greedy's anyway (ties aside).
    if temperature < torch.finfo(torch.promote_types(logits.dtype, torch.float32)).tiny:
        return logits.argmax(dim=-1, keepdim=True)  # greedy: the single most likely token, the limit T -> 0
    # Subtract the largest logit first: the best token's score is then exactly 0, so even a tiny
    # temperature (1e-39) cannot overflow to inf (it only pushes the others to -inf).
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # <1 sharpens, >1 flattens
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]  # (B,1), the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))  # keep only the k most likely
    probs = F.softmax(logits, dim=-1)  # (B,V)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)  # draw where the generator lives (the CPU: one rule)
    return torch.multinomial(probs, num_samples=1, generator=generator).to(logits.device)  # (B,1)


def _iter_tokens(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float,
                 top_k: int | None, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """The naive sampling loop (arguments already checked): each new token, (B,1)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                idx_cond = idx[:, -model.block_size:]  # (B, <=block_size)
                logits, _ = model(idx_cond)  # (B,T,V)
                idx_next = sample_next(logits[:, -1, :], temperature, top_k, generator)  # (B,1)
                # keep only the context the next step reads: memory and time per token stay flat
                idx = torch.cat((idx_cond, idx_next), dim=1)  # (B, <=block_size+1)
                yield idx_next
    finally:
        model.train(was_training)


def iter_generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield ``max_new_tokens`` new tokens one at a time, each (B,1), for text that appears as it is made.

    The naive way: every step runs the model over the whole context again, cropped to the last
    ``block_size`` tokens (the position table has no rows beyond that). Dropout is off while
    sampling. The arguments are checked now, before the first token is asked for.
    """
    check_generate_args(model, idx, max_new_tokens, temperature, top_k)
    return _iter_tokens(model, idx, max_new_tokens, temperature, top_k, generator)


def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Extend ``idx`` (B,T) by ``max_new_tokens`` sampled tokens -> (B, T + max_new_tokens).

    ``temperature`` 0 means greedy; ``top_k`` keeps only the k most likely tokens at each step;
    ``generator`` makes the samples reproducible.
    """
    new = list(iter_generate(model, idx, max_new_tokens, temperature, top_k, generator))
    return torch.cat([idx, *new], dim=1)


def stream_text(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 300,
                temperature: float = 1.0, top_k: int | None = None, seed: int = 1337, *,
                prompt_name: str = "the prompt") -> Iterator[str]:
    """Check everything now, then return an iterator over the new text, one token's text at a time.

    An empty prompt, a character outside the vocabulary, a number out of range or a bad seed is a
    `ValueError` that says what to change (``prompt_name`` names the prompt in it, e.g. the
    command line's ``--prompt``), raised before anything is sampled or printed.
    """
    if not isinstance(prompt, str) or not prompt:
        raise ConfigError(f"{prompt_name} is empty: give at least one character for the model to "
                          f"continue (a newline will do)")
    ids = tokenizer.encode(prompt)  # an unknown character is a DataError that names it
    check_sampling_args(max_new_tokens, temperature, top_k, tokenizer.vocab_size)
    generator = seeded_generator(seed)
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1,T)
    tokens = _iter_tokens(model, idx, max_new_tokens, temperature, top_k, generator)
    if hasattr(tokenizer, "decode_bytes"):  # BPE: a character's bytes may span two tokens
        return _utf8_pieces(tokenizer, tokens)
    return (tokenizer.decode(tok[0].tolist()) for tok in tokens)


def _utf8_pieces(tokenizer, tokens: Iterator[torch.Tensor]) -> Iterator[str]:
    """Each token's text as soon as its bytes complete a character (a byte-level tokenizer may
    split one character's UTF-8 bytes across tokens); bytes that never do become U+FFFD."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for tok in tokens:
        yield decoder.decode(tokenizer.decode_bytes(tok[0].tolist()))
    yield decoder.decode(b"", final=True)


def sample_text(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 300,
                temperature: float = 1.0, top_k: int | None = None, seed: int = 1337,
                on_token: Callable[[str], None] | None = None) -> str:
    """``prompt`` followed by ``max_new_tokens`` sampled tokens; ``on_token`` gets each new token's
    text as soon as it is made. Checked as `stream_text` checks; the same ``seed`` gives the same text."""
    pieces = []
    for piece in stream_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, seed):
        pieces.append(piece)
        if on_token is not None:
            on_token(piece)
    return prompt + "".join(pieces)
