"""The command line, the original project's ``python main.py``: ``python -m gptlib train`` / ``sample``.

    python -m gptlib train --preset cpu --out runs/cpu
    python -m gptlib sample --checkpoint runs/cpu/best.pt --prompt "ROMEO:" --max-new-tokens 300

A mistake on the command line or in the input is one line on stderr and exit code 2, no traceback.
"""

import argparse
import hashlib
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from gptlib import bench
from gptlib.batches import train_val_split
from gptlib.checkpoint import (Checkpoint, load_checkpoint, remove_stale_temp_files, resume_training_state,
                               save_checkpoint, save_training_state)
from gptlib.config import GPTConfig, TrainConfig
from gptlib.data import load_text
from gptlib.device import pick_device
from gptlib.errors import CheckpointError, ConfigError, DataError, GPTLibError, TrainingDivergedError
from gptlib.model import GPT, count_parameters
from gptlib.presets import PRESETS, get_preset
from gptlib.sampling import iter_generate
from gptlib.tokenizer import CharTokenizer


def _add_config_options(parser: argparse.ArgumentParser, config_class, skip=()) -> None:
    """One ``--field-name`` option per dataclass field; unset options keep the preset's value."""
    group = parser.add_argument_group(f"{config_class.__name__} overrides (default: the preset's value)")
    for f in fields(config_class):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float}.get(f.type, f.type) if isinstance(f.type, str) else f.type
            group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=kind.__name__.upper())


