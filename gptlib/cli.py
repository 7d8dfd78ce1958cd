"""``python -m gptlib train/sample/bench``: a mistake is one line and exit 2, Ctrl-C one line with the command
that resumes, exit 130. The library's errors name `Run` fields in backticks; here they become --flags."""

import argparse
import inspect
import math
import os
import re
import shlex
import sys
from contextlib import suppress
from dataclasses import fields, replace
from pathlib import Path

from gptlib import bench
from gptlib.checkpoint import load_checkpoint
from gptlib.config import GPTConfig, TrainConfig
from gptlib.device import pick_device
from gptlib.distributed import report_error
from gptlib.errors import DataError, GPTLibError, TrainingInterrupted
from gptlib.files import path_arg
from gptlib.lora import LoRAConfig
from gptlib.presets import PRESETS, Preset, get_preset
from gptlib.run import Run, resume_path, train_run
from gptlib.sampling import default_prompt, stream_text
from gptlib.speed import READABLE
from gptlib.tokenizer import CharTokenizer


def _add_config_options(parser: argparse.ArgumentParser, config_class, skip=(), description=None) -> None:
    """One ``--field-name`` option per dataclass field, its help the field's comment in gptlib/config.py;
    unset options keep the preset's value."""
    comments = dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", inspect.getsource(config_class), flags=re.M))
    group = parser.add_argument_group(f"{config_class.__name__} overrides (default: the preset's value)",
                                      description)
    for f in (f for f in fields(config_class) if f.name not in skip):
        flag, text = "--" + f.name.replace("_", "-"), comments[f.name].replace("%", "%%")
        kind = ({"action": argparse.BooleanOptionalAction} if f.type is bool else
                {"type": f.type, "metavar": f.type.__name__.upper()})
        group.add_argument(flag, dest=f.name, help=text, **kind)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), still exit code 2."""

    def error(self, message: str):
        if message.endswith("expected one argument"):  # "--learning-rate -1e-3": argparse reads an option
            option = message.split()[1].rstrip(":")
            message += f"; a value that starts with '-' goes after '=': {option}=-1e-3"
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for ``python -m gptlib``."""
    parser = _Parser(prog="python -m gptlib", description="Train and sample a character-level GPT.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GPT on Tiny Shakespeare (or --data FILE) and save a checkpoint")
    t.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: cpu)")
    t.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    t.add_argument("--out", default="runs/latest", type=path_arg,
                   help="folder for checkpoints (default: runs/latest); one run at a time writes to it")
    t.add_argument("--data", type=path_arg, help="a UTF-8 text file to train on instead of Tiny Shakespeare "
                   "(its line ends, CRLF or CR, are read as LF)")
    t.add_argument("--sample-tokens", default=500, type=int, help="characters to print at the end")
    t.add_argument("--resume", action="store_true", help="continue --out's last.pt with its saved configs")
    t.add_argument("--overwrite", action="store_true", help="replace the run --out already holds")
    t.add_argument("--tokenizer", help="char (default); bpe: byte-level BPE fit on the train split (ch. 8)")
    t.add_argument("--vocab-size", type=int, help="with --tokenizer bpe: 256 to 65536 tokens (default 512)")
    t.add_argument("--readable", action="store_true", help="train the readable GPT instead of the speed "
                   "plan's fast path (ch. 6), in float32 unless --dtype says otherwise")
    t.add_argument("--dtype", help="float32, bfloat16 or float16 (default: the speed plan's: bfloat16 on "
                   "Ampere+ GPUs, float16 + GradScaler on a T4 or V100, float32 on a CPU)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the steps")
    t.add_argument("--grad-accum", default=1, type=int, metavar="N",
                   help="N micro-batches per batch: same result, less memory (under torchrun: per process)")
    t.add_argument("--init-from", type=path_arg, metavar="CKPT",
                   help="fine-tune (ch. 9): start from this checkpoint's weights and vocabulary")
    t.add_argument("--lora-rank", type=int, metavar="R", help="with --init-from: train LoRA adapters only")
    t.add_argument("--lora-alpha", type=float, metavar="A",
                   help=f"LoRA's update is scaled by A/R (default {LoRAConfig.alpha:g})")
    _add_config_options(t, GPTConfig, skip=("vocab_size",))
    _add_config_options(t, TrainConfig, description="--min-lr follows --learning-rate (the preset's ratio "
                        "between them) unless it is given too")

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--checkpoint", required=True, type=path_arg, help="a checkpoint written by `train`")
    prompt = s.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="text to continue (default: a newline, else the first character)")
    prompt.add_argument("--prompt-file", type=path_arg, metavar="FILE",
                        help="read the prompt from a UTF-8 file (- for standard input)")
    s.add_argument("--max-new-tokens", default=500, type=int)
    s.add_argument("--temperature", default=1.0, type=float, help="0 = greedy, <1 sharper, >1 more random")
    s.add_argument("--top-k", type=int, help="sample only from the k most likely characters")
    s.add_argument("--seed", default=1337, type=int)
    s.add_argument("--device", default="auto")

    b = sub.add_parser("bench", help="time the readable model vs the fast path, naive vs KV-cache sampling")
    bench.add_arguments(b)
    return parser


