"""``python -m gptlib bench``: how fast is the readable model, how fast is the fast path, on this machine.

    python -m gptlib bench                          # lecture preset: training and sampling
    python -m gptlib bench --json out.json          # the same, and the numbers as JSON
    python -m gptlib bench --time-to-loss           # also: seconds for the cpu preset to reach val 1.88

Method: one process; a warm-up step for each model, then rounds that alternate between the models
(so a noisy neighbour slows both alike); medians. MFU (model FLOPs utilisation) is the model's
FLOPs per second over this machine's matmul peak, measured here by the same command in the plan's
precision (fp32 on a CPU; bf16, or fp16 on a T4 or V100, on a GPU). FLOPs per token follow nanoGPT's
``estimate_mfu``: 6 N (N = parameters in matmuls) plus 12 L T C for the attention scores and the
weighted sum, forward and backward.

The JSON file is nested: ``{"train": {"readable_tok_s": ...}, "sample": {...}, "time_to_loss": {...},
"machine": {...}}``, so the dotted key ``train.speedup`` is ``data["train"]["speedup"]``
(`get_path` reads one).
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn

from gptlib.batches import get_batch
from gptlib.config import GPTConfig, TrainConfig
from gptlib.device import pick_device
from gptlib.errors import ConfigError
from gptlib.fast import fast_from_readable
from gptlib.files import atomic_write, check_writable_file, path_arg
from gptlib.kvcache import generate_cached
from gptlib.model import GPT, count_parameters
from gptlib.presets import PRESETS, get_preset
from gptlib.sampling import generate
from gptlib.run import Corpus, Run, load_corpus, train_run
from gptlib.speed import SpeedConfig, autocast, speed_plan
from gptlib.training import make_optimizer

# the optimiser settings for the timed steps (their values do not change the speed)
_TRAIN = TrainConfig(learning_rate=1e-4)


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_token(config: GPTConfig) -> float:
    """Training FLOPs (forward + backward) per token, as nanoGPT's ``estimate_mfu`` counts them."""
    C, L, T, V = config.n_embd, config.n_layer, config.block_size, config.vocab_size
    # parameters that take part in a matmul: per block qkv (3C^2), proj (C^2 + C), MLP (8C^2 + 5C),
    # LayerNorms (4C); then ln_f (2C) and lm_head (CV + V). Embedding lookups are not matmuls.
    n = L * (12 * C * C + 10 * C) + 2 * C + C * V + V
    return 6 * n + 12 * L * T * C  # 2 FLOPs per multiply-add, x3 for backward; + attention


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, reps: int = 5) -> float:
    """The best FLOP/s of a square ``size`` matmul in ``dtype`` on ``device`` (this machine's peak)."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: library init, and the clock ramps up
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best


def _train_step(model: nn.Module, optimizer, x, y, speed: SpeedConfig | None, device: torch.device) -> None:
    # TF32 is a global switch: on for the fast path if its plan says so, off for the readable baseline
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(speed and speed.tf32)
    with autocast(speed, device):
        _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bench_training(config: GPTConfig, train_data: torch.Tensor, batch_size: int, device: torch.device,
                   plan: SpeedConfig, rounds: int, steps: int, peak: float) -> dict:
    """Median ms per training step of the readable `GPT` (fp32, plain AdamW) and of the fast path
    (`FastGPT` with ``plan``), measured in alternating rounds after a warm-up step each."""
    torch.manual_seed(1337)
    readable = GPT(config).to(device).train()
    fast = fast_from_readable(readable).train()
    fast_step_model = torch.compile(fast) if plan.compile else fast
    contenders = {
        "readable": (readable, make_optimizer(readable, _TRAIN), None),
        "fast": (fast_step_model, make_optimizer(fast, _TRAIN, fused=plan.fused_adamw), plan),
    }
    gen = torch.Generator().manual_seed(0)
    times = {name: [] for name in contenders}
    for r in range(rounds + 1):  # round 0 is the warm-up (and, with compile, the compilation)
        for name, (model, opt, speed) in contenders.items():
            x, y = get_batch(train_data, batch_size, config.block_size, gen, device)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                _train_step(model, opt, x, y, speed, device)
            _sync(device)
            if r > 0:
                times[name].append((time.perf_counter() - t0) / steps)
    tokens = batch_size * config.block_size
    fpt = flops_per_token(config)
    out = {"batch_size": batch_size, "block_size": config.block_size, "rounds": rounds,
           "steps_per_round": steps, "flops_per_token": fpt}
    for name, ts in times.items():
        sec = statistics.median(ts)
        out[f"{name}_ms_per_iter"] = 1000 * sec
        out[f"{name}_tok_s"] = tokens / sec
        out[f"{name}_mfu"] = tokens / sec * fpt / peak
    out["speedup"] = out["fast_tok_s"] / out["readable_tok_s"]
    return out


def bench_sampling(config: GPTConfig, device: torch.device, new_tokens: int, rounds: int) -> dict:
    """Median tokens/s of the naive `generate` (readable `GPT`) and of `generate_cached` (KV cache),
    sampling ``new_tokens`` from a one-token prompt, in alternating rounds after a short warm-up."""
    torch.manual_seed(1337)
    model = GPT(config).to(device).eval()
    idx = torch.zeros((1, 1), dtype=torch.long, device=device)  # the lecture's prompt: token 0
    contenders = {"naive": generate, "cached": generate_cached}
    times = {name: [] for name in contenders}
    for r in range(rounds + 1):
        n = min(new_tokens, 20) if r == 0 else new_tokens  # round 0: a short warm-up
        for name, fn in contenders.items():
            gen = torch.Generator(device=device).manual_seed(r)
            _sync(device)
            t0 = time.perf_counter()
            fn(model, idx, n, generator=gen)
            _sync(device)
            if r > 0:
                times[name].append(time.perf_counter() - t0)
    out = {"new_tokens": new_tokens, "rounds": rounds}
    for name, ts in times.items():
        out[f"{name}_seconds"] = statistics.median(ts)
        out[f"{name}_tok_s"] = new_tokens / statistics.median(ts)
    out["speedup"] = out["cached_tok_s"] / out["naive_tok_s"]
    return out


def time_to_loss(preset_name: str, target: float, device: torch.device, plan: SpeedConfig,
                 corpus: Corpus) -> dict:
    """Train ``preset_name`` with ``plan`` until val loss <= ``target``: wall seconds (evaluations
    included, start-up excluded) and the step it happened at."""
    preset = get_preset(preset_name)
    hit = {}

    def stop_at_target(state) -> None:
        h = state.history
        if h.val_loss[-1] <= target and not hit:
            hit.update(step=h.step[-1], seconds=h.elapsed[-1], val_loss=h.val_loss[-1])
            state.stop = True

    run = Run.from_preset(preset, speed=plan, device=str(device))
    h = train_run(run, callbacks=[stop_at_target], progress=False, corpus=corpus, log=lambda _: None).history
    return {"preset": preset_name, "target": target, "reached": bool(hit),
            "seconds": hit.get("seconds"), "step": hit.get("step"), "val_loss": hit.get("val_loss"),
            "final_step": h.step[-1], "final_val_loss": h.val_loss[-1], "final_seconds": h.elapsed[-1],
            "max_iters": preset.train.max_iters}


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on: date, device, threads, torch version, load average."""
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": _cpu_name(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = round(os.getloadavg()[0], 2)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def get_path(data: dict, dotted: str):
    """``get_path(results, "train.speedup")`` is ``results["train"]["speedup"]``."""
    for key in dotted.split("."):
        data = data[key]
    return data


