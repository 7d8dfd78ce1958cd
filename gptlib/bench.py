"""``python -m gptlib bench``: how fast is the readable model, how fast is the fast path, on this machine.

    python -m gptlib bench                          # lecture preset: training and sampling
    python -m gptlib bench --json out.json          # the same, and the numbers as JSON
    python -m gptlib bench --time-to-loss           # also: seconds for the cpu preset to reach val 1.88

Method, made for a shared machine: one process; a warm-up for each contender, then rounds that
alternate between them (the order flips every round, so a neighbour that starts or stops working
slows both alike); the median of the rounds, with the spread (quartiles, min and max) and the load
average at start and end beside it. A bar per phase shows the progress on stderr. MFU (model FLOPs
utilisation) is the model's FLOPs per second over this machine's matmul peak in the precision the
path computes in (fp32 for the readable model, the plan's for the fast path), measured here by the
same command. FLOPs per token follow nanoGPT's ``estimate_mfu``: 6 N (N = parameters in matmuls) plus
12 L T C for the attention scores and the weighted sum, forward and backward.

``--time-to-loss`` trains the ``cpu`` preset through `gptlib.run.train_run` (the one run path) with
the speed plan. Whenever the recipe's own evaluation (a few batches) comes within
``CHECK_MARGIN`` of the target, the clock is paused and the model is evaluated on the *whole*
validation split (`full_split_loss`); the target counts as reached only when that full-split loss is
<= the target. ``seconds`` is the training wall time up to that evaluation (the recipe's steps and
its own evaluations; not start-up, not the paused full-split checks), ``seconds_with_checks`` the
same with the checks.

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
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn

from gptlib.batches import get_batch
from gptlib.config import GPTConfig, TrainConfig
from gptlib.device import out_of_memory, pick_device
from gptlib.errors import ConfigError, OutOfMemoryError
from gptlib.fast import fast_from_readable
from gptlib.files import atomic_write, check_writable_file, path_arg
from gptlib.kvcache import generate_cached
from gptlib.model import GPT, count_parameters
from gptlib.presets import PRESETS, get_preset
from gptlib.sampling import generate
from gptlib.run import Corpus, Run, load_corpus, memory_message, train_run
from gptlib.speed import SpeedConfig, autocast, backend_flags, keep_freed_memory, speed_plan
from gptlib.training import make_optimizer

# the optimiser settings for the timed steps (their values do not change the speed)
_TRAIN = TrainConfig(learning_rate=1e-4)
# `time_to_loss` checks the whole val split once the recipe's estimate is within this of the target
CHECK_MARGIN = 0.03


def _bar(total: int, desc: str, progress: bool):
    """A progress bar on stderr (the results go to stdout)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr, dynamic_ncols=True)


def spread(values: list[float]) -> dict:
    """Median, quartiles, min and max of ``values``: what a noisy measurement needs besides its median."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": min(values),
            "max": max(values), "n": len(values)}


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS does not say)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


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
    # TF32 (a process-wide switch) on for this step if its plan says so, as it was after it
    with backend_flags(speed):
        with autocast(speed, device):
            _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bench_training(config: GPTConfig, train_data: torch.Tensor, batch_size: int, device: torch.device,
                   plan: SpeedConfig, rounds: int, steps: int, peaks: dict, progress: bool = False) -> dict:
    """ms per training step of the readable `GPT` (fp32, plain AdamW) and of the fast path (`FastGPT`
    with ``plan``): a warm-up step each, then ``rounds`` rounds of ``steps`` steps that alternate
    between the two (order flipped every round); medians, spreads and per-round speed-ups.
    ``peaks`` maps a dtype name to this machine's matmul FLOP/s, for the MFU."""
    torch.manual_seed(1337)
    readable = GPT(config).to(device).train()
    fast = fast_from_readable(readable, plan.attention).train()
    fast_step_model = torch.compile(fast) if plan.compile else fast
    contenders = {
        "readable": (readable, make_optimizer(readable, _TRAIN), None),
        "fast": (fast_step_model, make_optimizer(fast, _TRAIN, fused=plan.fused_adamw), plan),
    }
    gen = torch.Generator().manual_seed(0)
    times = {name: [] for name in contenders}
    bar = _bar(2 * (rounds + 1), f"train {batch_size}x{config.block_size}: readable vs fast", progress)
    with bar:
        for r in range(rounds + 1):  # round 0 is the warm-up (and, with compile, the compilation)
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                model, opt, speed = contenders[name]
                x, y = get_batch(train_data, batch_size, config.block_size, gen, device)
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    _train_step(model, opt, x, y, speed, device)
                _sync(device)
                if r > 0:
                    times[name].append((time.perf_counter() - t0) / steps)
                bar.update(1)
    tokens = batch_size * config.block_size
    fpt = flops_per_token(config)
    fast_dtype = plan.autocast_dtype or "float32"
    out = {"batch_size": batch_size, "block_size": config.block_size, "rounds": rounds,
           "steps_per_round": steps, "flops_per_token": fpt, "fast_dtype": fast_dtype}
    for name, ts in times.items():
        sec = statistics.median(ts)
        out[f"{name}_ms_per_iter"] = 1000 * sec
        out[f"{name}_ms_spread"] = {k: (1000 * v if k != "n" else v) for k, v in spread(ts).items()}
        out[f"{name}_tok_s"] = tokens / sec
        out[f"{name}_mfu"] = tokens / sec * fpt / peaks["float32" if name == "readable" else fast_dtype]
    out["speedup"] = out["fast_tok_s"] / out["readable_tok_s"]
    # each round's two measurements ran back to back: their ratio is the least disturbed by load
    out["speedup_rounds"] = spread([r / f for r, f in zip(times["readable"], times["fast"])])
    return out


