"""A training run: `Run` says what to train, on which text and where it goes; `train_run` owns it from the
data to the checkpoints, for the CLI, chapter 7, the bench and the ladder (under torchrun, rank 0 writes)."""

import errno
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from gptlib import distributed, finetune
from gptlib.checkpoint import (Checkpoint, load_checkpoint, remove_stale_temp_files, resume_training_state,
                               save_checkpoint, save_training_state)
from gptlib.config import GPTConfig, TrainConfig
from gptlib.data import load_text
from gptlib.device import out_of_memory
from gptlib.errors import (CheckpointError, ConfigError, DataError, GPTLibError, OutOfMemoryError,
                           OutputPathError, TrainingDivergedError, TrainingInterrupted)
from gptlib.files import make_folder, remove_empty_folders
from gptlib.lora import LoRAConfig, lora_config, merge_lora
from gptlib.pace import PaceWatch, expected_step_seconds
from gptlib.presets import Preset
from gptlib.speed import PRECISIONS, READABLE, SpeedConfig, build_model, speed_plan, with_precision
from gptlib.tokenizer import CharTokenizer
from gptlib.training import Callback, TrainState, train

try:
    import fcntl  # the folder lock; Windows has none, and runs there are not locked
except ImportError:
    fcntl = None

BEST, LAST = "best.pt", "last.pt"
LOCK = ".lock"  # held while a run writes to its folder (`_own_folder`)


@dataclass(frozen=True)
class Corpus:
    """The text of a run, its tokenizer and the token ids split 90/10 into train and val."""

    text: str
    tokenizer: CharTokenizer
    train_data: torch.Tensor  # (N_train,) token ids
    val_data: torch.Tensor  # (N_val,) token ids
    sha256: str  # of the text's UTF-8 bytes: what a resumed run checks
    source: str  # where the text came from, for messages


def load_corpus(path: str | os.PathLike | None = None, tokenizer=None, *, kind: str = "char",
                vocab_size: int | None = None) -> Corpus:
    """Read the text (``path``, else Tiny Shakespeare), split it 90/10 by characters (chapter 8 compares
    tokenizers per character), tokenize it with ``tokenizer``, else a new ``kind`` (BPE: fit on train)."""
    text = load_text(path)
    n = int(0.9 * len(text))  # the first 90% of the characters to train on
    if tokenizer is None and kind == "bpe":
        from gptlib.bpe import BPETokenizer
        tokenizer = BPETokenizer.train(text[:n], vocab_size or 512)  # 512: the default BPE vocabulary
    elif tokenizer is None:
        tokenizer = CharTokenizer.from_text(text)
    train_data = torch.tensor(tokenizer.encode(text[:n]), dtype=torch.long)  # (N_train,)
    val_data = torch.tensor(tokenizer.encode(text[n:]), dtype=torch.long)  # (N_val,)
    return Corpus(text, tokenizer, train_data, val_data, hashlib.sha256(text.encode("utf-8")).hexdigest(),
                  str(path) if path is not None else "Tiny Shakespeare")


