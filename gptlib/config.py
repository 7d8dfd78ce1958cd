"""What the model is (`GPTConfig`) and how it trains (`TrainConfig`): frozen, checked when made."""

import math
from dataclasses import dataclass

from gptlib.errors import ConfigError


def _check_int(obj, *names, least: int = 1):  # an int >= least (1: positive, 0: non-negative)
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise ConfigError(f"{name} must be a {('non-negative', 'positive')[least]} integer, got {v!r}")


def check_seed(seed, what: str = "seed") -> int:
    """``seed`` if it is an integer in [0, 2**63) (torch takes it, and seed + 1); else a `ConfigError`."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError(f"{what} must be an integer from 0 to 2**63 - 1, got {seed!r}")
    return seed


def _check_fraction(obj, *names):
    for name in names:
        if not isinstance(getattr(obj, name), (int, float)) or not 0.0 <= getattr(obj, name) < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(obj, name)!r}")


@dataclass(frozen=True)
class GPTConfig:
    """The shape of the model: vocabulary, context length, width, heads, depth and dropout."""

    vocab_size: int = 65  # number of distinct characters in Tiny Shakespeare
    block_size: int = 256  # the longest context the model can attend to
    n_embd: int = 384  # width of the residual stream (C)
    n_head: int = 6  # attention heads per block; each has head_size = n_embd // n_head
    n_layer: int = 6  # transformer blocks
    dropout: float = 0.2  # on attention weights, head outputs and the feed-forward output

    def __post_init__(self):
        _check_int(self, "vocab_size", "block_size", "n_embd", "n_head", "n_layer")
        _check_fraction(self, "dropout")
        if self.n_embd % self.n_head != 0:
            divisors = [d for d in range(1, min(self.n_embd, 16) + 1) if self.n_embd % d == 0]
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): each "
                              f"head gets n_embd // n_head channels. Try n_head in {divisors}.")

    @property
    def head_size(self) -> int:
        """Channels per attention head (hs)."""
        return self.n_embd // self.n_head


@dataclass(frozen=True)
class TrainConfig:
    """How to train: batch size, steps, evaluation, optimiser and learning-rate schedule."""

    batch_size: int = 64  # sequences per step (B)
    max_iters: int = 5000  # optimiser steps
    eval_interval: int = 500  # estimate train/val loss every this many steps (and at the last step)
    eval_iters: int = 200  # batches averaged per loss estimate
    learning_rate: float = 3e-4  # peak learning rate
    min_lr: float = 3e-5  # where cosine decay ends (used when decay_lr is True)
    warmup_iters: int = 0  # linear warm-up steps from 0 to learning_rate
    decay_lr: bool = False  # cosine decay from learning_rate to min_lr after warm-up
    weight_decay: float = 0.0  # AdamW weight decay on matrices (never on biases or LayerNorm)
    beta1: float = 0.9  # AdamW: decay of the running mean of the gradients
    beta2: float = 0.99  # AdamW: decay of the running mean of the squared gradients
    grad_clip: float = 0.0  # clip the gradient norm to this value; 0 turns clipping off
    seed: int = 1337  # seeds the weights, dropout and the batch sampler

    def __post_init__(self):
        _check_int(self, "batch_size", "max_iters", "eval_interval", "eval_iters")
        _check_int(self, "warmup_iters", least=0)
        for name in ("learning_rate", "min_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.min_lr > self.learning_rate:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed learning_rate ({self.learning_rate})")
        _check_fraction(self, "beta1", "beta2")
        check_seed(self.seed)
