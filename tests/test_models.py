"""Every model: the (logits, loss) contract, causality, the loss at initialisation, config checks.

Run: pytest tests/test_models.py
"""

import math

import pytest
import torch

from gptlib.attention import CrossHead, Head, MultiHeadAttention
from gptlib.bigram import BigramLanguageModel
from gptlib.config import GPTConfig
from gptlib.model import GPT, Block, FeedForward, count_parameters
from gptlib.presets import get_preset


def models(config):
    torch.manual_seed(0)
    return {"bigram": BigramLanguageModel(config.vocab_size), "gpt": GPT(config)}


@pytest.mark.parametrize("name", ["bigram", "gpt"])
def test_forward_contract(name, tiny_config):
    model = models(tiny_config)[name]
    idx = torch.randint(tiny_config.vocab_size, (3, 11))
    logits, loss = model(idx)
    assert logits.shape == (3, 11, tiny_config.vocab_size) and loss is None
    logits2, loss = model(idx, idx)
    assert logits2.shape == (3, 11, tiny_config.vocab_size)  # same shape with targets too
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_module_shapes(tiny_config):
    x = torch.randn(2, 9, tiny_config.n_embd)  # (B,T,C)
    assert Head(tiny_config, 8)(x).shape == (2, 9, 8)
    assert Head(tiny_config, 8).attention_weights(x).shape == (2, 9, 9)
    for module in (MultiHeadAttention(tiny_config), FeedForward(tiny_config), Block(tiny_config)):
        assert module(x).shape == x.shape


@pytest.mark.parametrize("name", ["bigram", "gpt"])
def test_causality(name, tiny_config):
    """Changing a future token never changes the logits at earlier positions."""
    model = models(tiny_config)[name].eval()
    idx = torch.randint(tiny_config.vocab_size, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % tiny_config.vocab_size
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=0)
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # and the change does reach the later positions


def test_attention_rows_are_causal_distributions(tiny_config):
    wei = Head(tiny_config, 8).attention_weights(torch.randn(1, 6, tiny_config.n_embd))[0]
    torch.testing.assert_close(wei.sum(-1), torch.ones(6))
    assert torch.all(torch.triu(wei, diagonal=1) == 0)


@pytest.mark.parametrize("name", ["bigram", "gpt"])
def test_initial_loss_is_about_ln_vocab(name, tiny_config, data):
    """Small initial weights give near-uniform predictions, so the first loss is about ln(V)."""
    model = models(tiny_config)[name]
    x = data[:160].view(10, 16)
    y = data[1:161].view(10, 16)
    _, loss = model(x, y)
    assert abs(loss.item() - math.log(tiny_config.vocab_size)) < 0.1


def test_lecture_preset_has_the_lecture_parameter_count():
    config = get_preset("lecture").with_vocab(65).model
    assert count_parameters(GPT(config)) == 10_788_929  # the lecture's "10.788929 M parameters"


def test_sequence_longer_than_block_size_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match="block_size"):
        GPT(tiny_config)(torch.zeros(1, tiny_config.block_size + 1, dtype=torch.long))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_embd=30, n_head=4), "divisible"),
    (dict(n_layer=0), "n_layer"),
    (dict(block_size=-8), "block_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_cross_attention_reads_the_other_sequence(tiny_config):
    """Queries from x (B,T,C), keys and values from y (B,S,C): (B,T,S) weights, no mask; with y = x
    and a causal head's weights, the last position (which the mask hides nothing from) agrees."""
    torch.manual_seed(0)
    cross, head = CrossHead(tiny_config, 8), Head(tiny_config, 8)
    x, y = torch.randn(2, 6, tiny_config.n_embd), torch.randn(2, 4, tiny_config.n_embd)
    assert cross(x, y).shape == (2, 6, 8)
    wei = cross.attention_weights(x, y)
    assert wei.shape == (2, 6, 4) and torch.all(wei > 0)  # every source token is read
    torch.testing.assert_close(wei.sum(-1), torch.ones(2, 6))
    cross.load_state_dict(head.state_dict())
    torch.testing.assert_close(cross(x, x)[:, -1], head(x)[:, -1])
    assert not torch.allclose(cross(x, x)[:, 0], head(x)[:, 0])