def _print_sample(model, tokenizer, prompt: str, max_new_tokens: int, **kwargs) -> None:
    """Print ``prompt``, then each sampled token as soon as it is made (all checked before any is printed)."""
    pieces = stream_text(model, tokenizer, prompt, max_new_tokens, **kwargs)
    sys.stdout.write(prompt)
    for piece in pieces:
        print(piece, end="", flush=True)
    print(flush=True)


def run_from_args(args: argparse.Namespace) -> Run:
    """The `Run` of ``train``'s options: a preset's (``--resume`` alone: the saved run's) with overrides."""
    if args.lora_alpha is not None and args.lora_rank is None:
        raise GPTLibError("--lora-alpha scales LoRA adapters; give --lora-rank too")
    alpha = LoRAConfig.alpha if args.lora_alpha is None else args.lora_alpha
    lora = None if args.lora_rank is None else LoRAConfig(args.lora_rank, alpha)  # None: no adapters
    if args.resume and args.preset is None:
        saved = load_checkpoint(resume_path(Path(args.out)), resumable=True)
        base = Preset("resumed", "", saved.model_config, saved.train_config)
    else:
        base = get_preset("cpu" if args.preset is None else args.preset)
    if args.init_from is not None and not args.resume:  # a fine-tuning run keeps the checkpoint's sizes
        base = replace(base, model=load_checkpoint(args.init_from).model_config)
    def given(config_class) -> dict:  # the options set for config_class's fields
        return {f.name: vars(args)[f.name] for f in fields(config_class) if vars(args)[f.name] is not None}
    train, lr = given(TrainConfig), args.learning_rate
    if lr is not None and args.min_lr is None and lr != base.train.learning_rate:
        # min_lr follows --learning-rate (the preset's ratio), so a lower learning rate just works
        train["min_lr"] = min(base.train.min_lr * (lr / base.train.learning_rate), lr)
    return Run(model=replace(base.model, **given(GPTConfig)), train=replace(base.train, **train),
               speed=READABLE if args.readable else None, dtype=args.dtype, compile=args.compile,
               data=args.data, tokenizer=args.tokenizer, vocab_size=args.vocab_size, out=Path(args.out),
               device=args.device, name=base.name, grad_accum=args.grad_accum,
               init_from=args.init_from, lora=lora)


def _per_character(val_loss: float, corpus) -> str:
    """For a tokenizer other than characters: the loss per character of the val text, and in bits (ch. 8)."""
    if isinstance(corpus.tokenizer, CharTokenizer):
        return ""
    val_chars = len(corpus.text) - int(0.9 * len(corpus.text))  # load_corpus's split, on the text
    nats = val_loss * len(corpus.val_data) / val_chars
    return f" per token = {nats:.4f} per character, {nats / math.log(2):.3f} bits per character"