def bench_sampling(config: GPTConfig, device: torch.device, new_tokens: int, rounds: int,
                   progress: bool = False, dtype: str | None = None) -> dict:
    """Tokens/s of the naive `generate` (readable `GPT`) and of `generate_cached` (KV cache), sampling
    ``new_tokens`` from a one-token prompt: a short warm-up, then ``rounds`` alternating rounds.

    The KV cache runs on a `FastGPT` made once from the readable model's weights (as loading a
    checkpoint for sampling does); that conversion is a one-time cost, timed on its own
    (``convert_seconds``), not part of the tokens/s. With ``dtype`` (the speed plan's 16-bit
    precision) a third contender samples with the KV cache from a copy of that model cast to it
    (``cached_<dtype>``; see `gptlib.kvcache`), and ``speedup`` is that one's, the speed plan's
    sampler; ``cache_speedup`` is always the fp32 cache's alone."""
    torch.manual_seed(1337)
    model = GPT(config).to(device).eval()
    t0 = time.perf_counter()
    fast = fast_from_readable(model).eval()
    convert_seconds = time.perf_counter() - t0
    idx = torch.zeros((1, 1), dtype=torch.long, device=device)  # the lecture's prompt: token 0
    contenders = {"naive": (generate, model), "cached": (generate_cached, fast)}
    if dtype is not None:
        low = fast_from_readable(model).eval().to(getattr(torch, dtype))  # weights and cache in 16 bits
        contenders[f"cached_{dtype}"] = (generate_cached, low)
    times = {name: [] for name in contenders}
    with _bar(len(contenders) * (rounds + 1), f"sample {new_tokens} tokens: naive vs KV cache", progress) as bar:
        for r in range(rounds + 1):
            n = min(new_tokens, 20) if r == 0 else new_tokens  # round 0: a short warm-up
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                fn, m = contenders[name]
                gen = torch.Generator(device=device).manual_seed(r)
                _sync(device)
                t0 = time.perf_counter()
                fn(m, idx, n, generator=gen)
                _sync(device)
                if r > 0:
                    times[name].append(time.perf_counter() - t0)
                bar.update(1)
    out = {"new_tokens": new_tokens, "rounds": rounds, "convert_seconds": convert_seconds}
    for name, ts in times.items():
        out[f"{name}_seconds"] = statistics.median(ts)
        out[f"{name}_seconds_spread"] = spread(ts)
        out[f"{name}_tok_s"] = new_tokens / statistics.median(ts)
    best = f"cached_{dtype}" if dtype is not None else "cached"  # the speed plan's sampler
    out["plan_sampler"] = best
    out["speedup"] = out[f"{best}_tok_s"] / out["naive_tok_s"]
    out["speedup_rounds"] = spread([n / c for n, c in zip(times["naive"], times[best])])
    out["cache_speedup"] = out["cached_tok_s"] / out["naive_tok_s"]
    return out