@dataclass(frozen=True)
class Run:
    """One training run: what to train, on which text and device, and its folder (``out``; None: not kept)."""

    model: GPTConfig
    train: TrainConfig
    speed: SpeedConfig | None = None  # None: `speed_plan` for the device; `READABLE`: the plain GPT
    dtype: str | None = None  # "float32", "bfloat16" or "float16" instead of the plan's precision
    compile: bool | None = None  # torch.compile on or off instead of the plan's choice
    data: Path | None = None  # a UTF-8 text file; None: Tiny Shakespeare
    tokenizer: str | None = None  # "char" or "bpe"; None: "char" (a resumed run: the saved one)
    vocab_size: int | None = None  # BPE only: tokens in the vocabulary (default 512)
    out: Path | None = None
    device: str = "auto"
    name: str = "custom"  # the preset's name, for the log
    grad_accum: int = 1  # micro-batches per step (per process under torchrun): same result, less memory
    init_from: Path | None = None  # fine-tuning (ch. 9): start from this checkpoint's weights and vocabulary
    lora: LoRAConfig | None = None  # with init_from: train LoRA adapters only (`gptlib.lora`)

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in PRECISIONS:
            raise ConfigError(f"unknown dtype {self.dtype!r}; `dtype` is one of: {', '.join(PRECISIONS)}")
        if self.tokenizer is not None and self.tokenizer not in ("char", "bpe"):
            raise ConfigError(f"unknown tokenizer {self.tokenizer!r}; `tokenizer` is one of: char, bpe")
        if self.vocab_size is not None and self.tokenizer != "bpe":
            raise ConfigError("`vocab_size` sets the size of a BPE vocabulary; give it with `tokenizer` bpe")
        if self.out is not None and not str(self.out).strip():
            raise ConfigError("the output folder (`out`) is empty; name a folder, or None to keep nothing")
        if self.lora is not None and self.init_from is None:
            raise ConfigError("LoRA adapters fine-tune a trained model: give the checkpoint (`init_from`)")
        if self.init_from is not None and self.tokenizer is not None:
            raise ConfigError("a fine-tuning run keeps its checkpoint's tokenizer; drop `tokenizer`")

    @classmethod
    def from_preset(cls, preset: Preset, **fields) -> "Run":
        """The run of ``preset``'s recipe; ``fields`` set the rest (out, data, device, speed...)."""
        return cls(model=preset.model, train=preset.train, name=preset.name, **fields)

    def plan(self, device: torch.device | str) -> SpeedConfig:
        """The plan this run trains with on ``device``: ``speed`` (else the device's), dtype and compile."""
        plan = self.speed or speed_plan(device, self.model)
        plan = plan if self.dtype is None else with_precision(plan, self.dtype)
        return plan if self.compile is None else replace(plan, compile=self.compile)


@dataclass
class RunResult:
    """What `train_run` hands back: the model (last step's weights), state, corpus, plan and checkpoints."""

    run: Run
    model: torch.nn.Module
    state: TrainState
    corpus: Corpus
    plan: SpeedConfig
    device: torch.device
    best_path: Path | None = None
    last_path: Path | None = None
    dist: distributed.Distributed = distributed.SINGLE  # this process's place in a torchrun job
    model_config: GPTConfig | None = None  # run.model with the corpus's vocabulary size
    saved_step: int | None = None  # the step of the last last.pt this run saved
    saving: int | None = None  # the step of a save under way

    history = property(lambda self: self.state.history, doc="The loss history, one row per evaluation.")
    tokenizer = property(lambda self: self.corpus.tokenizer, doc="The run's tokenizer.")

    def _save(self, state: TrainState) -> None:
        """The callback that writes ``best.pt`` when val improves, and a resumable ``last.pt`` always."""
        run_info, self.saving = {"data_sha256": self.corpus.sha256, "speed": asdict(self.plan)}, state.step
        # best.pt first: a kill between the two saves leaves last.pt one evaluation behind, and
        # resuming from it redoes that evaluation and writes the same best.pt again.
        try:
            if state.improved:
                save_checkpoint(self.best_path, merge_lora(state.model), self.tokenizer, self.model_config,
                                state.config, state.step, {"history": state.history.to_dict(), **run_info})
            save_training_state(self.last_path, state, self.tokenizer, self.model_config,
                                {**run_info, **finetune.lora_info(state.model)})  # a LoRA run's adapters
        except OSError as err:  # a full disk, a folder removed or made read-only mid-run
            hint = "Free some space or choose" if err.errno == errno.ENOSPC else "Choose"
            folder, reason = self.last_path.parent, err.strerror or err
            raise OutputPathError(f"could not save a checkpoint in {folder} at step {state.step} ({reason}); "
                                  f"{_kept(folder, self.saved_step)}. {hint} another `out`",
                                  path=self.last_path, step=state.step) from None
        self.saved_step, self.saving = state.step, None


def describe_plan(plan: SpeedConfig) -> str:
    """One line saying how the run trains, e.g. "fast path (FastGPT, sdpa attention), float32"."""
    precision = ("float32" if plan.autocast_dtype is None else f"{plan.autocast_dtype} autocast"
                 + (" + GradScaler" if plan.grad_scaler else ""))
    model = f"fast path (FastGPT, {plan.attention} attention)" if plan.fast_model else "readable GPT"
    levers = (("TF32", plan.tf32), ("fused AdamW", plan.fused_adamw), ("torch.compile", plan.compile))
    return ", ".join([model, precision, *(name for name, on in levers if on)])