def cmd_train(args: argparse.Namespace) -> None:
    """``train``: `train_run` the preset (or ``--resume``), print each evaluation's losses and a sample."""
    from tqdm.auto import tqdm
    if args.sample_tokens < 0:
        raise GPTLibError(f"--sample-tokens must be >= 0, got {args.sample_tokens}")
    run = run_from_args(args)  # a bad preset name or config value fails here, before the data loads
    def report(state) -> None:  # each evaluation's losses
        h = state.history
        tqdm.write(f"step {h.step[-1]:>5}: train loss {h.train_loss[-1]:.4f}, val loss {h.val_loss[-1]:.4f}"
                   f" ({h.elapsed[-1]:.1f}s)")
    result = train_run(run, resume=args.resume, overwrite=args.overwrite, callbacks=[report],
                       log=lambda message: print(one_line(message)))
    if not result.dist.is_main:
        return  # under torchrun, rank 0 alone reports and samples
    # what is there now: a resumed run writes best.pt only when val improves, and it may have been removed
    kept = [path for path in (result.best_path, result.last_path) if path.is_file()]
    best = result.history.best_val_loss
    print(one_line(f"best val loss {best:.4f}{_per_character(best, result.corpus)}; checkpoints in "
                   f"{run.out}/ ({', '.join(path.name for path in kept)})"))
    if args.sample_tokens:
        best = load_checkpoint(kept[0]).build_model(result.device)
        _print_sample(best, result.tokenizer, default_prompt(result.tokenizer), args.sample_tokens,
                      seed=run.train.seed)


def cmd_sample(args: argparse.Namespace) -> None:
    """``sample``: load a checkpoint and stream a continuation of the prompt."""
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model(pick_device(args.device))
    prompt = args.prompt if args.prompt_file is None else read_prompt(args.prompt_file)
    _print_sample(model, ckpt.tokenizer, default_prompt(ckpt.tokenizer) if prompt is None else prompt,
                  args.max_new_tokens, prompt_name="--prompt-file" if args.prompt_file else "--prompt",
                  temperature=args.temperature, top_k=args.top_k, seed=args.seed)


def read_prompt(path: Path) -> str:
    """``--prompt-file``: the file's text (``-``: standard input's), its line ends read as --data's are."""
    if str(path) == "-" and sys.stdin is None:  # started with "<&-"
        raise DataError("--prompt-file - reads standard input, which is closed; give a file instead")
    try:
        text = (sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"--prompt-file {path} is not UTF-8 ({err.reason} at byte {err.start})") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"--prompt-file: no file at {path}") from None
    except IsADirectoryError:
        raise DataError(f"--prompt-file {path} is a folder; give a text file") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn a user error into one line and exit code 2."""
    args = build_parser().parse_args(argv)
    if sys.stdout is None:  # started with stdout closed (``>&-``): Python has nowhere to print
        print("error: standard output is closed; redirect it to a file, or to /dev/null", file=sys.stderr)
        return 2
    try:
        {"train": cmd_train, "sample": cmd_sample, "bench": bench.cmd_bench}[args.command](args)
    except (GPTLibError, FileNotFoundError) as err:
        report_error(f"error: {one_line(as_flags(str(err)))}")  # under torchrun: once, from rank 0
        return 2
    except KeyboardInterrupt as err:  # a TrainingInterrupted says where its checkpoint is
        where = f": {interrupted_line(err, args)}" if isinstance(err, TrainingInterrupted) else ""
        print(f"interrupted{one_line(where)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped reading (``| head``): stop quietly, as Unix tools do
        _drop_stdout()
        return 141  # what a shell reports for a process that SIGPIPE ended: 128 + 13
    except OSError as err:  # the machine rather than the input: stdout on a full disk, a name too long...
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        _drop_stdout()
        return 1
    return 0


def as_flags(message: str) -> str:
    """A library message for the command line: each `name` (a Run field, a train_run option) as --name."""
    return re.sub(r"`(\w+)`", lambda m: "--" + m.group(1).replace("_", "-"), message)


def interrupted_line(err: TrainingInterrupted, args: argparse.Namespace) -> str:
    """What a stopped ``train`` says: the last checkpoint and the command line that resumes it."""
    if err.path is None or args.command != "train":
        return str(err)
    words = ["python", "-m", "gptlib", "train", "--resume", "--out", str(err.path.parent)]
    words += ["--data", str(args.data)] if args.data is not None else []
    words += ["--device", args.device] if args.device not in ("auto", "") else []
    return (f"the last checkpoint is {err.path} (step {err.step} of {err.max_iters}); resume it with: "
            f"{shlex.join(words)}")


def one_line(message: str) -> str:
    """``message`` with unprintable characters (``\\n``, ``\\x1b``) escaped: one line, no terminal codes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, or Python's own flush at exit fails on it again, with a traceback."""
    with suppress(OSError, ValueError):  # stdout is not a real file (a test's capture): nothing to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
