"""Attention maps: the weights that chapter 7 plots are the weights the model actually uses.

Each check runs the same computation two ways and compares: the maps, multiplied into each head's
values, must give that head's output, and rebuilding the whole forward pass from the maps must give
the model's logits. If `gptlib.fast` can map weights from the readable model, the fast model (whose
fused kernel never returns weights) must give the same logits as the model whose maps we plot.

Run: pytest tests/test_attention_maps.py
"""

import pytest
import torch

from gptlib.attention_maps import attention_maps
from gptlib.errors import ConfigError
from gptlib.fast import FastGPT, fast_to_readable, readable_to_fast
from gptlib.model import GPT


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(0)
    return GPT(tiny_config).eval()


@pytest.fixture
def idx(data):
    return data[:12]  # (T,), T = 12 < block_size 16


def test_shape(model, idx, tiny_config):
    maps = attention_maps(model, idx)
    assert maps.shape == (tiny_config.n_layer, tiny_config.n_head, 12, 12)
    assert attention_maps(model, idx[None]).shape == maps.shape  # (1,T) works too


def test_rows_are_causal_distributions(model, idx):
    maps = attention_maps(model, idx)
    assert torch.all(maps >= 0)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))  # each row sums to 1
    assert torch.all(maps.triu(diagonal=1) == 0)  # no token reads from the future
    assert torch.all(maps[..., 0, 0] == 1)  # the first token can only read itself


def test_weights_times_values_give_each_heads_output(model, idx):
    maps = attention_maps(model, idx)
    x = model.token_embedding_table(idx[None]) + model.position_embedding_table(torch.arange(len(idx)))
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            h = block.ln1(x)  # (1,T,C)
            for i, head in enumerate(block.sa.heads):
                torch.testing.assert_close(maps[layer, i] @ head.value(h)[0], head(h)[0])
            x = block(x)


def logits_from_maps(model, idx, maps):
    """The model's forward pass with every head's softmax replaced by the given weights."""
    x = model.token_embedding_table(idx[None]) + model.position_embedding_table(torch.arange(len(idx)))
    for layer, block in enumerate(model.blocks):
        h = block.ln1(x)  # (1,T,C)
        heads = [maps[layer, i] @ head.value(h)[0] for i, head in enumerate(block.sa.heads)]  # nh x (T,hs)
        x = x + block.sa.proj(torch.cat(heads, dim=-1))  # (1,T,C)
        x = x + block.ffwd(block.ln2(x))  # (1,T,C)
    return model.lm_head(model.ln_f(x))  # (1,T,V)


def test_maps_reproduce_the_logits(model, idx):
    maps = attention_maps(model, idx)
    with torch.no_grad():
        expected, _ = model(idx[None])
        torch.testing.assert_close(logits_from_maps(model, idx, maps), expected)


def test_maps_are_computed_without_dropout_and_keep_the_mode(tiny_config, idx):
    from dataclasses import replace

    torch.manual_seed(0)
    model = GPT(replace(tiny_config, dropout=0.5))  # training mode, heavy dropout
    first = attention_maps(model, idx)
    assert model.training  # put back as it was
    torch.testing.assert_close(attention_maps(model, idx), first)  # no randomness
    with torch.no_grad():
        expected, _ = model.eval()(idx[None])
        torch.testing.assert_close(logits_from_maps(model, idx, first), expected)


def test_maps_follow_the_input_not_a_cached_state(model, data):
    a = attention_maps(model, data[:10])
    b = attention_maps(model, data[20:30])
    assert not torch.allclose(a, b)
    # causality: appending tokens does not change the maps of the earlier ones
    torch.testing.assert_close(attention_maps(model, data[:12])[..., :10, :10], a)


def test_bad_input_is_a_clear_error(model, data, tiny_config):
    with pytest.raises(ConfigError, match="block_size"):
        attention_maps(model, data[:tiny_config.block_size + 1])
    with pytest.raises(ConfigError, match="one sequence of 1 to block_size"):
        attention_maps(model, data[:24].view(2, 12))
    with pytest.raises(ConfigError, match="one sequence of 1 to block_size"):
        attention_maps(model, data[:0])


