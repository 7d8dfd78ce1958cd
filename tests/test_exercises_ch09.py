"""The self-checks of chapter 9: each accepts the reference solution and rejects a typical wrong
answer with a hint (never the answer); a reader's exception is a verdict, not a traceback.

Run: pytest tests/test_exercises_ch09.py
"""

import torch.nn as nn

from gptlib.exercises import ch09
from gptlib.lora import LoRALinear
from helpers import accepts, boom, rejects


def test_lora_parameters():
    accepts(ch09.lora_parameters(lambda config, r: 16 * config.n_layer * r * config.n_embd))
    rejects(ch09.lora_parameters(lambda config, r: 14 * config.n_layer * r * config.n_embd), "3C")
    rejects(ch09.lora_parameters(lambda config, r: 12 * config.n_layer * config.n_embd ** 2), "r x (in + out)")
    rejects(ch09.lora_parameters(lambda config, r: "many"), "number")
    rejects(ch09.lora_parameters(boom), "ZeroDivisionError")


def test_merge():
    accepts(ch09.merge(lambda W, A, B, alpha, r: W + (alpha / r) * B @ A))
    rejects(ch09.merge(lambda W, A, B, alpha, r: W + B @ A), "alpha / rank")
    rejects(ch09.merge(lambda W, A, B, alpha, r: W + alpha * B @ A), "divided by the rank")
    rejects(ch09.merge(lambda W, A, B, alpha, r: A), "shape")
    rejects(ch09.merge(boom), "ZeroDivisionError")


def _adapt(model, config, where=(".sa.",), zero_b=True):
    for p in model.parameters():
        p.requires_grad_(False)
    for name, m in list(model.named_modules()):
        if type(m) is nn.Linear and any(w in name for w in where):
            parent, _, leaf = name.rpartition(".")
            layer = LoRALinear.from_linear(m, config)
            if not zero_b:
                nn.init.normal_(layer.lora_B)
            setattr(model.get_submodule(parent), leaf, layer)
    return model


def test_attention_only():
    accepts(ch09.attention_only(_adapt))
    rejects(ch09.attention_only(lambda m, c: _adapt(m, c, where=(".sa.", ".ffwd."))), "feed-forward")
    rejects(ch09.attention_only(lambda m, c: _adapt(m, c, where=(".sa.qkv",))), "sa.proj")
    rejects(ch09.attention_only(lambda m, c: _adapt(m, c, zero_b=False)), "zero")
    rejects(ch09.attention_only(boom), "ZeroDivisionError")
