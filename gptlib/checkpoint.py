"""Checkpoints: one file with the weights, the configs and the tokenizer's vocabulary (and, for
resuming, the optimizer state, step, history and random states).

Saved atomically (temp file, fsync, rename) so a crash mid-save leaves the previous checkpoint
intact; loaded with ``torch.load(weights_only=True)``, which never executes code from the file.

The file is a plain dict (only tensors, numbers, strings, lists, tuples and dicts)::

    format, version       "gptlib-checkpoint", 1
    model_config          asdict(GPTConfig)
    train_config          asdict(TrainConfig) or None
    vocab                 a `CharTokenizer`'s characters, in id order; or, for another tokenizer,
    tokenizer             its ``to_dict()`` (`gptlib.tokenizer.tokenizer_from_dict` reads it back)
    model                 the model's state_dict, on the CPU, in the readable `GPT`'s layout (a
                          `FastGPT` saves and loads that layout too)
    step                  optimiser steps completed
    extra                 {} for weights only; a resumable checkpoint (`save_training_state`) adds
        data_sha256       the training text's sha256 (`gptlib.run`; a resumed run checks it)
        speed             the speed plan it trained with, asdict(SpeedConfig) (`gptlib.run`)
        history           History.to_dict(): step, train_loss, val_loss, lr, elapsed per evaluation
        best_val_loss     the lowest val loss so far
        optimizer         the optimizer's state_dict (AdamW moments and step counts)
        scaler            fp16 runs only: the GradScaler's state_dict (its scale and growth tracker)
        rng               torch (CPU global), cuda (one per GPU, [] without), batch and eval
                          (the `TrainState` generators): each a ByteTensor from get_state();
                          batch_device: where those two draw ("cpu", or "cuda" for a CUDA run)
"""

