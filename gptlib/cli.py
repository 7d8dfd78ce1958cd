"""The command line, the original project's ``python main.py``: ``python -m gptlib train`` / ``sample``.

    python -m gptlib train --preset cpu --out runs/cpu
    python -m gptlib sample --checkpoint runs/cpu/best.pt --prompt "ROMEO:" --max-new-tokens 300
    torchrun --standalone --nproc_per_node=2 -m gptlib train --preset cpu    # DDP: gptlib.distributed

A mistake on the command line or in the input is one line on stderr and exit code 2, no traceback;
Ctrl-C (and SIGTERM, SIGHUP: see ``__main__``) is one line (with the command that resumes the run) and
exit code 130; a reader that stops reading (``| head``) ends the command quietly, as it ends other Unix
tools.
"""

import argparse
import inspect
import math
import os
import re
import sys
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
from gptlib.run import Run, train_run
from gptlib.sampling import default_prompt, stream_text
from gptlib.speed import PRECISIONS, READABLE
from gptlib.tokenizer import CharTokenizer


def _field_help(config_class) -> dict[str, str]:
    """Each field's help text: its comment in the dataclass's source (gptlib/config.py), the one place
    that explains it."""
    source = inspect.getsource(config_class)
    return dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, flags=re.M))


def _add_config_options(parser: argparse.ArgumentParser, config_class, skip=(), description=None) -> None:
    """One ``--field-name`` option per dataclass field; unset options keep the preset's value."""
    help_text = _field_help(config_class)
    group = parser.add_argument_group(f"{config_class.__name__} overrides (default: the preset's value)",
                                      description)
    for f in fields(config_class):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text.get(f.name))
        else:
            kind = {"int": int, "float": float}.get(f.type, f.type) if isinstance(f.type, str) else f.type
            group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=kind.__name__.upper(),
                               help=help_text.get(f.name, "").replace("%", "%%") or None)


def _overrides(args: argparse.Namespace, config_class) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(config_class)
            if getattr(args, f.name, None) is not None}


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
    t.add_argument("--preset", default=None, help=f"one of: {', '.join(PRESETS)} (default: cpu)")
    t.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    t.add_argument("--out", default="runs/latest", type=path_arg,
                   help="folder for checkpoints (default: runs/latest); one run at a time writes to it")
    t.add_argument("--data", default=None, type=path_arg,
                   help="a UTF-8 text file to train on instead of Tiny Shakespeare (its line ends, CRLF "
                        "or CR, are read as LF)")
    t.add_argument("--sample-tokens", default=500, type=int, help="characters to print at the end (default 500)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt with the saved configs (exact on the same CPU)")
    t.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out folder that already holds one, replacing its checkpoints")
    t.add_argument("--tokenizer", default=None, choices=("char", "bpe"),
                   help="char: one token per character (default); bpe: byte-level BPE trained on the train "
                        "split (ch. 8)")
    t.add_argument("--vocab-size", default=None, type=int,
                   help="with --tokenizer bpe: tokens in the vocabulary, 256 to 65536 (default 512)")
    t.add_argument("--readable", action="store_true",
                   help="train the readable GPT instead of the speed plan's fast path (ch. 6), in float32 "
                        "unless --dtype says otherwise")
    t.add_argument("--dtype", choices=PRECISIONS, default=None,
                   help="training precision (default: the speed plan's: bfloat16 on Ampere or newer GPUs, "
                        "float16 with a GradScaler on a T4 or V100, float32 on a CPU)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model for the training steps (default: off)")
    t.add_argument("--grad-accum", default=1, type=int, metavar="N",
                   help="split each batch into N micro-batches, one backward each (same result, less "
                        "memory); under torchrun, each process's share (default 1)")
    t.add_argument("--init-from", type=path_arg, metavar="CKPT",  # ft9: fine-tuning (ch. 9)
                   help="fine-tune: start from this checkpoint's weights and vocabulary")
    t.add_argument("--lora-rank", type=int, metavar="R", help="with --init-from: train LoRA adapters only")
    t.add_argument("--lora-alpha", type=float, metavar="A",
                   help=f"LoRA's update is scaled by A/R (default {LoRAConfig.alpha:g})")
    _add_config_options(t, GPTConfig, skip=("vocab_size",))
    _add_config_options(t, TrainConfig, description="--min-lr follows --learning-rate (the preset's ratio "
                        "between them) unless it is given too")

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--checkpoint", required=True, type=path_arg, help="a checkpoint written by `train`")
    prompt = s.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=None, help="text to continue (default: a newline, or the "
                        "vocabulary's first character when the text had no newline)")
    prompt.add_argument("--prompt-file", default=None, type=path_arg, metavar="FILE",
                        help="read the prompt from a UTF-8 file (- for standard input): a prompt longer "
                             "than a command line allows")
    s.add_argument("--max-new-tokens", default=500, type=int)
    s.add_argument("--temperature", default=1.0, type=float, help="0 = greedy, <1 sharper, >1 more random")
    s.add_argument("--top-k", default=None, type=int, help="sample only from the k most likely characters")
    s.add_argument("--seed", default=1337, type=int)
    s.add_argument("--device", default="auto")

    b = sub.add_parser("bench", help="time the readable model vs the fast path, naive vs KV-cache sampling")
    bench.add_arguments(b)
    return parser


