"""A training run, end to end: `Run` says what to train, on which text and where it goes; `train_run`
owns it from the data to the checkpoints.

The command line (``python -m gptlib train``), chapter 7, ``bench --time-to-loss`` and the ablation
ladder all call `train_run`; what differs between them (the budget, the output folder, callbacks
such as a live plot) is an argument. A run flows like this:

1. `load_corpus`: the text (Tiny Shakespeare, or ``run.data``) -> a tokenizer -> token ids -> the
   90/10 train/val split, with the text's sha256 (a resumed run must see the same text);
2. the model, seeded by ``run.train.seed``, through the speed plan (`gptlib.speed`): `FastGPT` with
   the plan's precision, or the readable `GPT` with `READABLE`;
3. `gptlib.training.train`, with the caller's callbacks and, when ``run.out`` is set, one that
   writes ``best.pt`` (whenever val improves) and a resumable ``last.pt`` (every evaluation);
4. ``resume=True`` continues ``run.out/last.pt`` exactly where it stopped.

    run = Run.from_preset(get_preset("cpu"), out=Path("runs/cpu"))
    result = train_run(run)                      # result.model, result.history, result.best_path
    train_run(run, resume=True)                  # after a crash: continue last.pt
"""

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from gptlib.batches import train_val_split
from gptlib.checkpoint import (Checkpoint, load_checkpoint, remove_stale_temp_files, resume_training_state,
                               save_checkpoint, save_training_state)
from gptlib.config import GPTConfig, TrainConfig
from gptlib.data import load_text
from gptlib.device import pick_device
from gptlib.errors import CheckpointError, ConfigError, DataError, GPTLibError, TrainingDivergedError
from gptlib.presets import Preset
from gptlib.speed import READABLE, SpeedConfig, build_model, speed_plan
from gptlib.tokenizer import CharTokenizer
from gptlib.training import Callback, TrainState, train

BEST, LAST = "best.pt", "last.pt"


@dataclass(frozen=True)
class Corpus:
    """The text of a run, its tokenizer and the token ids split 90/10 into train and val."""

    text: str
    tokenizer: CharTokenizer
    train_data: torch.Tensor  # (N_train,) token ids
    val_data: torch.Tensor  # (N_val,) token ids
    sha256: str  # of the text's UTF-8 bytes: what a resumed run checks
    source: str  # where the text came from, for messages


def load_corpus(path: str | os.PathLike | None = None, tokenizer: CharTokenizer | None = None) -> Corpus:
    """Read the text (``path``, else verified Tiny Shakespeare), tokenize it (with ``tokenizer``, else
    one made from the text) and split it 90/10."""
    text = load_text(path)
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)  # (N,)
    train_data, val_data = train_val_split(data)
    return Corpus(text, tokenizer, train_data, val_data, hashlib.sha256(text.encode("utf-8")).hexdigest(),
                  str(path) if path is not None else "Tiny Shakespeare")


@dataclass(frozen=True)
class Run:
    """One training run: what to train (``model``, ``train``, ``speed``), on which text (``data``),
    on which device, and where its checkpoints go (``out``; None keeps nothing on disk)."""

    model: GPTConfig
    train: TrainConfig
    speed: SpeedConfig | None = None  # None: `speed_plan` for the device; `READABLE`: the plain GPT
    data: Path | None = None  # a UTF-8 text file; None: Tiny Shakespeare
    out: Path | None = None
    device: str = "auto"
    name: str = "custom"  # the preset's name, for the log

    @classmethod
    def from_preset(cls, preset: Preset, **fields) -> "Run":
        """The run of ``preset``'s recipe; ``fields`` set the rest (out, data, device, speed...)."""
        return cls(model=preset.model, train=preset.train, name=preset.name, **fields)


@dataclass
class RunResult:
    """What `train_run` hands back: the trained model (the last step's weights), the state of the
    loop (history included), the corpus, the plan it trained with, and the checkpoint paths."""

    run: Run
    model: nn.Module
    state: TrainState
    corpus: Corpus
    plan: SpeedConfig
    device: torch.device
    best_path: Path | None = None
    last_path: Path | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def history(self):
        """The loss history, one row per evaluation."""
        return self.state.history

    @property
    def tokenizer(self) -> CharTokenizer:
        """The run's tokenizer."""
        return self.corpus.tokenizer


def describe_plan(plan: SpeedConfig) -> str:
    """One line saying how the run trains, e.g. "fast path (FastGPT), fp32, fused AdamW"."""
    parts = [f"fast path (FastGPT, {plan.attention} attention)" if plan.fast_model else "readable GPT",
             plan.autocast_dtype or "fp32"]
    parts += [name for name, on in (("TF32", plan.tf32), ("fused AdamW", plan.fused_adamw),
                                    ("torch.compile", plan.compile)) if on]
    return ", ".join(parts)