@torch.no_grad()
def full_split_loss(model: nn.Module, data: torch.Tensor, block_size: int,
                    device: torch.device | str | None = None, batch_size: int = 64) -> float:
    """The mean loss over *every* token of ``data`` (e.g. the whole val split), in eval mode and fp32.

    The split is cut into consecutive chunks of ``block_size`` (the last one shorter), so each token
    after the first is predicted exactly once, from the tokens before it in its chunk: the quantity
    `gptlib.training.estimate_loss` estimates from a few random chunks, without the sampling noise.
    The batches go to ``device``, by default the model's own.
    """
    device = next(model.parameters()).device if device is None else device
    was_training = model.training
    model.eval()
    n = len(data) - 1  # targets: data[1:]
    total = 0.0
    full = n // block_size  # chunks of exactly block_size tokens
    starts = torch.arange(full) * block_size
    offsets = torch.arange(block_size)
    for i in range(0, full, batch_size):
        rows = starts[i:i + batch_size, None] + offsets  # (b,T) positions
        x, y = data[rows].to(device), data[rows + 1].to(device)
        _, loss = model(x, y)  # the mean over b*T tokens
        total += loss.item() * rows.numel()
    rest = n - full * block_size
    if rest:
        x = data[None, full * block_size:n].to(device)
        y = data[None, full * block_size + 1:n + 1].to(device)
        total += model(x, y)[1].item() * rest
    model.train(was_training)
    return total / n


