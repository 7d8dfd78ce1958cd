"""Checkpoints: one plain dict, saved atomically (temp file, fsync, rename) and read with
``torch.load(weights_only=True)``, which runs no code: ``format``, ``version``, both configs, the vocabulary
(``vocab``, or a tokenizer's ``to_dict()``), the readable `GPT`'s state_dict (``model``; `FastGPT` saves
that layout too), ``step`` and ``extra`` ({} for weights only; `save_training_state` puts its state there)."""

import glob
import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from gptlib.config import GPTConfig, TrainConfig
from gptlib.device import free_cpu_memory, out_of_memory
from gptlib.errors import CheckpointError, OutOfMemoryError
from gptlib.files import atomic_write
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer
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
    extra: dict = field(default_factory=dict)  # optimizer state, history, random states: what resuming needs

    @property
    def resumable(self) -> bool:
        """Whether this checkpoint holds a full training state (see `save_training_state`)."""
        return self.train_config is not None and {"history", "optimizer", "rng"} <= self.extra.keys()

    def build_model(self, device: torch.device | str = "cpu") -> GPT:
        """A `GPT` with these weights, in eval mode on ``device``; weights that misfit the config, or a
        model larger than the free memory, fail on the meta device before anything is allocated."""
        if "lora" in self.extra:  # a LoRA run's last.pt: frozen weights beside adapters
            raise CheckpointError("this checkpoint holds LoRA adapters beside frozen weights, to resume "
                                  "the run; sample its best.pt (the adapters merged into plain weights)")
        with torch.device("meta"):
            sizes = GPT(self.model_config)
        check_fit(sizes, self.model_state, "the checkpoint's weights do not fit its own model config ({}); "
                                           "the file was damaged or edited")
        need = sum(t.numel() * t.element_size() for t in (*sizes.parameters(), *sizes.buffers()))
        free = free_cpu_memory()  # built on the CPU, then moved to the device
        try:
            if free is not None and need > free:  # not even tried: Linux would kill the process, not refuse
                raise MemoryError
            model = GPT(self.model_config)
        except (MemoryError, RuntimeError) as err:
            if not out_of_memory(err):
                raise
            t, heads = self.model_config.block_size, self.model_config.n_layer * self.model_config.n_head
            raise OutOfMemoryError(f"this checkpoint's model needs {need / 2**30:.1f} GiB, more than this "
                                   f"machine can give: its block_size {t:,} means a {t:,} x {t:,} causal "
                                   f"mask in each of its {heads} heads; sample it on a machine with more "
                                   f"memory") from None
        model.load_state_dict(self.model_state)
        return model.to(device).eval()


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    with atomic_write(path) as f:
        try:
            torch.save(obj, f)
        except RuntimeError as err:  # Ctrl-C mid-save: torch's zip writer, closing, hides it in its own error
            if isinstance(err.__context__, KeyboardInterrupt):
                raise err.__context__ from None
            raise
    return Path(path)


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files (``.NAME.<random>.tmp``, which nothing reads) that saves of ``path``
    killed before their rename left. Call it when no other process saves there (a run's start)."""
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: str | os.PathLike, model: nn.Module, tokenizer: CharTokenizer,
                    model_config: GPTConfig, train_config: TrainConfig | None = None, step: int = 0,
                    extra: dict | None = None) -> Path:
    """Write a checkpoint atomically; ``extra`` must hold only tensors, numbers, strings, lists, dicts."""
    vocab = ({"vocab": list(tokenizer.chars)} if isinstance(tokenizer, CharTokenizer)
             else {"tokenizer": tokenizer.to_dict()})
    return atomic_save({"format": FORMAT, "version": VERSION, "model_config": asdict(model_config),
                        "train_config": None if train_config is None else asdict(train_config), **vocab,
                        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "step": int(step), "extra": extra or {}}, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    resumable: bool = False) -> Checkpoint:
    """Read and check a checkpoint without executing any code from it; with ``resumable``, also
    check that it holds a training state to resume (the one check of that, with one message)."""
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
        with open(path, "rb") as f:  # say what it is (torch's words advise running the file's code)
            head = f.read(16)
        reasons = [(not head, "it is empty"),  # then: not torch.save's zip, nor an older torch.save's pickle
                   (not head.startswith((b"PK\x03\x04", b"\x80")), f"it starts with {head!r}, not as a file "
                                                                    f"that torch.save writes"),
                   (isinstance(err, pickle.UnpicklingError), "it holds objects other than tensors, numbers "
                                                             "and strings, which gptlib never loads")]
        why = next((why for bad, why in reasons if bad), "it is cut short or damaged")
        raise CheckpointError(f"{path} is not a readable gptlib checkpoint (truncated or another kind of "
                              f"file): {why}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gptlib checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {payload.get('version')}; this gptlib "
                              f"reads version {VERSION}")
    try:
        ckpt = Checkpoint(GPTConfig(**payload["model_config"]),
                          None if (train := payload["train_config"]) is None else TrainConfig(**train),
                          tokenizer_from_dict(payload["tokenizer"]) if "tokenizer" in payload
                          else CharTokenizer(payload["vocab"]), payload["model"], int(payload["step"]),
                          payload.get("extra") or {})
    except KeyError as err:
        raise CheckpointError(f"{path} is damaged: it has no {err.args[0]!r} entry") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged: {err}") from None
    state, vocab_size = ckpt.model_state, ckpt.tokenizer.vocab_size
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) and not v.is_meta
                                              for v in state.values()):
        raise CheckpointError(f"{path} is damaged: its weights are not a dict of tensors (with data)")
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not_finite:  # sampling from them fails deep in torch, or "works" and prints nothing useful
        raise CheckpointError(f"{path} holds weights that are not finite numbers (NaN or inf, in "
                              f"{len(not_finite)} tensors, e.g. {not_finite[0]}); it is damaged, or from a "
                              f"run that diverged")
    if vocab_size != ckpt.model_config.vocab_size:
        raise CheckpointError(f"{path}: the vocabulary has {vocab_size} characters but the model config "
                              f"says {ckpt.model_config.vocab_size}")
    return _check_resumable(ckpt, path) if resumable else ckpt


