"""A training run, end to end: `Run` says what to train, on which text and where it goes; `train_run`
owns it from the data to the checkpoints.

The command line (``python -m gptlib train``), chapter 7, ``bench --time-to-loss`` and the ablation
ladder all call `train_run`; what differs between them (the budget, the output folder, callbacks
such as a live plot) is an argument. A run flows like this:

0. ``run.out`` (when set) is created, checked to be writable and locked (`_own_folder`) before
   anything else, so a bad folder, or one another run is writing to, fails in a second;
1. `load_corpus`: the text (Tiny Shakespeare, or ``run.data``) -> a tokenizer -> token ids -> the
   90/10 train/val split, with the text's sha256 (a resumed run must see the same text);
2. the model, seeded by ``run.train.seed``, through the speed plan (`gptlib.speed`): `FastGPT` with
   the plan's precision, or the readable `GPT` with `READABLE`;
3. `gptlib.training.train`, with the caller's callbacks and, when ``run.out`` is set, one that
   writes ``best.pt`` (whenever val improves) and a resumable ``last.pt`` (every evaluation);
4. ``resume=True`` continues ``run.out/last.pt`` exactly where it stopped; Ctrl-C says how
   (`TrainingInterrupted`, with the command line that does it).

Started by ``torchrun`` (`gptlib.distributed`), every process runs this function: each trains its
share of every batch on its own device, and only rank 0 logs, saves and calls the callbacks.

    run = Run.from_preset(get_preset("cpu"), out=Path("runs/cpu"))
    result = train_run(run)                      # result.model, result.history, result.best_path
    train_run(run, resume=True)                  # after a crash: continue last.pt
"""

import errno
import hashlib
import os
import re
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from gptlib import distributed, finetune
from gptlib.checkpoint import (Checkpoint, load_checkpoint, remove_stale_temp_files, resume_training_state,
                               save_checkpoint, save_training_state)
from gptlib.config import GPTConfig, TrainConfig
from gptlib.data import load_text
from gptlib.device import out_of_memory
from gptlib.errors import (CheckpointError, ConfigError, DataError, GPTLibError, OutOfMemoryError,
                           OutputPathError, TrainingDivergedError, TrainingInterrupted)
from gptlib.files import make_folder, remove_empty_folders
from gptlib.lora import LoRAConfig, merge_lora
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


TOKENIZERS = ("char", "bpe")


def load_corpus(path: str | os.PathLike | None = None, tokenizer=None, *, kind: str = "char",
                vocab_size: int | None = None) -> Corpus:
    """Read the text (``path``, else verified Tiny Shakespeare), split it 90/10 by characters, and
    tokenize both parts with ``tokenizer``, else a new one of ``kind``: "char" (every character of
    the text) or "bpe" (byte-level BPE with ``vocab_size`` tokens, trained on the train part only).

    The split is made on the text, so the validation text is the same characters whatever the
    tokenizer: losses of different tokenizers can be compared per character (chapter 8).
    """
    text = load_text(path)
    n = int(0.9 * len(text))  # the first 90% of the characters to train on
    if tokenizer is None:
        if kind == "bpe":
            from gptlib.bpe import BPETokenizer

            tokenizer = BPETokenizer.train(text[:n], vocab_size or DEFAULT_BPE_VOCAB)
        else:
            tokenizer = CharTokenizer.from_text(text)
    train_data = torch.tensor(tokenizer.encode(text[:n]), dtype=torch.long)  # (N_train,)
    val_data = torch.tensor(tokenizer.encode(text[n:]), dtype=torch.long)  # (N_val,)
    return Corpus(text, tokenizer, train_data, val_data, hashlib.sha256(text.encode("utf-8")).hexdigest(),
                  str(path) if path is not None else "Tiny Shakespeare")


DEFAULT_BPE_VOCAB = 512