@dataclass
class RunOptions:
    """`train_run`'s keyword arguments."""

    resume: bool = False  # continue run.out/last.pt (with the saved configs and plan, on the same text)
    overwrite: bool = False  # replace a run already in run.out (else it is refused)
    callbacks: Iterable[Callback] = ()  # called with the `TrainState` after every evaluation
    progress: bool = True  # a tqdm progress bar
    make_model: Callable[[GPTConfig], torch.nn.Module] | None = None  # another model (the ladder's rungs)
    corpus: "Corpus | None" = None  # a corpus already loaded
    log: Callable[[str], None] = print  # gets the run's one-line messages


def train_run(run: Run, **options) -> RunResult:
    """Train ``run`` (``options``: `RunOptions`' fields); ``run.out`` is created and locked before the data
    loads. Ctrl-C raises `TrainingInterrupted`, running out of memory `OutOfMemoryError`."""
    opts = RunOptions(**options)
    if opts.resume and opts.overwrite:
        raise ConfigError("`resume` continues the run in `out` and `overwrite` replaces it; pass one of them")
    if opts.resume and run.out is None:
        raise ConfigError("resuming needs the run's output folder (`out`)")
    dist = distributed.from_env(run.device)  # one process: rank 0 of 1, on pick_device(run.device)
    distributed.split_batch(run.train.batch_size, dist.world_size, run.grad_accum)  # the one check
    if not dist.is_main:
        opts.log = lambda message: None  # under torchrun, rank 0 alone reports
    out = None if run.out is None else Path(run.out).expanduser()
    if opts.resume:
        resume_path(out)
    with nullcontext() if out is None or not dist.is_main else _own_folder(out):  # torchrun: rank 0 owns it
        return _train_run(run, opts, out, dist)


def resume_path(out: Path) -> Path:
    """``out/last.pt``, what a resumed run continues (``out`` naming a file is an `OutputPathError`)."""
    if out.is_file():
        raise OutputPathError(f"`out` {out} is a file; `resume` takes the run's folder: `out` {out.parent}",
                              path=out)
    return out / LAST


def _train_run(run: Run, opts: RunOptions, out: Path | None, dist: distributed.Distributed) -> RunResult:
    """`train_run`'s work, once its folder is owned; turns Ctrl-C, divergence and OOM into one message."""
    from tqdm.auto import tqdm
    checkpoint = load_checkpoint(out / LAST, resumable=True) if opts.resume else None
    new = out is not None and not opts.resume and not opts.overwrite
    existing = [name for name in (LAST, BEST) if new and (out / name).exists()]
    if existing:  # never replace someone's training run by accident
        raise GPTLibError(f"{out} already holds a run ({', '.join(existing)}); pass `resume` to continue it, "
                          f"`overwrite` to replace it, or choose another `out`", path=out)
    if checkpoint is not None:
        _check_same_run(run, checkpoint, out / LAST)
    result, saved = None, None if checkpoint is None else checkpoint.step  # the step of the last last.pt
    try:  # from here on, Ctrl-C (or SIGTERM, SIGHUP) says what there is to resume, even mid-load
        result = _prepare(run, opts, out, dist, checkpoint)
        result.saved_step = saved
        saver = [result._save] if out is not None and dist.is_main else []  # one writer
        expected = (expected_step_seconds(result.model_config, run.train, result.plan)  # a busy CPU
                    if dist.device.type == "cpu" and opts.make_model is None and not dist.active else None)
        above_bar = tqdm.write if opts.log is print else opts.log  # a print goes above the bar, not into it
        pace = None if expected is None else PaceWatch(expected, above_bar)
        result.state = train(result.model, result.corpus.train_data, result.corpus.val_data, run.train,
                             block_size=result.model_config.block_size, device=dist.device,
                             callbacks=[*saver, *opts.callbacks], state=result.state, progress=opts.progress,
                             speed=result.plan, dist=dist, grad_accum=run.grad_accum, after_step=pace)
    except (TrainingDivergedError, KeyboardInterrupt) as err:
        if out is None:
            raise
        raise (_interrupted(run, opts, out, _saved(result, saved)) if isinstance(err, KeyboardInterrupt) else
               TrainingDivergedError(f"{err}; {_kept(out, _saved(result, saved))}", step=err.step)) from None
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        raise OutOfMemoryError(memory_message(err, dist.device, run.model, run.train.batch_size) +
                               ("" if out is None else f"; {_kept(out, _saved(result, saved))}")) from None
    return result