def _print_sample(model, tokenizer, prompt: str, max_new_tokens: int, *, prompt_name: str = "--prompt",
                  **kwargs) -> None:
    """Print ``prompt`` and then each sampled token as soon as it is made."""
    pieces = stream_text(model, tokenizer, prompt, max_new_tokens, prompt_name=prompt_name,
                         **kwargs)  # checks everything before anything is printed
    sys.stdout.write(prompt)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def run_from_args(args: argparse.Namespace) -> Run:
    """The `Run` that ``train``'s options describe: a preset (or, with ``--resume`` and no
    ``--preset``, the saved run's configs) with the options that override its fields."""
    if args.resume and args.preset is None:
        saved = load_checkpoint(Path(args.out) / "last.pt") if (Path(args.out) / "last.pt").is_file() else None
        # weights only (no train config): any base will do, train_run refuses to resume them
        base = (Preset("resumed", "", saved.model_config, saved.train_config) if saved and saved.resumable
                else get_preset("cpu"))
    else:
        base = get_preset("cpu" if args.preset is None else args.preset)
    if args.init_from is not None and not args.resume:  # ft9: a fine-tuning run keeps the checkpoint's sizes
        base = replace(base, model=load_checkpoint(args.init_from).model_config)
    train = _overrides(args, TrainConfig)
    if "learning_rate" in train and "min_lr" not in train and train["learning_rate"] != base.train.learning_rate:
        # min_lr follows --learning-rate (the preset's ratio), so a lower learning rate just works
        ratio = train["learning_rate"] / base.train.learning_rate
        train["min_lr"] = min(base.train.min_lr * ratio, train["learning_rate"])
    return Run(model=replace(base.model, **_overrides(args, GPTConfig)),
               train=replace(base.train, **train),
               speed=READABLE if args.readable else None, dtype=args.dtype, compile=args.compile,
               data=args.data, tokenizer=args.tokenizer, vocab_size=args.vocab_size, out=Path(args.out),
               device=args.device, name=base.name, grad_accum=args.grad_accum,
               init_from=args.init_from, lora=_lora(args))


def _lora(args: argparse.Namespace) -> LoRAConfig | None:
    """``--lora-rank`` and ``--lora-alpha`` as a `LoRAConfig` (None: no adapters)."""
    if args.lora_rank is None:
        if args.lora_alpha is not None:
            raise GPTLibError("--lora-alpha scales LoRA adapters; give --lora-rank too")
        return None
    return LoRAConfig(args.lora_rank, LoRAConfig.alpha if args.lora_alpha is None else args.lora_alpha)


def _per_character(val_loss: float, corpus) -> str:
    """For a tokenizer other than characters: the loss per token restated per character of the
    validation text, and in bits per character, comparable with a character model's (chapter 8)."""
    if isinstance(corpus.tokenizer, CharTokenizer):
        return ""
    val_chars = len(corpus.text) - int(0.9 * len(corpus.text))  # load_corpus's split, on the text
    nats = val_loss * len(corpus.val_data) / val_chars
    return f" per token = {nats:.4f} per character, {nats / math.log(2):.3f} bits per character"


def cmd_train(args: argparse.Namespace) -> None:
    """``train``: train the preset (or ``--resume`` the run in ``--out``) through `train_run`, print
    the loss at each evaluation and a sample from the best checkpoint."""
    from tqdm.auto import tqdm

    if args.sample_tokens < 0:
        raise GPTLibError(f"--sample-tokens must be >= 0, got {args.sample_tokens}")
    run = run_from_args(args)  # a bad preset name or config value fails here, before the data loads

    def report(state) -> None:
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
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model(device)
    prompt = args.prompt if args.prompt_file is None else read_prompt(args.prompt_file)
    _print_sample(model, ckpt.tokenizer, default_prompt(ckpt.tokenizer) if prompt is None else prompt,
                  args.max_new_tokens, prompt_name="--prompt-file" if args.prompt_file else "--prompt",
                  temperature=args.temperature, top_k=args.top_k, seed=args.seed)


def read_prompt(path: Path) -> str:
    """``--prompt-file``: the file's text (``-``: standard input's), its line ends read as --data's are."""
    try:
        if str(path) == "-" and sys.stdin is None:  # started with "<&-"
            raise DataError("--prompt-file - reads standard input, which is closed; give a file instead")
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"--prompt-file {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"--prompt-file: no file at {path}") from None
    except IsADirectoryError:
        raise DataError(f"--prompt-file {path} is a folder; give a text file") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "bench": bench.cmd_bench}


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn a user error into one line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with stdout closed (``>&-``): Python has nowhere to print
        print("error: standard output is closed; redirect it to a file, or to /dev/null", file=sys.stderr)
        return 2
    try:
        COMMANDS[args.command](args)
    except (GPTLibError, FileNotFoundError) as err:
        report_error(f"error: {one_line(str(err))}")  # under torchrun: once, from rank 0
        return 2
    except TrainingInterrupted as err:
        print(f"interrupted: {one_line(str(err))}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader stopped reading (``| head``): stop quietly, as Unix tools do.
        _drop_stdout()
        return 141  # what a shell reports for a process that SIGPIPE ended: 128 + 13
    except OSError as err:  # the machine rather than the input: stdout on a full disk, a name too long...
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        _drop_stdout()
        return 1
    return 0


def one_line(message: str) -> str:
    """``message`` with each character that is not printable (a newline, a terminal's escape in a
    file name) written as Python writes it in a string (``\\n``, ``\\x1b``): one line that cannot drive
    the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, or Python's own flush at exit fails on it again, with a traceback."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing to flush
        pass