def _check_resumable(ckpt: Checkpoint, where: object) -> Checkpoint:
    if not ckpt.resumable:
        raise CheckpointError(f"{where} holds weights only, not a training state, so it cannot be resumed")
    return ckpt


def load_weights(model: nn.Module, state: dict, tokenizer: CharTokenizer | None = None) -> None:
    """Load ``state`` into ``model``, with a clear error when the shapes or vocabulary differ."""
    if tokenizer is not None and tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"the checkpoint's vocabulary has {tokenizer.vocab_size} characters; this "
                              f"model has vocab_size {model.config.vocab_size}")
    check_fit(model, state, "the checkpoint does not fit this model: {}. Build the model from the "
                            "checkpoint's own config")
    model.load_state_dict(state)


def check_fit(model: nn.Module, state: dict, message: str) -> None:
    """A `CheckpointError`, ``message`` with how they differ, if ``state``'s tensors are not ``model``'s."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = ["shapes differ: " + "; ".join(mismatched[:3])] if mismatched else []
    parts += [f"missing {len(missing)} tensors (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})"] if unexpected else []
    if parts:
        raise CheckpointError(message.format("; ".join(parts)))


def save_training_state(path: str | os.PathLike, state: TrainState, tokenizer: CharTokenizer,
                        model_config: GPTConfig, extra: dict | None = None) -> Path:
    """Write a resumable checkpoint of ``state`` (weights, optimizer, step, history, RNG states) between
    steps, e.g. in a `train` callback; ``extra`` adds your own entries (tensors, numbers, strings, lists)."""
    rng = {"torch": torch.get_rng_state(),  # every random state a step draws from; CUDA's once in use
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
           "batch": state.batch_generator.get_state(), "eval": state.eval_generator.get_state(),
           "batch_device": state.batch_generator.device.type}  # where the batches are drawn
    training = {"history": state.history.to_dict(), "best_val_loss": state.history.best_val_loss,
                "optimizer": state.optimizer.state_dict(), "rng": rng}
    if state.scaler is not None:  # fp16: the loss scale it has settled on (reading it waits for the GPU)
        training["scaler"] = state.scaler.state_dict()
    return save_checkpoint(path, state.model, tokenizer, model_config, state.config, state.step,
                           {**(extra or {}), **training})


def resume_training_state(checkpoint: "Checkpoint | str | os.PathLike", model: nn.Module,
                          device: torch.device | str = "cpu", *, fused: bool = False) -> TrainState:
    """Load a `save_training_state` checkpoint into ``model`` and torch's random state (build the model
    before, call `train(..., state=...)` right after); return its `TrainState`. ``fused``: fused AdamW."""
    ckpt = (_check_resumable(checkpoint, "this checkpoint") if isinstance(checkpoint, Checkpoint)
            else load_checkpoint(checkpoint, resumable=True))  # a path: the reader checks it
    rng = ckpt.extra["rng"]
    drawn_on = rng.get("batch_device", "cpu") if isinstance(rng, dict) else "cpu"  # the batches' device
    if drawn_on != "cpu" and torch.device(device).type != drawn_on:
        raise CheckpointError(f"this run drew its batches on {drawn_on} (their random stream lives "
                              f"there); resume it on a {drawn_on} device, not {torch.device(device)}")
    where = torch.device(device if drawn_on != "cpu" else "cpu")
    load_weights(model, ckpt.model_state, ckpt.tokenizer)
    model.to(device)  # before the optimizer loads its state, which it moves to each parameter's device
    optimizer = make_optimizer(model, ckpt.train_config, fused=fused)
    try:
        optimizer.load_state_dict(ckpt.extra["optimizer"])
        history = History.from_dict(ckpt.extra["history"])
        batch_generator = torch.Generator(device=where).set_state(rng["batch"])
        eval_generator = torch.Generator(device=where).set_state(rng["eval"])
        scaler = torch.amp.GradScaler(torch.device(device).type) if "scaler" in ckpt.extra else None
        if scaler is not None:
            scaler.load_state_dict(ckpt.extra["scaler"])
        torch.set_rng_state(rng["torch"])
        for index, cuda_state in enumerate(rng["cuda"][:torch.cuda.device_count()]):  # the GPUs there are
            torch.cuda.set_rng_state(cuda_state, index)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"the checkpoint's training state is damaged: {type(err).__name__}: {err}") \
            from None
    return TrainState(model, optimizer, ckpt.train_config, ckpt.step, history, batch_generator,
                      eval_generator, scaler=scaler)


def tokenizer_from_dict(d: dict):
    """The tokenizer ``tokenizer.to_dict()`` described: BPE, else characters (the reader reports damage)."""
    if d["kind"] != "bpe":
        return CharTokenizer(d["chars"])
    from gptlib.bpe import BPETokenizer  # here: `python -m gptlib.bpe` then runs without runpy's warning
    return BPETokenizer.from_dict(d)