def _prepare(run: Run, opts: RunOptions, out: Path | None, dist: distributed.Distributed,
             checkpoint: Checkpoint | None) -> RunResult:
    """The corpus (checked against the run and the checkpoint), the model and its state, logged."""
    base, lora = finetune.start(run.init_from, run.model, run.lora, checkpoint)  # fine-tuning (ch. 9)
    start = checkpoint or base  # resumed or fine-tuned: its vocabulary encodes the text
    corpus = opts.corpus or load_corpus(run.data, start.tokenizer if start else None,
                                        kind=run.tokenizer or "char", vocab_size=run.vocab_size)
    if checkpoint is not None and checkpoint.extra.get("data_sha256", corpus.sha256) != corpus.sha256:
        raise DataError(f"{out / LAST} was trained on different text than {corpus.source}; resume "
                        f"with the same `data` as the run that wrote it")
    for name, data in (("train", corpus.train_data), ("val", corpus.val_data)):
        _check_split(name, data, run.train.batch_size, run.model.block_size)
    model_config = replace(run.model, vocab_size=corpus.tokenizer.vocab_size)
    # a resumed run keeps its saved plan, precision included; a new one measures (on a CPU)
    plan = speed_from_checkpoint(checkpoint) if checkpoint is not None else run.plan(dist.device)
    torch.manual_seed(run.train.seed)  # the initial weights (and, from here on, dropout)
    model = build_model(model_config, plan) if opts.make_model is None else opts.make_model(model_config)
    model = finetune.prepare(model, base, lora)  # the checkpoint's weights, then the adapters
    # after building: resuming sets torch's random state to the saved one
    state = checkpoint and resume_training_state(checkpoint, model, dist.device, fused=plan.fused_adamw)
    distributed.seed_other_ranks(dist, run.train.seed, 0 if state is None else state.step)  # dropout
    result = RunResult(run, model, state, corpus, plan, dist.device, dist=dist, model_config=model_config)
    if out is not None:
        result.best_path, result.last_path = out / BEST, out / LAST
        for stale in ([] if not dist.is_main else remove_stale_temp_files(out / LAST) +
                      remove_stale_temp_files(out / BEST)):
            opts.log(f"removed {stale}, left by a save that was interrupted")
    _log_start(result, opts, checkpoint)
    return result


def _log_start(result: "RunResult", opts: RunOptions, checkpoint: Checkpoint | None) -> None:
    run, corpus, log = result.run, result.corpus, opts.log
    what = (f"resuming {result.last_path} at step {checkpoint.step} of {run.train.max_iters}" if checkpoint
            else f"preset {run.name}")
    log(f"{what} on {result.device}: {sum(p.numel() for p in result.model.parameters()) / 1e6:.2f}M "
        f"parameters, {len(corpus.train_data):,} train / {len(corpus.val_data):,} val tokens, "
        f"vocab {corpus.tokenizer.vocab_size}")
    plan = describe_plan(result.plan) if opts.make_model is None else type(result.model).__name__
    log(f"speed plan: {plan}")
    if run.init_from is not None or lora_config(result.model) is not None:  # fine-tuning, or resuming one
        log(finetune.describe(result.model, run.init_from))
    if opts.make_model is None and result.plan.why:
        log(f"  why: {result.plan.why}")
    dist, rows, accum = result.dist, run.train.batch_size // result.dist.world_size, run.grad_accum
    micro = f" in {accum} micro-batches of {rows // accum}" if accum > 1 else ""
    if dist.active:
        log(f"world size {dist.world_size} ({dist.backend}): each process trains {rows} of the "
            f"{run.train.batch_size} rows of every batch{micro}")
    elif accum > 1:
        log(f"gradient accumulation: each batch of {run.train.batch_size} rows{micro}")


def _check_split(name: str, data: torch.Tensor, batch_size: int, block_size: int) -> None:
    """The one check of block_size and batch_size against a split, before the first step."""
    if block_size >= len(data):
        raise DataError(f"the {name} split has {len(data):,} tokens, too few for block_size {block_size}: "
                        f"use a smaller block_size or more text", tokens=len(data))
    if batch_size > len(data) - block_size:
        raise DataError(f"batch_size ({batch_size}) is larger than the {len(data) - block_size:,} distinct "
                        f"chunks of {block_size} tokens in the {name} split; use a smaller batch_size",
                        tokens=len(data))


