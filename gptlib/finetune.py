"""Fine-tuning through the one run path (chapter 9): `gptlib.run.train_run` starts a run with
``Run.init_from`` from that checkpoint's weights and vocabulary, and with ``Run.lora`` trains LoRA
adapters (`gptlib.lora`) with everything else frozen. These are the steps it calls."""

import os
from dataclasses import asdict

import torch.nn as nn

from gptlib.checkpoint import Checkpoint, load_checkpoint, load_weights
from gptlib.config import GPTConfig
from gptlib.errors import ConfigError
from gptlib.lora import LoRAConfig, add_lora, count_trainable, lora_config

SHAPE = ("block_size", "n_embd", "n_head", "n_layer")  # what a fine-tuning run cannot change


def start(init_from: str | os.PathLike | None, model: GPTConfig, lora: LoRAConfig | None,
          resumed: Checkpoint | None) -> tuple[Checkpoint | None, LoRAConfig | None]:
    """What a run starts from: the checkpoint a new fine-tuning run loads (None: none, or resuming:
    ``resumed`` holds the weights) and the adapters it trains."""
    if resumed is not None:
        return None, run_lora(lora, resumed)
    return base_checkpoint(init_from, model), lora


def base_checkpoint(init_from: str | os.PathLike | None, model: GPTConfig) -> Checkpoint | None:
    """The checkpoint a fine-tuning run starts from (None: ``init_from`` is None); a ``model``
    config of another shape is a `ConfigError`."""
    if init_from is None:
        return None
    base = load_checkpoint(init_from)
    saved = base.model_config
    differ = [f"{name} (checkpoint {getattr(saved, name)}, asked {getattr(model, name)})"
              for name in SHAPE if getattr(saved, name) != getattr(model, name)]
    if differ:
        raise ConfigError(f"{init_from} holds a model of another shape: {'; '.join(differ)}; "
                          f"fine-tune it with its own sizes")
    return base


def run_lora(asked: LoRAConfig | None, resumed: Checkpoint) -> LoRAConfig | None:
    """A resumed run's adapters, as saved; ``asked`` for others is a `ConfigError`."""
    saved = resumed.extra.get("lora")
    saved = None if saved is None else LoRAConfig(**saved)
    if asked is not None and asked != saved:
        raise ConfigError(f"the run being resumed trained {saved or 'all its weights'}, not {asked}; "
                          f"resume it as it was")
    return saved


def prepare(model: nn.Module, base: Checkpoint | None, lora: LoRAConfig | None) -> nn.Module:
    """``model`` with ``base``'s weights (when given) and adapters added (when ``lora``)."""
    if base is not None:
        load_weights(model, base.model_state, base.tokenizer)
    return model if lora is None else add_lora(model, lora)


def lora_info(model: nn.Module) -> dict:
    """What a resumable checkpoint records of ``model``'s adapters: {"lora": {...}}, or {}."""
    config = lora_config(model)
    return {} if config is None else {"lora": asdict(config)}


def describe(model: nn.Module, init_from) -> str:
    """One line: where the weights come from and how many of them train."""
    config = lora_config(model)
    how = ("all weights train" if config is None
           else f"LoRA rank {config.rank}, alpha {config.alpha:g}, the rest frozen")
    total = sum(p.numel() for p in model.parameters())
    return (f"fine-tuning {init_from or 'a resumed run'}: {how}: {count_trainable(model):,} of "
            f"{total:,} parameters train")


def split_speeches(text: str) -> list[tuple[str, str]]:
    """The speeches of a play's text, in order: (speaker, speech), one per block between blank lines,
    the speech with its "NAME:" line; a block that does not start with one has the speaker ""."""
    speeches = []
    for block in text.split("\n\n"):
        head, newline, _ = block.partition("\n")
        speeches.append((head[:-1] if head.endswith(":") and newline else "", block))
    return speeches
