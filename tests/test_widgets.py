"""The sampler of chapter 7: `sample_text` directly, and the widget driven as a reader would drive it
(set the controls, click Generate, read the output area); and the chapter's other live display, the
loss plot that redraws in place.

Run: pytest tests/test_widgets.py
"""

import pytest
import torch

from gptlib.model import GPT
from gptlib.sampling import generate
from gptlib.widgets import sample_text, sampler_widget


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(0)
    return GPT(tiny_config)


def test_sample_text_is_the_prompt_then_the_new_characters(model, tokenizer):
    out = sample_text(model, tokenizer, "All:", max_new_tokens=30, seed=7)
    assert out.startswith("All:") and len(out) == 4 + 30
    assert set(out) <= set(tokenizer.chars)


def test_same_seed_same_text_and_it_matches_generate(model, tokenizer):
    a = sample_text(model, tokenizer, "Speak", 25, temperature=0.9, top_k=5, seed=3)
    assert sample_text(model, tokenizer, "Speak", 25, temperature=0.9, top_k=5, seed=3) == a
    assert sample_text(model, tokenizer, "Speak", 25, temperature=0.9, top_k=5, seed=4) != a
    idx = torch.tensor([tokenizer.encode("Speak")])
    expected = generate(model, idx, 25, 0.9, 5, torch.Generator().manual_seed(3))  # the library's sampler
    assert a == tokenizer.decode(expected[0].tolist())


def test_on_token_sees_each_character_as_it_is_made(model, tokenizer):
    seen = []
    out = sample_text(model, tokenizer, "\n", 20, seed=1, on_token=seen.append)
    assert len(seen) == 20 and all(len(ch) == 1 for ch in seen)
    assert "\n" + "".join(seen) == out


def test_greedy_and_a_prompt_longer_than_the_context(model, tokenizer, text, tiny_config):
    prompt = text[:3 * tiny_config.block_size]  # cropped to the last block_size characters inside
    a = sample_text(model, tokenizer, prompt, 10, temperature=0, seed=1)
    assert a == sample_text(model, tokenizer, prompt, 10, temperature=0, seed=2)  # greedy ignores the seed


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="Café"), "unknown character"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(max_new_tokens=2.5), "max_new_tokens"),
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=1000), "top_k"),
    (dict(seed=-1), "seed"),
    (dict(seed="1"), "seed"),
])
def test_bad_input_is_a_value_error_that_says_what_to_change(model, tokenizer, kwargs, message):
    args = dict(prompt="All:", max_new_tokens=5, temperature=1.0, top_k=None, seed=0) | kwargs
    seen = []
    with pytest.raises(ValueError, match=message):
        sample_text(model, tokenizer, on_token=seen.append, **args)
    assert seen == []  # checked before anything is sampled


def test_widget_click_shows_the_sample(model, tokenizer):
    w = sampler_widget(model, tokenizer, prompt="All:", max_new_tokens=50)
    w.temperature.value, w.top_k.value, w.seed.value = 0.7, 10, 5
    w.max_new_tokens.value = 21  # sliders snap to their step
    w.button.click()
    expected = sample_text(model, tokenizer, "All:", w.max_new_tokens.value, 0.7, 10, 5)
    assert w.text == expected
    assert not w.button.disabled


def test_widget_shows_text_while_it_is_made(model, tokenizer):
    w = sampler_widget(model, tokenizer, prompt="All:", max_new_tokens=200)
    w.refresh_s = 0.0  # redraw on every character
    shown = []
    w.output.observe(lambda change: shown.append(change["new"]), names="value")
    w.button.click()
    assert len(shown) > 100  # many partial redraws, each one longer
    assert w.text.startswith("All:") and len(w.text) == 4 + 200


@pytest.mark.parametrize("setup, message", [
    (lambda w: setattr(w.prompt, "value", ""), "prompt is empty"),
    (lambda w: setattr(w.prompt, "value", "Café au lait"), "unknown character"),
    (lambda w: setattr(w.seed, "value", -3), "seed"),
])
def test_widget_bad_input_shows_a_message_not_a_traceback(model, tokenizer, setup, message):
    w = sampler_widget(model, tokenizer, prompt="All:")
    setup(w)
    w.button.click()  # must not raise
    assert message in w.text and w.text.startswith("Cannot generate:")
    assert "Traceback" not in w.output.value
    assert not w.button.disabled  # ready for the next try
    w.prompt.value, w.seed.value = "All:", 1  # fixed input works again
    w.button.click()
    assert w.text.startswith("All:")


def test_widget_displays_as_a_panel(model, tokenizer):
    w = sampler_widget(model, tokenizer)
    assert w.button in w.panel.children and w.output in w.panel.children
    assert w.top_k.max == tokenizer.vocab_size


def test_live_loss_plot_draws_once_then_updates_in_place(monkeypatch):
    import types

    import IPython.display
    import matplotlib

    matplotlib.use("Agg")
    from gptlib.plotting import LiveLossPlot
    from gptlib.training import History

    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", obj))

    def fake_display(obj, display_id=False):
        calls.append(("display", obj))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    history = History()
    live = LiveLossPlot(title="test")
    state = types.SimpleNamespace(history=history)  # the callback reads nothing but the history
    for step, loss in [(10, 3.0), (20, 2.5), (30, 2.6)]:
        history.append(step, loss, loss + 0.1, 1e-3, float(step))
        live(state)
    assert [kind for kind, _ in calls] == ["display", "update", "update"]
    ax = calls[-1][1].axes[0]
    assert ax.get_xscale() == "linear"  # step 0 to the end, as plot_loss_curves (ch. 7)
    assert any("best val 2.600 (step 20)" in t.get_text() for t in ax.get_legend().get_texts())
