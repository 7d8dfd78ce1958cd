"""Chapter 7's sampler: a panel that shows `gptlib.sampling.sample_text`'s text as it grows, or its error."""

import html
import time

import torch.nn as nn

from gptlib.sampling import sample_text
from gptlib.tokenizer import CharTokenizer

__all__ = ["SamplerWidget", "sample_text", "sampler_widget"]


class SamplerWidget:
    """The panel: prompt, temperature, top-k, length, seed, a Generate button, the output (attributes)."""

    refresh_s = 0.05  # redraw the output at most this often while sampling (each redraw is a message)

    def __init__(self, model: nn.Module, tokenizer: CharTokenizer, prompt: str = "ROMEO:\n",
                 max_new_tokens: int = 300, temperature: float = 0.8, top_k: int = 0, seed: int = 1337):
        import ipywidgets as widgets  # only when a panel is built
        self.model, self.tokenizer = model, tokenizer
        wide, style = widgets.Layout(width="95%"), {"description_width": "130px"}
        self.prompt = widgets.Textarea(value=prompt, description="prompt", rows=2, layout=wide, style=style)
        self.temperature = widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05,
                                               description="temperature", style=style)
        self.top_k = widgets.IntSlider(value=top_k, min=0, max=tokenizer.vocab_size,
                                       description="top-k (0 = all)", style=style)
        self.max_new_tokens = widgets.IntSlider(value=max_new_tokens, min=1, max=2000, step=10,
                                                description="characters", style=style)
        self.seed = widgets.IntText(value=seed, description="seed", style=style)
        self.button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.output = widgets.HTML(value=_pre(""), layout=wide)
        self.button.on_click(self.generate)
        self.panel = widgets.VBox([self.prompt, self.temperature, self.top_k, self.max_new_tokens,
                                   self.seed, self.button, self.output])

    def generate(self, _button=None) -> None:
        """The button's click handler: the text as it grows, or what is wrong with the input."""
        self.button.disabled = True
        text, last_redraw = [self.prompt.value], time.monotonic()

        def on_token(ch: str) -> None:
            nonlocal last_redraw
            text.append(ch)
            if time.monotonic() - last_redraw > self.refresh_s:
                self.output.value = _pre("".join(text))
                last_redraw = time.monotonic()

        try:
            self.output.value = _pre(self.prompt.value)
            result = sample_text(self.model, self.tokenizer, self.prompt.value, self.max_new_tokens.value,
                                 self.temperature.value, self.top_k.value or None, self.seed.value, on_token)
            self.output.value = _pre(result)
        except ValueError as err:
            self.output.value = _pre(f"Cannot generate: {err}", color="#b00020")
        finally:
            self.button.disabled = False

    @property
    def text(self) -> str:
        """What the output area shows, as plain text."""
        value = self.output.value
        return html.unescape(value[value.index(">") + 1:value.rindex("</pre>")])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.panel)


def _pre(text: str, color: str | None = None) -> str:
    style = "white-space: pre-wrap; font-family: monospace; margin: 0"
    style += f"; color: {color}" if color else ""
    return f'<pre style="{style}">{html.escape(text)}</pre>'


sampler_widget = SamplerWidget  # the name chapter 7 calls it by: sampler_widget(model, tokenizer, prompt=...)