@dataclass(frozen=True)
class Run:
    """One training run: what to train (``model``, ``train``, ``speed``), on which text (``data``),
    on which device, and where its checkpoints go (``out``; None keeps nothing on disk)."""

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
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of: {', '.join(PRECISIONS)}")
        if self.tokenizer is not None and self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"unknown tokenizer {self.tokenizer!r}; choose one of: {', '.join(TOKENIZERS)}")
        if self.vocab_size is not None and self.tokenizer != "bpe":
            raise ConfigError("--vocab-size sets the size of a BPE vocabulary; give it with --tokenizer bpe "
                              "(a character tokenizer has one token per character of the text)")
        if self.lora is not None and self.init_from is None:  # ft9: fine-tuning's two fields
            raise ConfigError("LoRA adapters fine-tune a trained model: give the checkpoint (--init-from)")
        if self.init_from is not None and self.tokenizer is not None:
            raise ConfigError("a fine-tuning run keeps its checkpoint's tokenizer; drop --tokenizer")

    @classmethod
    def from_preset(cls, preset: Preset, **fields) -> "Run":
        """The run of ``preset``'s recipe; ``fields`` set the rest (out, data, device, speed...)."""
        return cls(model=preset.model, train=preset.train, name=preset.name, **fields)

    def plan(self, device: torch.device | str) -> SpeedConfig:
        """The speed plan this run trains with on ``device``: ``speed`` (else the device's plan)
        with the run's ``dtype`` and ``compile``, where set."""
        plan = self.speed or speed_plan(device, self.model)
        if self.dtype is not None:
            plan = with_precision(plan, self.dtype)
        return plan if self.compile is None else replace(plan, compile=self.compile)


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
    dist: distributed.Distributed = distributed.SINGLE  # this process's place in a torchrun job

    @property
    def history(self):
        """The loss history, one row per evaluation."""
        return self.state.history

    @property
    def tokenizer(self) -> CharTokenizer:
        """The run's tokenizer."""
        return self.corpus.tokenizer


def describe_plan(plan: SpeedConfig) -> str:
    """One line saying how the run trains, e.g. "fast path (FastGPT, sdpa attention), float32, fused
    AdamW" or "fast path (FastGPT, sdpa attention), float16 autocast + GradScaler, fused AdamW"."""
    precision = ("float32" if plan.autocast_dtype is None else f"{plan.autocast_dtype} autocast"
                 + (" + GradScaler" if plan.grad_scaler else ""))
    parts = [f"fast path (FastGPT, {plan.attention} attention)" if plan.fast_model else "readable GPT",
             precision]
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

    Before the data loads, ``run.out`` is created if needed, checked to be writable and locked for
    the life of the run (`_own_folder`): a bad folder, or one that another run is writing to, fails
    in a second, not at the first save. Ctrl-C raises `TrainingInterrupted`, whose message says
    where the last checkpoint is and the command that resumes it; running out of memory is an
    `OutOfMemoryError` that says which sizes to make smaller.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it; pass one of them")
    if isinstance(run.out, str) and not run.out.strip():
        raise ConfigError("the output folder (--out) is empty; name a folder, or use None to keep nothing on disk")
    dist = distributed.from_env(run.device)  # one process: rank 0 of 1, on pick_device(run.device)
    distributed.split_batch(run.train.batch_size, dist.world_size, run.grad_accum)
    if not dist.is_main:
        log = _quiet  # under torchrun, rank 0 alone reports
    out = None if run.out is None else Path(run.out).expanduser()
    if resume:
        _check_resumable_path(out)  # before anything is created or locked
    args = (run, out, dist, resume, overwrite, callbacks, progress, make_model, corpus, log)
    if out is None or not dist.is_main:  # under torchrun, rank 0 owns the folder and writes it
        return _train_run(*args)
    with _own_folder(out, log):
        return _train_run(*args)