import os
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from gptlib.config import GPTConfig, TrainConfig
from gptlib.device import free_cpu_memory, out_of_memory
from gptlib.errors import CheckpointError, OutOfMemoryError
from gptlib.files import atomic_write
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer, tokenizer_from_dict
from gptlib.training import History, TrainState, make_optimizer

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

    @property
    def resumable(self) -> bool:
        """Whether this checkpoint holds a full training state (see `save_training_state`)."""
        extra = self.extra or {}
        return self.train_config is not None and all(k in extra for k in _RESUME_KEYS)

    def build_model(self, device: torch.device | str = "cpu") -> GPT:
        """A `GPT` with this checkpoint's config and weights, in eval mode on ``device``.

        The sizes come first, from a model on the meta device (shapes without memory): weights that
        do not fit the config, or a model larger than the memory free (the readable GPT holds a
        block_size x block_size causal mask per head), fail before anything is allocated."""
        with torch.device("meta"):
            sizes = GPT(self.model_config)
        misfit = weights_misfit(sizes, self.model_state)
        if misfit:
            raise CheckpointError(f"the checkpoint's weights do not fit its own model config ({misfit}); the "
                                  f"file was damaged or edited")
        need = sum(t.numel() * t.element_size() for t in (*sizes.parameters(), *sizes.buffers()))
        free = free_cpu_memory()  # built on the CPU, then moved to the device
        try:
            if free is not None and need > free:  # not even tried: Linux would kill the process, not refuse
                raise MemoryError
            model = GPT(self.model_config)
        except (MemoryError, RuntimeError) as err:
            if not out_of_memory(err):
                raise
            c = self.model_config
            raise OutOfMemoryError(f"this checkpoint's model needs {need / 2**30:.1f} GiB, more than this machine "
                                   f"can give: its block_size {c.block_size:,} means a {c.block_size:,} x "
                                   f"{c.block_size:,} causal mask in each of its {c.n_layer * c.n_head} heads; "
                                   f"sample it on a machine with more memory") from None
        model.load_state_dict(self.model_state)
        return model.to(device).eval()


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    with atomic_write(path) as f:
        try:
            torch.save(obj, f)
        except RuntimeError as err:
            # Ctrl-C (or SIGTERM, SIGHUP) mid-save: torch's zip writer, closing, raises a RuntimeError
            # that hides the interrupt; raise the interrupt (the old file stays, atomic_write drops the temp)
            if isinstance(err.__context__, KeyboardInterrupt):
                raise err.__context__ from None
            raise
    return Path(path)


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files that a save of ``path`` killed before its rename left behind.

    Nothing ever reads them (the checkpoint at ``path`` is still the previous, complete one), so
    they only take disk space. Call it when no other process is saving to ``path``, e.g. when a
    run starts or resumes.
    """
    path = Path(path)
    # atomic_save names them ".{name}.<random>.tmp"; match exactly that, nothing else in the folder.
    pattern = re.compile(r"\." + re.escape(path.name) + r"\.[A-Za-z0-9_]+\.tmp")
    removed = []
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            if pattern.fullmatch(candidate.name) and candidate.is_file():
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return removed


def save_checkpoint(path: str | os.PathLike, model: nn.Module, tokenizer: CharTokenizer,
                    model_config: GPTConfig, train_config: TrainConfig | None = None, step: int = 0,
                    extra: dict | None = None) -> Path:
    """Write a checkpoint atomically; ``extra`` must hold only tensors, numbers, strings, lists, dicts."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": asdict(model_config),
        "train_config": None if train_config is None else asdict(train_config),
        **({"vocab": list(tokenizer.chars)} if isinstance(tokenizer, CharTokenizer)
           else {"tokenizer": tokenizer.to_dict()}),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "extra": extra or {},
    }
    return atomic_save(payload, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and check a checkpoint without executing any code from it."""
    path = Path(path)
    if path.is_dir():  # e.g. the run's --out folder instead of a file in it
        inside = [path / name for name in ("best.pt", "last.pt") if (path / name).is_file()]
        raise CheckpointError(f"{path} is a folder; pass a checkpoint file" +
                              (f" such as {inside[0]}" if inside else " (train writes best.pt and last.pt)"))
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m gptlib train --out DIR`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, random bytes, a pickle with code in it...
        raise CheckpointError(f"{path} is not a readable gptlib checkpoint (truncated or another kind of "
                              f"file): {_not_a_checkpoint(path, err)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gptlib checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {payload.get('version')}; this gptlib "
                              f"reads version {VERSION}")
    try:
        model_config = GPTConfig(**payload["model_config"])
        train_config = None if payload["train_config"] is None else TrainConfig(**payload["train_config"])
        tokenizer = (tokenizer_from_dict(payload["tokenizer"]) if "tokenizer" in payload
                     else CharTokenizer(payload["vocab"]))
        state = payload["model"]
        step = int(payload["step"])
    except KeyError as err:
        raise CheckpointError(f"{path} is damaged: it has no {err.args[0]!r} entry") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) and not v.is_meta for v in state.values()):
        raise CheckpointError(f"{path} is damaged: its weights are not a dict of tensors (with data)")
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not_finite:  # sampling from them fails deep in torch, or "works" and prints nothing useful
        raise CheckpointError(f"{path} holds weights that are not finite numbers (NaN or inf, in {len(not_finite)} "
                              f"tensors, e.g. {not_finite[0]}); it is damaged, or from a run that diverged")
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(f"{path}: the vocabulary has {tokenizer.vocab_size} characters but the model "
                              f"config says {model_config.vocab_size}")
    return Checkpoint(model_config, train_config, tokenizer, state, step, payload.get("extra") or {})


def _not_a_checkpoint(path: Path, err: Exception) -> str:
    """What a file that torch.load refused is, from its first bytes and torch's error (whose own words
    would advise ``weights_only=False``, which runs any code in the file)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "it is empty"
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or an older torch.save's pickle
        return f"it starts with {head!r}, not as a file that torch.save writes"
    if isinstance(err, pickle.UnpicklingError):
        return "it holds objects other than tensors, numbers and strings, which gptlib never loads"
    return "it is cut short or damaged"


def load_weights(model: nn.Module, state: dict, tokenizer: CharTokenizer | None = None) -> None:
    """Load ``state`` into ``model``, with a clear error when the shapes or vocabulary differ."""
    if tokenizer is not None and hasattr(model, "config") and tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"the checkpoint's vocabulary has {tokenizer.vocab_size} characters; this "
                              f"model has vocab_size {model.config.vocab_size}")
    misfit = weights_misfit(model, state)
    if misfit:
        raise CheckpointError(f"the checkpoint does not fit this model: {misfit}. Build the model from the "
                              f"checkpoint's own config")
    model.load_state_dict(state)


