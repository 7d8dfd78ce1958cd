"""Named presets, each a whole recipe (model size, budget, schedule): ``tiny`` (the original ``main.py``),
``lecture`` (the lecture's ~10.8M model, for a GPU), ``cpu`` (a 2-core CPU, ch. 6) and ``smoke`` (seconds,
for tests). `choose` is the one place that reads ``$GPTLIB_PRESET`` (the tests set it to ``smoke``)."""

import os
from dataclasses import dataclass, replace

import torch

from gptlib.config import GPTConfig, TrainConfig
from gptlib.errors import ConfigError

@dataclass(frozen=True)
class Preset:
    """A named pair of configs: what to build and how to train it."""

    name: str
    description: str
    model: GPTConfig
    train: TrainConfig

    def with_vocab(self, vocab_size: int) -> "Preset":
        """The same preset with the model's vocabulary set from the tokenizer."""
        return replace(self, model=replace(self.model, vocab_size=vocab_size))


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("tiny", "the original project's main.py hyperparameters",
           GPTConfig(block_size=8, n_embd=32, n_head=4, n_layer=6, dropout=0.2),
           TrainConfig(batch_size=32, max_iters=5000, eval_interval=500, eval_iters=200, learning_rate=1e-3)),
    Preset("lecture", "the lecture's final model, ~10.8M parameters; for a GPU",
           GPTConfig(block_size=256, n_embd=384, n_head=6, n_layer=6, dropout=0.2),
           # nanoGPT's recipe (lr 1e-3, warm-up, cosine to 1e-4, weight decay 0.1, clipping 1.0), stopped
           # at 2,000 steps, where its val loss bottoms out (chapter 7 says how that was found)
           TrainConfig(batch_size=64, max_iters=2000, eval_interval=250, eval_iters=200, learning_rate=1e-3,
                       min_lr=1e-4, warmup_iters=100, decay_lr=True, weight_decay=0.1, beta2=0.99,
                       grad_clip=1.0)),
    Preset("cpu", "a 2-core CPU: aims at val loss <= 1.88 in about 30 s on the fast path (ch. 6)",
           GPTConfig(block_size=64, n_embd=128, n_head=4, n_layer=4, dropout=0.0),
           # nanoGPT's CPU recipe reshaped for time to loss (`python -m gptlib bench --time-to-loss`)
           TrainConfig(batch_size=32, max_iters=700, eval_interval=100, eval_iters=10, learning_rate=2e-3,
                       min_lr=2e-4, warmup_iters=50, decay_lr=True, grad_clip=1.0)),
    Preset("smoke", "a few seconds; for tests",
           GPTConfig(block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.0),
           TrainConfig(batch_size=4, max_iters=20, eval_interval=10, eval_iters=2, learning_rate=1e-3)),
)}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a `ConfigError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def choose(default: Preset) -> Preset:
    """``default``, unless ``$GPTLIB_PRESET`` names another preset (the tests set ``smoke``)."""
    name = os.environ.get("GPTLIB_PRESET")
    return get_preset(name) if name else default


def auto_preset(device: torch.device | str) -> Preset:
    """``lecture`` on a CUDA GPU and ``cpu`` anywhere else, unless ``$GPTLIB_PRESET`` names another."""
    return choose(get_preset("lecture" if torch.device(device).type == "cuda" else "cpu"))