def _train_run(run: Run, out: Path | None, dist: distributed.Distributed, resume: bool, overwrite: bool,
               callbacks: Iterable[Callback], progress: bool, make_model, corpus: Corpus | None,
               log: Callable[[str], None]) -> RunResult:
    """`train_run`'s work, once its folder is owned."""
    device = dist.device
    checkpoint = load_checkpoint(out / LAST) if resume else None
    if checkpoint is not None and not checkpoint.resumable:
        raise CheckpointError(f"{out / LAST} holds weights only, not a training state, so it cannot be "
                              f"resumed; start a new run with another --out")
    if out is not None and not resume and not overwrite:
        _refuse_existing_run(out)
    if checkpoint is not None:
        _check_same_run(run, checkpoint, out / LAST)
    base, lora = finetune.start(run.init_from, run.model, run.lora, checkpoint)  # ft9: fine-tuning
    saver, model_config = [], run.model  # the vocabulary's size comes with the corpus
    found = _file_identity(out / LAST) if out is not None else None  # last.pt as this run found it
    try:  # from here on, Ctrl-C (or SIGTERM, SIGHUP) says what there is to resume, even mid-load
        if corpus is None:
            start = checkpoint or base  # resumed or fine-tuned: its vocabulary encodes the text
            corpus = load_corpus(run.data, start.tokenizer if start else None,
                                 kind=run.tokenizer or "char", vocab_size=run.vocab_size)
        if checkpoint is not None and checkpoint.extra.get("data_sha256", corpus.sha256) != corpus.sha256:
            raise DataError(f"{out / LAST} was trained on different text than {corpus.source}; resume "
                            f"with the same --data as the run that wrote it")
        model_config = replace(run.model, vocab_size=corpus.tokenizer.vocab_size)
        # a resumed run keeps its saved plan, precision included; a new one measures (on a CPU)
        plan = speed_from_checkpoint(checkpoint) if checkpoint is not None else run.plan(device)
        torch.manual_seed(run.train.seed)  # the initial weights (and, from here on, dropout)
        model = make_model(model_config) if make_model is not None else build_model(model_config, plan)
        model = finetune.prepare(model, base, lora)  # ft9: the checkpoint's weights, adapters
        state = None
        if checkpoint is not None:  # after building: this sets torch's random state to the saved one
            state = resume_training_state(checkpoint, model, device, fused=plan.fused_adamw)
        distributed.seed_other_ranks(dist, run.train.seed, 0 if state is None else state.step)  # dropout
        result = RunResult(run, model, state, corpus, plan, device, dist=dist)
        if out is not None:
            result.best_path, result.last_path = out / BEST, out / LAST
        if out is not None and dist.is_main:  # one writer
            for name in (LAST, BEST):
                for stale in remove_stale_temp_files(out / name):
                    log(f"removed {stale}, left by a save that was interrupted")
            saver = [_Saver(result, model_config)]
        what = (f"resuming {out / LAST} at step {checkpoint.step} of {run.train.max_iters}" if checkpoint
                else f"preset {run.name}")
        log(f"{what} on {device}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
            f"{len(corpus.train_data):,} train / {len(corpus.val_data):,} val tokens, "
            f"vocab {corpus.tokenizer.vocab_size}")
        log(f"speed plan: {describe_plan(plan) if make_model is None else type(model).__name__}")
        if run.init_from is not None or lora is not None:  # ft9
            log(finetune.describe(model, run.init_from))
        if make_model is None and plan.why:
            log(f"  why: {plan.why}")
        if dist.active or run.grad_accum > 1:
            log(describe_split(dist, run.train.batch_size, run.grad_accum))
        # on a CPU, say early when the steps run far slower than the probe expects (a busy machine)
        expected = (expected_step_seconds(model_config, run.train, plan)
                    if device.type == "cpu" and make_model is None and not dist.active else None)
        result.state = train(model, corpus.train_data, corpus.val_data, run.train,
                             block_size=model_config.block_size, device=device,
                             callbacks=[*saver, *callbacks], state=state, progress=progress, speed=plan,
                             dist=dist, grad_accum=run.grad_accum,
                             after_step=None if expected is None else PaceWatch(expected, _above_bar(log)))
    except TrainingDivergedError as err:
        if not saver:
            raise
        raise TrainingDivergedError(f"{err}; {_kept(out, saver, checkpoint)}") from None
    except KeyboardInterrupt:
        if out is None:
            raise
        raise TrainingInterrupted(_interrupted_message(run, out, resume, found, make_model)) from None
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        raise OutOfMemoryError(memory_message(err, device, model_config, run.train.batch_size) +
                               ("" if out is None else f"; {_kept(out, saver, checkpoint)}")) from None
    return result


def _saved_step(saver: list, checkpoint: Checkpoint | None) -> int | None:
    """The step of the last complete ``last.pt`` of this run (None: nothing saved yet)."""
    if saver:
        return saver[0].saved_step
    return checkpoint.step if checkpoint is not None else None