def test_fast_model_gives_the_outputs_of_the_model_whose_maps_we_plot(model, data, tiny_config):
    fast_model = FastGPT(tiny_config).eval()
    fast_model.load_state_dict(readable_to_fast(model.state_dict(), tiny_config))
    idx = data[:tiny_config.block_size]  # (T,), the full context
    with torch.no_grad():
        fast_logits, _ = fast_model(idx[None])  # fused attention: no weights to look at
        torch.testing.assert_close(fast_logits, model(idx[None])[0])
        torch.testing.assert_close(logits_from_maps(model, idx, attention_maps(model, idx)), fast_logits)


def test_a_fast_models_maps_through_its_readable_twin(data, tiny_config):
    torch.manual_seed(1)
    fast_model = FastGPT(tiny_config).eval()  # e.g. trained with the fast path
    readable = GPT(tiny_config).eval()
    readable.load_state_dict(fast_to_readable(fast_model.state_dict(), tiny_config))
    idx = data[:tiny_config.block_size]
    with torch.no_grad():
        maps = attention_maps(readable, idx)
        torch.testing.assert_close(logits_from_maps(readable, idx, maps), fast_model(idx[None])[0])


def test_head_summary_on_known_patterns():
    from gptlib.attention_maps import head_summary

    T = 6
    previous = torch.zeros(T, T)
    previous[0, 0] = 1
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1  # each token reads the one before it
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # even average of the past
    rows = head_summary(torch.stack([previous, torch.eye(T), uniform])[None])  # (1,3,T,T)
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0), (0, 1), (0, 2)]
    assert rows[0]["previous"] == 1 and rows[0]["current"] == 0 and rows[0]["spread"] < 1e-6
    assert rows[1]["current"] == 1 and rows[1]["previous"] == 0
    assert abs(rows[2]["spread"] - 1) < 1e-5


def test_plot_attention_grid_has_one_panel_per_head_with_token_labels(model, idx, tokenizer):
    import matplotlib

    matplotlib.use("Agg")
    from gptlib.plotting import plot_attention_grid, token_labels

    maps = attention_maps(model, idx)  # (2,4,12,12)
    tokens = tokenizer.decode(idx.tolist())
    fig = plot_attention_grid(maps, tokens)
    panels = [ax for ax in fig.axes if ax.images]  # the heatmaps; the other axes is the colour bar
    assert len(panels) == maps.shape[0] * maps.shape[1] and len(fig.axes) == len(panels) + 1
    bottom_left = panels[(maps.shape[0] - 1) * maps.shape[1]]
    assert [t.get_text() for t in bottom_left.get_xticklabels()] == token_labels(tokens)
    assert token_labels("a \n") == ["a", "␣", "⏎"]


def test_head_summary_word_and_line_starts():
    from gptlib.attention_maps import head_summary

    tokens = "ab\ncde fgh"
    T = len(tokens)
    word = torch.zeros(T, T)  # every token reads the first letter of its word (or itself)
    first = 0
    for t, ch in enumerate(tokens):
        word[t, first] = 1
        if ch in " \n":
            first = t + 1
    rows = head_summary(torch.stack([word, torch.eye(T)])[None], tokens)
    # counted from two past the first letter: 'e' (5), ' ' (6), 'h' (10) for words; 'e', ' ', 'f', 'g', 'h'
    # for the line, where the word head reads the line's first letter from 'e' and ' ' only
    assert rows[0]["word_start"] == 1 and rows[1]["word_start"] == 0
    assert abs(rows[0]["line_start"] - 2 / 5) < 1e-6
    assert torch.isnan(torch.tensor(head_summary(torch.eye(3)[None, None], "abc")[0]["word_start"]))
    with pytest.raises(ConfigError, match="characters"):
        head_summary(torch.eye(3)[None, None], "ab")