def _row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def format_report(results: dict) -> str:
    """The benchmark's results as a plain-text table with the speed-up ratios."""
    m = results["machine"]
    lines = [f"gptlib bench, {m['date']}: preset {results['preset']} on {m['device']}"
             + (f" ({m['gpu']})" if "gpu" in m else f" ({m['cpu']}, {m['threads']} threads)")
             + f", torch {m['torch']}, load average {m.get('load_average_start', '?')} at start"
             + (f", {m['load_average_end']} at end" if "load_average_end" in m else "")]
    if "peak_flops" in results:
        lines.append(f"matmul peak ({results['peak_dtype']}): {results['peak_flops'] / 1e9:,.0f} GFLOP/s; "
                     f"speed plan: {results['plan']}")
    w = (26, 11, 11, 7)
    if "train" in results:
        t = results["train"]
        lines += ["", f"training: batch {t['batch_size']} x {t['block_size']} tokens, median of {t['rounds']} "
                      f"alternating rounds after a warm-up",
                  _row(("", "ms/iter", "tokens/s", "MFU"), w)]
        for name, label in (("readable", "readable GPT (lecture)"), ("fast", "fast path (FastGPT+plan)")):
            lines.append(_row((label, f"{t[name + '_ms_per_iter']:,.1f}", f"{t[name + '_tok_s']:,.0f}",
                               f"{100 * t[name + '_mfu']:.0f}%"), w))
        lines.append(_row(("speed-up", "", f"{t['speedup']:.2f}x", ""), w))
    if "sample" in results:
        s = results["sample"]
        lines += ["", f"sampling {s['new_tokens']} new tokens, median of {s['rounds']} alternating rounds",
                  _row(("", "seconds", "tokens/s", ""), w)]
        for name, label in (("naive", "naive generate"), ("cached", "KV cache")):
            lines.append(_row((label, f"{s[name + '_seconds']:.2f}", f"{s[name + '_tok_s']:,.0f}", ""), w))
        lines.append(_row(("speed-up", "", f"{s['speedup']:.1f}x", ""), w))
    if "time_to_loss" in results:
        r = results["time_to_loss"]
        lines.append("")
        if r["reached"]:
            lines.append(f"time to loss: preset {r['preset']} reached val {r['val_loss']:.4f} <= {r['target']} "
                         f"at step {r['step']} after {r['seconds']:.1f} s of training")
        else:
            lines.append(f"time to loss: preset {r['preset']} did NOT reach val <= {r['target']}: val "
                         f"{r['final_val_loss']:.4f} after {r['final_step']} steps, {r['final_seconds']:.1f} s")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.add_argument("--preset", default="lecture", help=f"model size to time; one of: {', '.join(PRESETS)} "
                        f"(default: lecture)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per measurement (default 3)")
    parser.add_argument("--steps", type=int, default=1, help="training steps per round (default 1)")
    parser.add_argument("--new-tokens", type=int, default=500, help="tokens to sample (default 500)")
    parser.add_argument("--no-train", action="store_true", help="skip the training benchmark")
    parser.add_argument("--no-sample", action="store_true", help="skip the sampling benchmark")
    parser.add_argument("--time-to-loss", action="store_true",
                        help="also train --ttl-preset until val loss <= --target and report the seconds")
    parser.add_argument("--ttl-preset", default="cpu", help="preset for --time-to-loss (default: cpu)")
    parser.add_argument("--target", type=float, default=1.88, help="val loss for --time-to-loss (default 1.88)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="override the speed plan's torch.compile choice")
    parser.add_argument("--json", type=path_arg, default=None, metavar="FILE", help="also write the results as JSON")


def check_args(args: argparse.Namespace) -> None:
    """Everything ``bench`` can check before it measures: numbers, preset names and where ``--json``
    goes (a folder, or a folder that cannot be written, fails now, not after the measurements)."""
    for name in ("rounds", "steps", "new_tokens"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not math.isfinite(args.target) or args.target <= 0:
        raise ConfigError(f"--target must be a finite val loss > 0, got {args.target}")
    get_preset(args.preset)
    get_preset(args.ttl_preset)
    if args.json is not None:
        check_writable_file(args.json, "--json", "give a file name such as bench.json in a folder you can write to")


def run_bench(args: argparse.Namespace) -> dict:
    """Run the measurements that ``args`` asks for and return the results (nested dicts)."""
    check_args(args)
    device = pick_device(args.device)
    preset = get_preset(args.preset)
    plan = speed_plan(device)
    if args.compile is not None:
        plan = replace(plan, compile=args.compile)
    corpus = load_corpus()
    config = replace(preset.model, vocab_size=corpus.tokenizer.vocab_size)
    results = {"preset": preset.name, "machine": machine_info(device), "plan": asdict(plan),
               "model": asdict(config), "parameters": count_parameters(GPT(config))}
    if not args.no_train:
        peak_dtype = getattr(torch, plan.precision)  # the plan's: bf16 on Ampere+, fp16 on a T4, else fp32
        results["peak_dtype"] = str(peak_dtype).removeprefix("torch.")
        results["peak_flops"] = matmul_peak(device, peak_dtype)
        results["train"] = bench_training(config, corpus.train_data, args.batch_size or preset.train.batch_size, device,
                                          plan, args.rounds, args.steps, results["peak_flops"])
    if not args.no_sample:
        results["sample"] = bench_sampling(config, device, args.new_tokens, args.rounds)
    if args.time_to_loss:
        results["time_to_loss"] = time_to_loss(args.ttl_preset, args.target, device, plan, corpus)
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    return results


def cmd_bench(args: argparse.Namespace) -> None:
    """``bench``: measure, print the table, and write ``--json`` if asked."""
    started = time.perf_counter()
    results = run_bench(args)
    results["machine"]["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(format_report(results))
    print(f"\n(bench took {results['machine']['bench_seconds']:.0f} s)")
    if args.json is not None:
        with atomic_write(args.json) as f:
            f.write((json.dumps(results, indent=2) + "\n").encode())
        print(f"wrote {args.json}")
