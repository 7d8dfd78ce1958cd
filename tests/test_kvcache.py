"""KV-cache generation equals the naive `generate` (and follows its documented policy past block_size).

Run: pytest tests/test_kvcache.py
"""

import pytest
import torch

from gptlib.config import GPTConfig
from gptlib.errors import ConfigError
from gptlib.fast import fast_from_readable
from gptlib.kvcache import KVCache, forward_cached, generate_cached, iter_generate_cached
from gptlib.model import GPT
from gptlib.sampling import generate

CONFIG = GPTConfig(vocab_size=13, block_size=16, n_embd=24, n_head=3, n_layer=2, dropout=0.1)


def _model(seed=0):
    torch.manual_seed(seed)
    model = GPT(CONFIG)
    with torch.no_grad():  # larger weights than the init, so the logits are far from ties
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8.0)
    return model.eval()


def _prompt(B=2, T=3, seed=1):
    return torch.randint(CONFIG.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def test_prefill_then_steps_give_the_full_forward_logits():
    fast = fast_from_readable(_model()).eval()
    idx = _prompt(T=12)
    full, _ = fast(idx)  # (B,12,V)
    cache = KVCache(CONFIG.n_layer, 2, CONFIG.n_head, CONFIG.block_size, CONFIG.head_size, "cpu")
    parts = [forward_cached(fast, idx[:, :5], cache), forward_cached(fast, idx[:, 5:9], cache)]
    parts += [forward_cached(fast, idx[:, t:t + 1], cache) for t in range(9, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_a_bf16_model_samples_in_bf16_close_to_fp32():
    """Cast to bf16, the cache is bf16 too, the logits are within bf16 rounding of fp32's, and the
    tokens are drawn from fp32 probabilities (the same seed gives the same text twice)."""
    model = _model()
    fast = fast_from_readable(model).eval()
    low = fast_from_readable(model).eval().to(torch.bfloat16)
    idx = _prompt(T=12)
    cache = KVCache(CONFIG.n_layer, 2, CONFIG.n_head, CONFIG.block_size, CONFIG.head_size, "cpu",
                    torch.bfloat16)
    low_logits = forward_cached(low, idx, cache)  # (B,12,V)
    assert cache.k.dtype == torch.bfloat16 and low_logits.dtype == torch.bfloat16
    full, _ = fast(idx)
    scale = full.abs().max().item()
    assert (low_logits.float() - full).abs().max().item() < 0.05 * scale
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = generate_cached(low, idx[:, :2], 10, generator=gen())
    assert torch.equal(a, generate_cached(low, idx[:, :2], 10, generator=gen()))


@pytest.mark.parametrize("prompt_len", [1, 5])
def test_greedy_is_token_identical_while_it_fits(prompt_len):
    model = _model()
    idx = _prompt(T=prompt_len)
    n = CONFIG.block_size - prompt_len  # prompt + new tokens == block_size
    naive = generate(model, idx, n, temperature=0)
    cached = generate_cached(model, idx, n, temperature=0)
    assert torch.equal(cached, naive)
    assert cached.shape == (2, CONFIG.block_size)


def test_sampling_with_a_generator_is_token_identical_while_it_fits():
    model = _model()
    idx = _prompt()
    naive = generate(model, idx, 12, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(7))
    cached = generate_cached(model, idx, 12, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(cached, naive)


def _reference_policy(model, idx, max_new_tokens):
    """Greedy decoding without a cache, but with the cache's context policy spelled out: the window
    grows to block_size tokens, then restarts from the last block_size // 2 tokens."""
    bs, keep = CONFIG.block_size, CONFIG.block_size // 2
    seq = idx
    start = max(0, idx.shape[1] - bs)
    for _ in range(max_new_tokens):
        if seq.shape[1] - start > bs:
            start = seq.shape[1] - keep
        logits, _ = model(seq[:, start:])
        seq = torch.cat((seq, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return seq


@pytest.mark.parametrize("prompt_len", [3, 16, 20])  # a prompt that fits, fills, or overflows the block
def test_past_block_size_follows_the_documented_policy(prompt_len):
    model = _model()
    idx = _prompt(T=prompt_len)
    cached = generate_cached(model, idx, 40, temperature=0)  # several re-prefills
    with torch.no_grad():
        expected = _reference_policy(model, idx, 40)
    assert torch.equal(cached, expected)


def test_first_token_past_a_long_prompt_matches_naive():
    model = _model()
    idx = _prompt(T=30)  # longer than block_size: both crop to the last 16 tokens
    assert torch.equal(generate_cached(model, idx, 1, temperature=0), generate(model, idx, 1, temperature=0))


def test_model_mode_is_kept_and_zero_tokens_returns_the_prompt():
    model = _model().train()
    idx = _prompt()
    assert torch.equal(generate_cached(model, idx, 0), idx)
    generate_cached(model, idx, 3)
    assert model.training


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": -1}, {"max_new_tokens": 2.5}, {"max_new_tokens": 3, "temperature": -1.0},
    {"max_new_tokens": 3, "top_k": 0}, {"max_new_tokens": 3, "top_k": 99},
])
def test_same_argument_checks_as_generate(kwargs):
    model = _model()
    idx = _prompt()
    with pytest.raises(ConfigError) as naive_err:
        generate(model, idx, **kwargs)
    with pytest.raises(ConfigError) as cached_err:
        generate_cached(model, idx, **kwargs)
    assert str(cached_err.value) == str(naive_err.value)


def test_empty_prompt_is_rejected():
    with pytest.raises(ConfigError):
        next(iter_generate_cached(_model(), torch.zeros(1, 0, dtype=torch.long), 3))