def _kept(out: Path, saver: list, checkpoint: Checkpoint | None) -> str:
    step = _saved_step(saver, checkpoint)
    return ("no resumable checkpoint had been saved yet" if step is None else
            f"the last good checkpoint, {out / LAST} (step {step}), is kept")


def resume_command(run: Run, out: Path) -> str:
    """The command line that continues ``run`` from ``out/last.pt`` (its configs come from the file)."""
    words = ["python", "-m", "gptlib", "train", "--resume", "--out", str(out)]
    if run.data is not None:
        words += ["--data", str(run.data)]
    if run.device not in ("auto", "", None):
        words += ["--device", str(run.device)]
    return shlex.join(words)


def _interrupted_message(run: Run, out: Path, resume: bool, found: tuple | None, make_model) -> str:
    # Ctrl-C can come at any moment, a save's last instants included, so read what is on disk: a
    # last.pt of this run's (each save is a new file), or the one it resumed from.
    now = _file_identity(out / LAST)
    step = None
    if now is not None and (resume or now != found):
        try:
            step = load_checkpoint(out / LAST).step
        except CheckpointError:
            pass
    if step is None:
        return f"no resumable checkpoint had been saved yet (the first comes at step {run.train.eval_interval})"
    how = ("train_run(run, resume=True, make_model=...)" if make_model is not None
           else resume_command(run, out))
    return f"the last checkpoint is {out / LAST} (step {step} of {run.train.max_iters}); resume it with: {how}"


def _file_identity(path: Path) -> tuple | None:
    """Which file is at ``path`` (device, inode), or None: an atomic save puts a new file there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def memory_message(err: BaseException, device: torch.device, model: GPTConfig, batch_size: int) -> str:
    """One line for running out of memory: how much was asked for at once and which sizes to make smaller."""
    text = str(err)
    cpu = re.search(r"allocate (\d+) bytes", text)  # the CPU allocator's wording
    gpu = re.search(r"allocate ([\d.]+ [KMGT]iB)", text)  # CUDA's and MPS's
    asked = f"{int(cpu.group(1)) / 2**30:.1f} GiB" if cpu else gpu.group(1) if gpu else None
    return (f"out of memory on {device}" + (f" (asked for {asked} at once)" if asked else "") +
            f": make batch_size (now {batch_size}) or block_size (now {model.block_size}) smaller, "
            f"or the model (n_embd {model.n_embd}, n_layer {model.n_layer})")


@contextmanager
def _own_folder(out: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Create ``out`` if missing, check that it can be written, and hold its lock while the block runs.

    The lock is an ``flock`` on ``out/.lock``: a second run that asks for it is refused at once, and
    the kernel lets it go when the process ends however it ends (a crash or ``kill -9`` included),
    so a dead run never blocks the next one. Folders created here that are still empty at the end
    (the run failed before its first checkpoint) are removed again.
    """
    created = make_folder(out, "the output folder", "choose another --out")
    fd = _lock(out / LOCK, log)
    try:
        yield
    finally:
        if fd is not None:
            (out / LOCK).unlink(missing_ok=True)  # before letting go: see the inode check in `_lock`
            os.close(fd)
        remove_empty_folders(created)