def train_run(run: Run, *, resume: bool = False, overwrite: bool = False, callbacks: Iterable[Callback] = (),
              progress: bool = True, make_model: Callable[[GPTConfig], nn.Module] | None = None,
              corpus: Corpus | None = None, log: Callable[[str], None] = print) -> RunResult:
    """Train ``run`` from its data to its checkpoints and return the `RunResult`.

    ``resume`` continues ``run.out/last.pt`` (its configs and plan must be the run's, its text the
    same); otherwise a folder that already holds a run is refused unless ``overwrite``.
    ``make_model`` builds another model from the config (the ladder's rungs), instead of the speed
    plan's; ``corpus`` reuses one already loaded; ``log`` gets the run's one-line messages.
    """
    device = pick_device(run.device)
    out = None if run.out is None else Path(run.out)
    checkpoint = _checkpoint_to_resume(out) if resume else None
    if out is not None and not resume and not overwrite:
        _refuse_existing_run(out)
    if checkpoint is not None:
        _check_same_run(run, checkpoint, out / LAST)
        plan = speed_from_checkpoint(checkpoint)
    else:
        plan = run.speed or speed_plan(device, run.model)
    if corpus is None:
        corpus = load_corpus(run.data, checkpoint.tokenizer if checkpoint else None)
    if checkpoint is not None and checkpoint.extra.get("data_sha256", corpus.sha256) != corpus.sha256:
        raise DataError(f"{out / LAST} was trained on different text than {corpus.source}; resume with "
                        f"the same --data as the run that wrote it")
    model_config = replace(run.model, vocab_size=corpus.tokenizer.vocab_size)

    torch.manual_seed(run.train.seed)  # the initial weights (and, from here on, dropout)
    model = make_model(model_config) if make_model is not None else build_model(model_config, plan)
    state = None
    if checkpoint is not None:  # after building: this sets torch's random state to the saved one
        state = resume_training_state(checkpoint, model, device, fused=plan.fused_adamw)
    result = RunResult(run, model, state, corpus, plan, device)
    saver = []
    if out is not None:
        for name in (LAST, BEST):
            for stale in remove_stale_temp_files(out / name):
                log(f"removed {stale}, left by a save that was interrupted")
        result.best_path, result.last_path = out / BEST, out / LAST
        saver = [_Saver(result, model_config)]
    what = (f"resuming {out / LAST} at step {checkpoint.step} of {run.train.max_iters}" if checkpoint
            else f"preset {run.name}")
    log(f"{what} on {device}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{len(corpus.train_data):,} train / {len(corpus.val_data):,} val tokens, "
        f"vocab {corpus.tokenizer.vocab_size}")
    log(f"speed plan: {describe_plan(plan) if make_model is None else type(model).__name__}")
    if make_model is None and plan.why:
        log(f"  why: {plan.why}")
    try:
        result.state = train(model, corpus.train_data, corpus.val_data, run.train,
                             block_size=model_config.block_size, device=device,
                             callbacks=[*saver, *callbacks], state=state, progress=progress, speed=plan)
    except TrainingDivergedError as err:
        if out is None:
            raise
        step = saver[0].saved_step
        kept = ("no checkpoint had been saved yet" if step is None else
                f"the last good checkpoint, {out / LAST} (step {step}), is kept")
        raise TrainingDivergedError(f"{err}; {kept}") from None
    return result


class _Saver:
    """The callback that writes ``best.pt`` when val improves and a resumable ``last.pt`` every evaluation."""

    def __init__(self, result: RunResult, model_config: GPTConfig):
        self.result, self.model_config = result, model_config
        self.saved_step = None if result.state is None else result.state.step  # last good last.pt

    def __call__(self, state: TrainState) -> None:
        r = self.result
        run_info = {"data_sha256": r.corpus.sha256, "speed": asdict(r.plan)}
        # best.pt first: a kill between the two saves leaves last.pt one evaluation behind, and
        # resuming from it redoes that evaluation and writes the same best.pt again.
        if state.improved:
            save_checkpoint(r.best_path, state.model, r.tokenizer, self.model_config, state.config,
                            state.step, {"history": state.history.to_dict(), **run_info})
        save_training_state(r.last_path, state, r.tokenizer, self.model_config, run_info)
        self.saved_step = state.step


def speed_from_checkpoint(checkpoint: Checkpoint) -> SpeedConfig:
    """The plan a checkpoint was trained with (checkpoints from before plans were saved: `READABLE`)."""
    saved = checkpoint.extra.get("speed")
    try:
        return READABLE if saved is None else SpeedConfig(**saved)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"the checkpoint's speed plan is damaged: {err}") from None


def _checkpoint_to_resume(out: Path | None) -> Checkpoint:
    if out is None:
        raise ConfigError("resuming needs the run's output folder (Run.out, --out)")
    path = out / LAST
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {path}; run `train` without --resume "
                                f"to start a run there, or point --out at the folder of the run to continue")
    checkpoint = load_checkpoint(path)
    if not checkpoint.resumable:
        raise CheckpointError(f"{path} holds weights only, not a training state, so it cannot be resumed; "
                              f"start a new run with another --out")
    return checkpoint


def _refuse_existing_run(out: Path) -> None:
    existing = [name for name in (LAST, BEST) if (out / name).exists()]
    if existing:  # never replace someone's training run by accident
        raise GPTLibError(f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
                          f"--overwrite to replace it, or choose another --out")


def _check_same_run(run: Run, checkpoint: Checkpoint, path: Path) -> None:
    """A resumed run continues with the saved configs and plan; any difference is a `ConfigError`."""
    saved = {**asdict(checkpoint.model_config), **asdict(checkpoint.train_config)}
    asked = {**asdict(replace(run.model, vocab_size=checkpoint.model_config.vocab_size)), **asdict(run.train)}
    conflicts = [f"{name} (saved {saved[name]!r}, asked {value!r})" for name, value in asked.items()
                 if saved[name] != value]
    saved_plan = speed_from_checkpoint(checkpoint)
    if run.speed is not None and run.speed.fast_model != saved_plan.fast_model:
        conflicts.append(f"the model (saved {'FastGPT' if saved_plan.fast_model else 'readable GPT'}, "
                         f"asked {'FastGPT' if run.speed.fast_model else 'readable GPT (--readable)'})")
    if conflicts:
        raise ConfigError(f"--resume continues with the configs saved in {path}, but the run asks for "
                          f"others: {'; '.join(conflicts)}. Drop those options, or start a new run with "
                          f"another --out")