def time_to_loss(preset_name: str, target: float, device: torch.device, plan: SpeedConfig,
                 corpus: Corpus, progress: bool = False) -> dict:
    """Train ``preset_name`` with ``plan`` until the loss on the whole val split is <= ``target``.

    The recipe's evaluations (a few batches) decide when to look: an estimate within `CHECK_MARGIN`
    of the target pauses the clock for `full_split_loss`. ``seconds``: training wall time until the
    check that succeeded (steps and the recipe's evaluations; start-up and the checks not counted).
    """
    preset = get_preset(preset_name)
    block_size = preset.model.block_size
    checks = []
    hit = {}
    paused = [0.0]  # seconds spent in checks so far; the training clock ran on through them

    def check_full_split(state) -> None:
        h = state.history
        if hit or h.val_loss[-1] > target + CHECK_MARGIN:
            return
        t0 = time.perf_counter()
        full = full_split_loss(state.model, corpus.val_data, block_size, device)
        spent = time.perf_counter() - t0
        seconds = h.elapsed[-1] - paused[0]
        checks.append({"step": h.step[-1], "val_loss_estimate": h.val_loss[-1], "val_loss_full": full,
                       "seconds": seconds, "check_seconds": spent})
        paused[0] += spent
        if full <= target:
            hit.update(step=h.step[-1], seconds=seconds, seconds_with_checks=h.elapsed[-1] + spent,
                       val_loss=h.val_loss[-1], val_loss_full=full)
            state.stop = True

    log = (lambda line: print(line, file=sys.stderr)) if progress else (lambda _: None)
    run = Run.from_preset(preset, speed=plan, device=str(device))
    result = train_run(run, callbacks=[check_full_split], progress=progress, corpus=corpus, log=log)
    h = result.history
    out = {"preset": preset_name, "target": target, "reached": bool(hit), "seconds": hit.get("seconds"),
           "seconds_with_checks": hit.get("seconds_with_checks"), "step": hit.get("step"),
           "val_loss": hit.get("val_loss"), "val_loss_full": hit.get("val_loss_full"),
           "val_split_tokens": len(corpus.val_data), "eval_iters": preset.train.eval_iters,
           "eval_interval": preset.train.eval_interval, "check_margin": CHECK_MARGIN, "checks": checks,
           "final_step": h.step[-1], "final_val_loss": h.val_loss[-1],
           "final_seconds": h.elapsed[-1] - paused[0], "max_iters": preset.train.max_iters}
    if not hit:  # say how far it got, on the whole split too
        out["final_val_loss_full"] = (checks[-1]["val_loss_full"] if checks and checks[-1]["step"] == h.step[-1]
                                      else full_split_loss(result.model, corpus.val_data, block_size, device))
    return out


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on: date, device, threads, torch version, load average."""
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": _cpu_name(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if device.type == "cpu":
        from gptlib.speed import cpu_bf16_instructions

        info["cpu_bf16"] = cpu_bf16_instructions() or "none"
    load = _load()
    if load is not None:
        info["load_average_start"] = load[0]  # the 1-minute load average
        info["load_averages_start"] = load  # 1, 5 and 15 minutes
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


def _ms(spread_ms: dict | None) -> str:
    return "" if spread_ms is None else f"{spread_ms['q1']:,.0f}-{spread_ms['q3']:,.0f}"


def _per_round(r: dict | None, digits: int) -> str:
    # results written before the spread was recorded (an older bench) have none: print none
    return "" if r is None else f"   (per round: {r['min']:.{digits}f}-{r['max']:.{digits}f}x)"


def format_report(results: dict) -> str:
    """The benchmark's results as a plain-text table with the speed-up ratios."""
    m = results["machine"]
    lines = [f"gptlib bench, {m['date']}: preset {results['preset']} on {m['device']}"
             + (f" ({m['gpu']})" if "gpu" in m else f" ({m['cpu']}, {m['threads']} threads)")
             + f", torch {m['torch']}, load average {m.get('load_average_start', '?')} at start"
             + (f", {m['load_average_end']} at end" if "load_average_end" in m else "")
             + (", freed memory kept for reuse" if m.get("keep_freed_memory") else "")]
    plan = results["plan"]
    lines.append(f"speed plan: {_describe(plan)}")
    if plan.get("why"):
        lines.append(f"  why: {plan['why']}")
    if "peaks" in results:
        lines.append("matmul peak: " + ", ".join(f"{dtype} {flops / 1e9:,.0f} GFLOP/s"
                                                 for dtype, flops in results["peaks"].items()))
    w = (26, 11, 13, 11, 7)
    if "train" in results:
        t = results["train"]
        lines += ["", f"training: batch {t['batch_size']} x {t['block_size']} tokens, {t['steps_per_round']} "
                      f"step(s) per round, median of {t['rounds']} alternating rounds after a warm-up",
                  _row(("", "ms/iter", "q1-q3 ms", "tokens/s", "MFU"), w)]
        for name, label in (("readable", "readable GPT, fp32"), ("fast", f"fast path, {t.get('fast_dtype', 'its plan')}")):
            lines.append(_row((label, f"{t[name + '_ms_per_iter']:,.1f}", _ms(t.get(name + '_ms_spread')),
                               f"{t[name + '_tok_s']:,.0f}", f"{100 * t[name + '_mfu']:.0f}%"), w))
        lines.append(_row(("speed-up", "", "", f"{t['speedup']:.2f}x", ""), w)
                     + _per_round(t.get("speedup_rounds"), 2))
    if "sample" in results:
        s = results["sample"]
        lines += ["", f"sampling {s['new_tokens']} new tokens, median of {s['rounds']} alternating rounds",
                  _row(("", "seconds", "min-max s", "tokens/s", ""), w)]
        best = s.get("plan_sampler", "cached")  # results from before the 16-bit sampler have none
        names = [("naive", "naive generate"), ("cached", "KV cache, fp32")]
        if best != "cached":
            names.append((best, f"KV cache, {best.removeprefix('cached_')}"))
        for name, label in names:
            sp = s.get(name + "_seconds_spread")
            spread = "" if sp is None else f"{sp['min']:.2f}-{sp['max']:.2f}"
            lines.append(_row((label, f"{s[name + '_seconds']:.2f}", spread,
                               f"{s[name + '_tok_s']:,.0f}", ""), w))
        if best != "cached":
            lines.append(_row(("speed-up, fp32 KV cache", "", "", f"{s['cache_speedup']:.1f}x", ""), w))
        lines.append(_row(("speed-up" + (", plan's" if "plan_sampler" in s else ""), "", "",
                           f"{s['speedup']:.1f}x", ""), w) + _per_round(s.get("speedup_rounds"), 1))
    if "time_to_loss" in results:
        r = results["time_to_loss"]
        lines.append("")
        full = "val_split_tokens" in r  # older results: judged on the recipe's own estimate
        where = (f"on the whole val split ({r['val_split_tokens']:,} tokens)" if full
                 else "on the recipe's estimate (a few batches)")
        if r["reached"]:
            checks = f" ({r['seconds_with_checks']:.1f} s with the full-split checks)" if full else ""
            lines.append(f"time to loss: preset {r['preset']} reached val "
                         f"{r['val_loss_full' if full else 'val_loss']:.4f} <= {r['target']} {where} at step "
                         f"{r['step']}, after {r['seconds']:.1f} s of training{checks}")
        else:
            lines.append(f"time to loss: preset {r['preset']} did NOT reach val <= {r['target']} {where}: "
                         f"{r['final_val_loss_full' if full else 'final_val_loss']:.4f} after "
                         f"{r['final_step']} steps, {r['final_seconds']:.1f} s")
        if r.get("ttl_plan"):
            lines.append(f"  plan: {_describe(r['ttl_plan'])}")
    return "\n".join(lines)