def _saved(result: "RunResult | None", step: int | None) -> int | None:
    """The step of the last complete last.pt: ``step`` (the resumed one's) until the run saves; the one
    being saved if Ctrl-C came after its rename (the file says which)."""
    if result is None:
        return step
    if result.saving is not None:
        with suppress(CheckpointError, OSError):
            if load_checkpoint(result.last_path).step == result.saving:
                return result.saving
    return result.saved_step


def _kept(out: Path, step: int | None) -> str:
    return ("no resumable checkpoint had been saved yet" if step is None else
            f"the last good checkpoint, {out / LAST} (step {step}), is kept")


def _interrupted(run: Run, opts: RunOptions, out: Path, step: int | None) -> TrainingInterrupted:
    if step is None:
        return TrainingInterrupted(f"{_kept(out, step)} (the first comes at step {run.train.eval_interval})")
    how = "train_run(run, resume=True" + (", make_model=...)" if opts.make_model is not None else ")")
    return TrainingInterrupted(f"the last checkpoint is {out / LAST} (step {step} of {run.train.max_iters}); "
                               f"resume it with: {how}", path=out / LAST, step=step,
                               max_iters=run.train.max_iters)


def memory_message(err: BaseException, device: torch.device, model: GPTConfig, batch_size: int) -> str:
    """One line for running out of memory: how much was asked for at once and which sizes to make smaller."""
    cpu = re.search(r"allocate (\d+) bytes", str(err))  # the CPU allocator's wording
    gpu = re.search(r"allocate ([\d.]+ [KMGT]iB)", str(err))  # CUDA's and MPS's
    asked = f"{int(cpu.group(1)) / 2**30:.1f} GiB" if cpu else gpu.group(1) if gpu else None
    return (f"out of memory on {device}" + (f" (asked for {asked} at once)" if asked else "") +
            f": make batch_size (now {batch_size}) or block_size (now {model.block_size}) smaller, "
            f"or the model (n_embd {model.n_embd}, n_layer {model.n_layer})")


@contextmanager
def _own_folder(out: Path) -> Iterator[None]:
    """Create ``out`` (folders left empty are removed at the end) and hold an ``flock`` on ``out/.lock`` while
    the block runs: a second run is refused at once, and the kernel lets it go however the process ends."""
    created = make_folder(out, "the output folder", "choose another `out`")
    fd = None if fcntl is None else os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = (out / LOCK).read_text().strip()
            holder = f"process {pid}" if pid.isdigit() else "another process"
            raise OutputPathError(f"{out} is in use by another run ({holder}); wait for it to finish, or "
                                  f"choose another `out`", path=out) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for the message a refused run prints
    try:
        yield
    finally:
        if fd is not None:
            with suppress(OSError):  # a folder made read-only mid-run: its error is the one to see
                (out / LOCK).unlink(missing_ok=True)
            os.close(fd)
        remove_empty_folders(created)


def speed_from_checkpoint(checkpoint: Checkpoint) -> SpeedConfig:
    """The plan a checkpoint was trained with (checkpoints from before plans were saved: `READABLE`)."""
    saved = checkpoint.extra.get("speed")
    return READABLE if saved is None else SpeedConfig(**saved)


def _check_same_run(run: Run, checkpoint: Checkpoint, path: Path) -> None:
    """A resumed run continues with the saved configs and plan; any difference is a `ConfigError`."""
    saved = {**asdict(checkpoint.model_config), **asdict(checkpoint.train_config)}
    ask = {**asdict(replace(run.model, vocab_size=checkpoint.model_config.vocab_size)), **asdict(run.train)}
    plan, tokenizer = speed_from_checkpoint(checkpoint), checkpoint.tokenizer
    model, on = ("readable GPT", "FastGPT"), ("off", "on")
    choices = [(name, value, saved[name]) for name, value in ask.items()]  # numbers: str == repr
    choices += [("the model", run.speed and model[run.speed.fast_model], model[plan.fast_model]),
                ("the precision", run.dtype, plan.precision),
                ("torch.compile", None if run.compile is None else on[run.compile], on[plan.compile]),
                ("tokenizer", run.tokenizer, tokenizer.to_dict()["kind"]),
                ("vocab_size", run.vocab_size, tokenizer.vocab_size)]
    conflicts = [f"{what} (saved {had}, asked {asked})" for what, asked, had in choices
                 if asked is not None and asked != had]
    if conflicts:
        raise ConfigError(f"`resume` continues with the configs saved in {path}, but the run asks for "
                          f"others: {'; '.join(conflicts)}. Drop those options, or start a new run with "
                          f"another `out`", path=path)