def weights_misfit(model: nn.Module, state: dict) -> str:
    """How ``state`` differs from ``model``'s tensors (which may be on the meta device), or ""."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if mismatched:
        parts.append("shapes differ: " + "; ".join(mismatched[:3]))
    if missing:
        parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    return "; ".join(parts)


_RESUME_KEYS = ("history", "optimizer", "rng")


def rng_states(state: TrainState) -> dict:
    """Every random state a training step draws from: torch's CPU and CUDA generators (dropout,
    initialisation) and the state's batch and eval generators."""
    return {
        "torch": torch.get_rng_state(),
        # Only once CUDA is in use: asking earlier would start CUDA in a run that never touches the GPU.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "batch": state.batch_generator.get_state(),
        "eval": state.eval_generator.get_state(),
        # "cuda" when a CUDA run drew its batches on the GPU (`make_generators`); absent: the CPU
        "batch_device": state.batch_generator.device.type,
    }


def save_training_state(path: str | os.PathLike, state: TrainState, tokenizer: CharTokenizer,
                        model_config: GPTConfig, extra: dict | None = None) -> Path:
    """Write a resumable checkpoint of ``state``: weights, optimizer, step, history and RNG states.

    Call it between steps (a `train` callback is the place); `resume_training_state` then continues
    exactly where this left off. ``extra`` adds your own entries (tensors, numbers, strings, lists).
    """
    training = {
        "history": state.history.to_dict(),
        "best_val_loss": state.history.best_val_loss,
        "optimizer": state.optimizer.state_dict(),
        "rng": rng_states(state),
    }
    if state.scaler is not None:  # fp16: the loss scale it has settled on (reading it waits for the GPU)
        training["scaler"] = state.scaler.state_dict()
    return save_checkpoint(path, state.model, tokenizer, model_config, state.config, state.step,
                           {**(extra or {}), **training})


def resume_training_state(checkpoint: "Checkpoint | str | os.PathLike", model: nn.Module,
                          device: torch.device | str = "cpu", *, fused: bool = False) -> TrainState:
    """Load a `save_training_state` checkpoint into ``model`` and return the `TrainState` to pass to
    `train(..., state=...)`.

    This also sets torch's global random state (CPU, and CUDA when saved and present) to the
    saved one, because dropout draws from it: build the model *before* calling this, and
    call `train` right after, so nothing else draws random numbers in between (`gptlib.run.train_run`
    does both). ``fused`` picks AdamW's fused kernel, as the run's speed plan did. An fp16 run's
    GradScaler comes back with its saved scale.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if not ckpt.resumable:
        raise CheckpointError("this checkpoint holds weights only, without the optimizer and random "
                              "states that resuming needs; sample from it, or start a new run from its "
                              "weights (save resumable ones with save_training_state)")
    rng = ckpt.extra.get("rng")
    drawn_on = rng.get("batch_device", "cpu") if isinstance(rng, dict) else "cpu"  # the batches' device
    if drawn_on != "cpu" and torch.device(device).type != drawn_on:
        raise CheckpointError(f"this run drew its batches on {drawn_on} (their random stream lives "
                              f"there); resume it on a {drawn_on} device, not {torch.device(device)}")
    where = torch.device(device) if drawn_on != "cpu" else torch.device("cpu")
    load_weights(model, ckpt.model_state, ckpt.tokenizer)
    model.to(device)  # before the optimizer loads its state, which it moves to each parameter's device
    optimizer = make_optimizer(model, ckpt.train_config, fused=fused)
    try:
        optimizer.load_state_dict(ckpt.extra["optimizer"])
        history = History.from_dict(ckpt.extra["history"])
        rng = ckpt.extra["rng"]
        batch_generator = torch.Generator(device=where).set_state(rng["batch"])
        eval_generator = torch.Generator(device=where).set_state(rng["eval"])
        scaler = None
        if "scaler" in ckpt.extra:
            scaler = torch.amp.GradScaler(torch.device(device).type)
            scaler.load_state_dict(ckpt.extra["scaler"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            # A machine with fewer GPUs than the one that saved restores the ones it has.
            for index, cuda_state in enumerate(rng["cuda"][:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, index)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"the checkpoint's training state is damaged: {type(err).__name__}: {err}") from None
    return TrainState(model=model, optimizer=optimizer, config=ckpt.train_config, step=ckpt.step,
                      history=history, batch_generator=batch_generator, eval_generator=eval_generator,
                      scaler=scaler)