def _overrides(args: argparse.Namespace, config_class) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(config_class)
            if getattr(args, f.name, None) is not None}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), still exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for ``python -m gptlib``."""
    parser = _Parser(prog="python -m gptlib", description="Train and sample a character-level GPT.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GPT on Tiny Shakespeare (or --data FILE) and save a checkpoint")
    t.add_argument("--preset", default=None, help=f"one of: {', '.join(PRESETS)} (default: cpu)")
    t.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    t.add_argument("--out", default="runs/latest", type=Path, help="folder for checkpoints (default: runs/latest)")
    t.add_argument("--data", default=None, type=Path, help="a UTF-8 text file to train on instead of Tiny Shakespeare")
    t.add_argument("--sample-tokens", default=500, type=int, help="characters to print at the end (default 500)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt with the saved configs (exact on the same CPU)")
    t.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out folder that already holds one, replacing its checkpoints")
    _add_config_options(t, GPTConfig, skip=("vocab_size",))
    _add_config_options(t, TrainConfig)

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint written by `train`")
    s.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    s.add_argument("--max-new-tokens", default=500, type=int)
    s.add_argument("--temperature", default=1.0, type=float, help="0 = greedy, <1 sharper, >1 more random")
    s.add_argument("--top-k", default=None, type=int, help="sample only from the k most likely characters")
    s.add_argument("--seed", default=1337, type=int)
    s.add_argument("--device", default="auto")

    b = sub.add_parser("bench", help="time the readable model vs the fast path, naive vs KV-cache sampling")
    bench.add_arguments(b)
    return parser


def _stream(model, tokenizer, prompt: str, max_new_tokens: int, device, **kwargs) -> None:
    """Print ``prompt`` and then each sampled character as soon as it is made."""
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)  # (1,T)
    tokens = iter_generate(model, idx, max_new_tokens, **kwargs)
    first = next(tokens, None)  # checks the arguments before anything is printed
    sys.stdout.write(prompt)
    if first is not None:
        sys.stdout.write(tokenizer.decode(first[0].tolist()))
        for tok in tokens:
            sys.stdout.write(tokenizer.decode(tok[0].tolist()))
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def cmd_train(args: argparse.Namespace) -> None:
    """``train``: build the preset (or ``--resume`` the run in ``--out``), train with progress, save a
    resumable last.pt every evaluation and best.pt when val improves, print a sample."""
    from tqdm.auto import tqdm

    from gptlib.training import train

    device = pick_device(args.device)
    out = Path(args.out)
    if args.sample_tokens < 0:
        raise GPTLibError(f"--sample-tokens must be >= 0, got {args.sample_tokens}")
    preset = None if args.resume else get_preset(args.preset or "cpu")  # a bad name fails before the data loads
    existing = [name for name in ("last.pt", "best.pt") if (out / name).exists()]
    if existing and not (args.resume or args.overwrite):
        # Never replace someone's training run by accident.
        raise GPTLibError(f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
                          f"--overwrite to replace it, or choose another --out")
    text = load_text(args.data)
    # Saved in last.pt, so that --resume can tell when it is given different text.
    data_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if args.resume:
        ckpt = _checkpoint_to_resume(args, text, data_sha256)
        tokenizer, model_config, train_config = ckpt.tokenizer, ckpt.model_config, ckpt.train_config
        label = f"resuming {out / 'last.pt'} at step {ckpt.step} of {train_config.max_iters}"
    else:
        tokenizer = CharTokenizer.from_text(text)
        model_config = replace(preset.model, vocab_size=tokenizer.vocab_size, **_overrides(args, GPTConfig))
        train_config = replace(preset.train, **_overrides(args, TrainConfig))
        label = f"preset {preset.name}"

    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_data, val_data = train_val_split(data)
    torch.manual_seed(train_config.seed)
    model = GPT(model_config)
    # Sets torch's random state too, so it comes after everything that draws from it (GPT's init).
    state = resume_training_state(ckpt, model, device) if args.resume else None
    for name in ("last.pt", "best.pt"):
        for stale in remove_stale_temp_files(out / name):
            print(f"removed {stale}, left by a save that was interrupted")
    print(f"{label} on {device}: {count_parameters(model) / 1e6:.2f}M parameters, "
          f"{len(train_data):,} train / {len(val_data):,} val tokens, vocab {tokenizer.vocab_size}")

    saved = {"step": None if state is None else state.step}  # the step of the last good last.pt

    def report_and_save(state) -> None:
        h = state.history
        tqdm.write(f"step {h.step[-1]:>5}: train loss {h.train_loss[-1]:.4f}, val loss {h.val_loss[-1]:.4f}"
                   f" ({h.elapsed[-1]:.1f}s)")
        # best.pt first: a kill between the two saves leaves last.pt one evaluation behind, and
        # resuming from it redoes that evaluation and writes the same best.pt again.
        if state.improved:
            save_checkpoint(out / "best.pt", model, tokenizer, model_config, train_config, state.step,
                            {"history": h.to_dict()})
        save_training_state(out / "last.pt", state, tokenizer, model_config, {"data_sha256": data_sha256})
        saved["step"] = state.step

    try:
        state = train(model, train_data, val_data, train_config, block_size=model_config.block_size,
                      device=device, callbacks=[report_and_save], state=state)
    except TrainingDivergedError as err:
        kept = ("no checkpoint had been saved yet" if saved["step"] is None else
                f"the last good checkpoint, {out / 'last.pt'} (step {saved['step']}), is kept")
        raise TrainingDivergedError(f"{err}; {kept}") from None
    print(f"best val loss {state.history.best_val_loss:.4f}; checkpoints in {out}/ (best.pt, last.pt)")
    if args.sample_tokens:
        best = load_checkpoint(out / "best.pt").build_model(device)
        _stream(best, tokenizer, "\n", args.sample_tokens, device,
                generator=torch.Generator(device=device).manual_seed(train_config.seed))


def _checkpoint_to_resume(args: argparse.Namespace, text: str, data_sha256: str) -> Checkpoint:
    """The checkpoint that ``train --resume`` continues, checked against the command line and the data."""
    path = Path(args.out) / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {path}; run `train` without --resume "
                                f"to start a run there, or point --out at the folder of the run to continue")
    ckpt = load_checkpoint(path)
    if not ckpt.resumable:
        raise CheckpointError(f"{path} holds weights only, not a training state, so it cannot be resumed; "
                              f"start a new run with another --out")
    conflicts = _config_conflicts(args, ckpt)
    if conflicts:
        raise ConfigError(f"--resume continues with the configs saved in {path}, but the command line asks "
                          f"for others: {'; '.join(conflicts)}. Drop those options, or start a new run "
                          f"with another --out")
    if CharTokenizer.from_text(text) != ckpt.tokenizer or ckpt.extra.get("data_sha256", data_sha256) != data_sha256:
        raise DataError(f"{path} was trained on different text than {args.data or 'Tiny Shakespeare'}; "
                        f"resume with the same --data as the run that wrote it")
    return ckpt


def _config_conflicts(args: argparse.Namespace, ckpt: Checkpoint) -> list[str]:
    """The config values the command line asks for that differ from the saved ones, as "name (saved, asked)"."""
    if args.preset is not None:  # a preset named on the command line must match in every field
        preset = get_preset(args.preset)
        asked = {**asdict(replace(preset.model, vocab_size=ckpt.model_config.vocab_size, **_overrides(args, GPTConfig))),
                 **asdict(replace(preset.train, **_overrides(args, TrainConfig)))}
    else:
        asked = {**_overrides(args, GPTConfig), **_overrides(args, TrainConfig)}
    saved = {**asdict(ckpt.model_config), **asdict(ckpt.train_config)}
    return [f"{name} (saved {saved[name]!r}, asked {value!r})" for name, value in asked.items()
            if saved[name] != value]


def cmd_sample(args: argparse.Namespace) -> None:
    """``sample``: load a checkpoint and stream a continuation of the prompt."""
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    if not args.prompt:
        raise GPTLibError("--prompt is empty; give at least one character to continue (the default is a newline)")
    model = ckpt.build_model(device)
    _stream(model, ckpt.tokenizer, args.prompt, args.max_new_tokens, device, temperature=args.temperature,
            top_k=args.top_k, generator=torch.Generator(device=device).manual_seed(args.seed))


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "bench": bench.cmd_bench}


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn a user error into one line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (GPTLibError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