def _lock(path: Path, log: Callable[[str], None]) -> int | None:
    """Take the lock at ``path`` (see `_own_folder`): its file descriptor, or None where this system
    has no ``flock`` (Windows) or this file system cannot lock (some network file systems)."""
    if fcntl is None:
        return None
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OutputPathError(f"the output folder {path.parent} cannot be written ({err.strerror}); "
                                  f"choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputPathError(f"{path.parent} is in use by another run ({_lock_holder(path)}); wait for it "
                                  f"to finish, or choose another --out") from None
        except OSError as err:
            os.close(fd)
            log(f"warning: cannot lock {path} ({err.strerror}); make sure no other run writes to {path.parent}")
            return None
        # A run that lets go unlinks the file first, so a lock on a file that is no longer at ``path``
        # (opened just before that) is a lock on nothing: open the new file and lock that.
        try:
            here = os.stat(path)
        except FileNotFoundError:
            here = None
        mine = os.fstat(fd)
        if here is not None and (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # for the message a refused run prints
            return fd
        os.close(fd)
    raise OutputPathError(f"could not lock {path}: other runs keep taking it; choose another --out")


def _lock_holder(path: Path) -> str:
    for _ in range(5):  # the holder writes its pid just after taking the lock: give it a moment
        try:
            pid = path.read_text().strip()
        except OSError:
            pid = ""
        if pid.isdigit():
            return f"process {pid}"
        time.sleep(0.02)
    return "another process"


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
        try:
            if state.improved:
                save_checkpoint(r.best_path, merge_lora(state.model), r.tokenizer, self.model_config,
                                state.config, state.step, {"history": state.history.to_dict(), **run_info})
            save_training_state(r.last_path, state, r.tokenizer, self.model_config,
                                {**run_info, **finetune.lora_info(state.model)})  # ft9: adapters' config
        except OSError as err:  # a full disk, a folder removed or made read-only mid-run
            hint = "Free some space or choose" if err.errno == errno.ENOSPC else "Choose"
            raise OutputPathError(f"could not save a checkpoint in {r.last_path.parent} at step {state.step} "
                                  f"({err.strerror or err}); {_kept(r.last_path.parent, [self], None)}. "
                                  f"{hint} another --out") from None
        self.saved_step = state.step


def describe_split(dist: distributed.Distributed, batch_size: int, grad_accum: int) -> str:
    """One line saying how each batch is shared, e.g. "world size 2 (gloo): each process trains 16
    of the 32 rows of every batch"."""
    rows = batch_size // dist.world_size
    micro = f" in {grad_accum} micro-batches of {rows // grad_accum}" if grad_accum > 1 else ""
    if not dist.active:
        return f"gradient accumulation: each batch of {batch_size} rows{micro}"
    return (f"world size {dist.world_size} ({dist.backend}): each process trains {rows} of the "
            f"{batch_size} rows of every batch{micro}")


def _above_bar(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log``, but a plain print goes above the progress bar (tqdm.write), not into it."""
    from tqdm.auto import tqdm

    return tqdm.write if log is print else log


def _quiet(message: str) -> None:
    """The log of a process that does not report (a torchrun rank other than 0)."""


def speed_from_checkpoint(checkpoint: Checkpoint) -> SpeedConfig:
    """The plan a checkpoint was trained with (checkpoints from before plans were saved: `READABLE`)."""
    saved = checkpoint.extra.get("speed")
    try:
        return READABLE if saved is None else SpeedConfig(**saved)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"the checkpoint's speed plan is damaged: {err}") from None


def _check_resumable_path(out: Path | None) -> None:
    if out is None:
        raise ConfigError("resuming needs the run's output folder (Run.out, --out)")
    if out.is_file():  # "--out runs/x/best.pt"
        raise ConfigError(f"--out {out} is a file; --resume takes the run's folder: --out {out.parent}")
    path = out / LAST
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {path}; run `train` without --resume "
                                f"to start a run there, or point --out at the folder of the run to continue")


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
    if run.dtype is not None and run.dtype != saved_plan.precision:
        conflicts.append(f"the precision (saved {saved_plan.precision}, asked {run.dtype})")
    if run.compile is not None and run.compile != saved_plan.compile:
        conflicts.append(f"torch.compile (saved {'on' if saved_plan.compile else 'off'}, "
                         f"asked {'on' if run.compile else 'off'})")
    saved_kind = checkpoint.tokenizer.to_dict()["kind"]
    if run.tokenizer is not None and run.tokenizer != saved_kind:
        conflicts.append(f"tokenizer (saved {saved_kind!r}, asked {run.tokenizer!r})")
    if run.vocab_size is not None and run.vocab_size != checkpoint.tokenizer.vocab_size:
        conflicts.append(f"vocab_size (saved {checkpoint.tokenizer.vocab_size}, asked {run.vocab_size})")
    if conflicts:
        raise ConfigError(f"--resume continues with the configs saved in {path}, but the run asks for "
                          f"others: {'; '.join(conflicts)}. Drop those options, or start a new run with "
                          f"another --out")
