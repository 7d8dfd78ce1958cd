"""Checkpoints: one file with the weights, the configs and the tokenizer's vocabulary (and, for
resuming, the optimizer state, step, history and random states).

Saved atomically (temp file, fsync, rename) so a crash mid-save leaves the previous checkpoint
intact; loaded with ``torch.load(weights_only=True)``, which never executes code from the file.
"""

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from gptlib.config import GPTConfig, TrainConfig
from gptlib.errors import CheckpointError
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer

FORMAT = "gptlib-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint file holds, loaded and checked."""

    model_config: GPTConfig
    train_config: TrainConfig | None
    tokenizer: CharTokenizer
    model_state: dict
    step: int = 0
    extra: dict | None = None  # optimizer state, history, random states: what resuming needs

    def build_model(self, device: torch.device | str = "cpu") -> GPT:
        """A `GPT` with this checkpoint's config and weights, in eval mode on ``device``."""
        model = GPT(self.model_config)
        load_weights(model, self.model_state, self.tokenizer)
        return model.to(device).eval()


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        _fsync_dir(path.parent)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (not possible on every platform, e.g. Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, tokenizer: CharTokenizer,
                    model_config: GPTConfig, train_config: TrainConfig | None = None, step: int = 0,
                    extra: dict | None = None) -> Path:
    """Write a checkpoint atomically; ``extra`` must hold only tensors, numbers, strings, lists, dicts."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": asdict(model_config),
        "train_config": None if train_config is None else asdict(train_config),
        "vocab": list(tokenizer.chars),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "extra": extra or {},
    }
    return atomic_save(payload, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and check a checkpoint without executing any code from it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m gptlib train --out DIR`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, random bytes, a pickle with code in it...
        raise CheckpointError(f"{path} is not a readable gptlib checkpoint (truncated or another kind of "
                              f"file): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gptlib checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {payload.get('version')}; this gptlib "
                              f"reads version {VERSION}")
    try:
        model_config = GPTConfig(**payload["model_config"])
        train_config = None if payload["train_config"] is None else TrainConfig(**payload["train_config"])
        tokenizer = CharTokenizer(payload["vocab"])
        state = payload["model"]
        step = int(payload["step"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged: {err}") from None
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(f"{path}: the vocabulary has {tokenizer.vocab_size} characters but the model "
                              f"config says {model_config.vocab_size}")
    return Checkpoint(model_config, train_config, tokenizer, state, step, payload.get("extra") or {})


def load_weights(model: nn.Module, state: dict, tokenizer: CharTokenizer | None = None) -> None:
    """Load ``state`` into ``model``, with a clear error when the shapes or vocabulary differ."""
    if tokenizer is not None and hasattr(model, "config") and tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"the checkpoint's vocabulary has {tokenizer.vocab_size} characters; this "
                              f"model has vocab_size {model.config.vocab_size}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append("shapes differ: " + "; ".join(mismatched[:3]))
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise CheckpointError("the checkpoint does not fit this model: " + "; ".join(parts) +
                              ". Build the model from the checkpoint's own config")
    model.load_state_dict(state)