def _describe(plan: dict) -> str:
    from gptlib.run import describe_plan

    return describe_plan(SpeedConfig(**plan))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.add_argument("--preset", default="lecture", help=f"model size to time; one of: {', '.join(PRESETS)} "
                        f"(default: lecture)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--rounds", type=int, default=5, help="timed training rounds (default 5)")
    parser.add_argument("--steps", type=int, default=1, help="training steps per round (default 1)")
    parser.add_argument("--new-tokens", type=int, default=500, help="tokens to sample (default 500)")
    parser.add_argument("--sample-rounds", type=int, default=3, help="timed sampling rounds (default 3)")
    parser.add_argument("--no-train", action="store_true", help="skip the training benchmark")
    parser.add_argument("--no-sample", action="store_true", help="skip the sampling benchmark")
    parser.add_argument("--time-to-loss", action="store_true",
                        help="also train --ttl-preset until val loss <= --target and report the seconds")
    parser.add_argument("--ttl-preset", default="cpu", help="preset for --time-to-loss (default: cpu)")
    parser.add_argument("--target", type=float, default=1.88, help="val loss for --time-to-loss (default 1.88)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="override the speed plan's torch.compile choice")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars on stderr")
    parser.add_argument("--json", type=path_arg, default=None, metavar="FILE", help="also write the results as JSON")


def check_args(args: argparse.Namespace) -> None:
    """Everything ``bench`` can check before it measures: numbers, preset names and where ``--json``
    goes (a folder, or a folder that cannot be written, fails now, not after the measurements)."""
    for name in ("rounds", "steps", "new_tokens", "sample_rounds"):
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
    ttl_preset = get_preset(args.ttl_preset) if args.time_to_loss else None
    progress = getattr(args, "progress", False)
    machine = machine_info(device)  # the load average before anything runs
    if device.type == "cpu":  # as every CPU training run does; the readable and the fast path alike
        machine["keep_freed_memory"] = keep_freed_memory()
    corpus = load_corpus()
    config = replace(preset.model, vocab_size=corpus.tokenizer.vocab_size)

    def plan_for(model_config: GPTConfig) -> SpeedConfig:
        plan = speed_plan(device, model_config)
        return plan if args.compile is None else replace(plan, compile=args.compile)

    plan = plan_for(config)
    if progress:
        print(f"speed plan for the {preset.name} preset: {plan.why}", file=sys.stderr)
    results = {"preset": preset.name, "machine": machine, "plan": asdict(plan),
               "model": asdict(config), "parameters": count_parameters(GPT(config))}
    if not args.no_train:
        dtypes = ["float32"] + ([plan.autocast_dtype] if plan.autocast_dtype else [])
        results["peaks"] = {dtype: matmul_peak(device, getattr(torch, dtype)) for dtype in dtypes}
        results["train"] = bench_training(config, corpus.train_data, args.batch_size or preset.train.batch_size,
                                          device, plan, args.rounds, args.steps, results["peaks"], progress)
    if not args.no_sample:
        results["sample"] = bench_sampling(config, device, args.new_tokens, args.sample_rounds, progress,
                                           dtype=plan.autocast_dtype)
    if ttl_preset is not None:
        ttl_plan = plan_for(ttl_preset.model)
        results["time_to_loss"] = time_to_loss(ttl_preset.name, args.target, device, ttl_plan, corpus, progress)
        results["time_to_loss"]["ttl_plan"] = asdict(ttl_plan)
    load = _load()
    if load is not None:
        results["machine"]["load_average_end"] = load[0]
        results["machine"]["load_averages_end"] = load
    return results


def cmd_bench(args: argparse.Namespace) -> None:
    """``bench``: measure, print the table, and write ``--json`` if asked."""
    started = time.perf_counter()
    try:
        results = run_bench(args)
    except (MemoryError, RuntimeError) as err:  # a --batch-size or --preset too big for the device
        if not out_of_memory(err):
            raise
        preset = get_preset(args.preset)
        raise OutOfMemoryError(memory_message(err, pick_device(args.device), preset.model,
                                              args.batch_size or preset.train.batch_size) +
                               "; bench sets them with --batch-size and --preset") from None
    results["machine"]["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(format_report(results))
    print(f"\n(bench took {results['machine']['bench_seconds']:.0f} s)")
    if args.json is not None:
        with atomic_write(args.json) as f:
            f.write((json.dumps(results, indent=2) + "\n").encode("utf-8"))
        print(f"wrote {args.json}")
