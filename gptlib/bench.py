"""``python -m gptlib bench``: how fast the readable model and the fast path train and sample, in alternating
rounds after a warm-up (load slows both alike); MFU; ``--time-to-loss``: `train_run`'s seconds to a loss."""

import argparse
import json
import os
import platform
import re
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
from gptlib.ladder import split_loss
from gptlib.model import GPT, count_parameters
from gptlib.presets import PRESETS, get_preset
from gptlib.run import Corpus, Run, describe_plan, load_corpus, memory_message, train_run
from gptlib.sampling import generate
from gptlib.speed import (SpeedConfig, autocast, backend_flags, cpu_bf16_instructions, keep_freed_memory,
                          speed_plan)
from gptlib.training import make_optimizer

_TRAIN = TrainConfig(learning_rate=1e-4)  # the timed steps' optimiser (its values do not change the speed)
CHECK_MARGIN = 0.03  # `time_to_loss` checks the whole val split once the estimate is this near the target


def spread(values: list[float]) -> dict:
    """Median, quartiles, min and max of ``values``: what a noisy measurement needs besides its median."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": min(values),
            "max": max(values), "n": len(values)}


def _record_load(machine: dict, when: str) -> None:
    """The 1-minute load average, and the 1, 5 and 15 minute ones, where the OS says them."""
    if hasattr(os, "getloadavg"):
        load = [round(x, 2) for x in os.getloadavg()]
        machine[f"load_average_{when}"], machine[f"load_averages_{when}"] = load[0], load


def _seconds(device: torch.device, fn, *args, repeat: int = 1) -> float:
    """Seconds of ``repeat`` calls of ``fn(*args)``, their queued GPU work included (not just launches)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda _: None
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    sync(device)
    return time.perf_counter() - t0


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
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    a @ b  # warm-up: library init, and the clock ramps up
    return 2 * size ** 3 / min(_seconds(device, torch.matmul, a, b) for _ in range(reps))


def _alternate(jobs: dict, rounds: int, device: torch.device, desc: str, progress: bool,
               repeat: int = 1) -> dict[str, list]:
    """Seconds of ``repeat`` calls of each ``jobs[name](round)``: a warm-up round, then ``rounds`` rounds."""
    from tqdm.auto import tqdm
    times = {name: [] for name in jobs}
    with tqdm(total=len(jobs) * (rounds + 1), desc=desc, disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:  # on stderr: the results go to stdout
        for r in range(rounds + 1):
            for name in list(jobs) if r % 2 == 0 else list(jobs)[::-1]:  # a neighbour's load slows all alike
                times[name].append(_seconds(device, jobs[name], r, repeat=repeat))
                bar.update(1)
    return {name: ts[1:] for name, ts in times.items()}  # round 0 was the warm-up


def _train_step(model: nn.Module, optimizer, x, y, speed: SpeedConfig | None, device: torch.device) -> None:
    with backend_flags(speed):  # TF32 (process-wide) on for the step if the plan says so, as it was after
        with autocast(speed, device):
            _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bench_training(config: GPTConfig, train_data: torch.Tensor, batch_size: int, device: torch.device,
                   plan: SpeedConfig, rounds: int, steps: int, progress: bool = False) -> tuple[dict, dict]:
    """The matmul peaks; ms per step and MFU of the readable `GPT` (fp32) and `FastGPT` with ``plan``."""
    peaks = {dt: matmul_peak(device, getattr(torch, dt)) for dt in ("float32", plan.autocast_dtype) if dt}
    fast_dtype = plan.autocast_dtype or "float32"
    torch.manual_seed(1337)
    readable = GPT(config).to(device).train()
    fast = fast_from_readable(readable, plan.attention).train()
    fast_step_model = torch.compile(fast) if plan.compile else fast
    opts = make_optimizer(readable, _TRAIN), make_optimizer(fast, _TRAIN, fused=plan.fused_adamw)
    x, y = get_batch(train_data, batch_size, config.block_size, torch.Generator().manual_seed(0), device)
    jobs = {"readable": lambda _: _train_step(readable, opts[0], x, y, None, device),  # a step on one batch
            "fast": lambda _: _train_step(fast_step_model, opts[1], x, y, plan, device)}
    times = _alternate(jobs, rounds, device, f"train {batch_size}x{config.block_size}: readable vs fast",
                       progress, repeat=steps)
    out = {"batch_size": batch_size, "block_size": config.block_size, "rounds": rounds,
           "steps_per_round": steps, "flops_per_token": flops_per_token(config), "fast_dtype": fast_dtype}
    for (name, ts), dtype in zip(times.items(), ("float32", fast_dtype)):
        ms = spread([1000 * t / steps for t in ts])  # per step
        out[f"{name}_ms_per_iter"], out[f"{name}_ms_spread"] = ms["median"], ms
        out[f"{name}_tok_s"] = 1000 * batch_size * config.block_size / ms["median"]
        out[f"{name}_mfu"] = out[f"{name}_tok_s"] * out["flops_per_token"] / peaks[dtype]
    out["speedup"] = out["fast_tok_s"] / out["readable_tok_s"]
    # each round's two measurements ran back to back: their ratio is the least disturbed by load
    out["speedup_rounds"] = spread([r / f for r, f in zip(times["readable"], times["fast"])])
    return peaks, out


def bench_sampling(config: GPTConfig, device: torch.device, new_tokens: int, rounds: int,
                   progress: bool = False, dtype: str | None = None) -> dict:
    """Tokens/s of the naive `generate`, `generate_cached` (a `FastGPT`) and, with ``dtype``, a copy in it."""
    torch.manual_seed(1337)
    model = GPT(config).to(device).eval()
    t0 = time.perf_counter()
    fast = fast_from_readable(model).eval()
    convert_seconds = time.perf_counter() - t0
    idx = torch.zeros((1, 1), dtype=torch.long, device=device)  # the lecture's prompt: token 0

    def job(fn, m):  # round 0 (the warm-up) is short
        return lambda r: fn(m, idx, min(new_tokens, 20) if r == 0 else new_tokens,
                            generator=torch.Generator(device=device).manual_seed(r))

    jobs = {"naive": job(generate, model), "cached": job(generate_cached, fast)}
    if dtype is not None:  # weights and cache in 16 bits
        low = fast_from_readable(model).eval().to(getattr(torch, dtype))
        jobs[f"cached_{dtype}"] = job(generate_cached, low)
    times = _alternate(jobs, rounds, device, f"sample {new_tokens} tokens: naive vs KV cache", progress)
    out = {"new_tokens": new_tokens, "rounds": rounds, "convert_seconds": convert_seconds}
    for name, ts in times.items():
        out[f"{name}_seconds"], out[f"{name}_seconds_spread"] = statistics.median(ts), spread(ts)
        out[f"{name}_tok_s"] = new_tokens / statistics.median(ts)
    out["plan_sampler"] = best = f"cached_{dtype}" if dtype is not None else "cached"
    out["speedup"] = out[f"{best}_tok_s"] / out["naive_tok_s"]
    out["speedup_rounds"] = spread([n / c for n, c in zip(times["naive"], times[best])])
    out["cache_speedup"] = out["cached_tok_s"] / out["naive_tok_s"]
    return out


def time_to_loss(preset_name: str, target: float, device: torch.device, plan: SpeedConfig,
                 corpus: Corpus, progress: bool = False, score=split_loss) -> dict:
    """Train ``preset_name`` with ``plan`` until the val split's ``score`` <= ``target`` (checks untimed)."""
    preset = get_preset(preset_name)
    block_size, checks = preset.model.block_size, []

    def check_full_split(state) -> None:
        h = state.history
        if h.val_loss[-1] > target + CHECK_MARGIN:
            return
        t0 = time.perf_counter()
        full = score(state.model, corpus.val_data, block_size, device=device)
        checks.append({"step": h.step[-1], "val_loss_estimate": h.val_loss[-1], "val_loss_full": full,
                       "seconds": h.elapsed[-1] - sum(c["check_seconds"] for c in checks),  # clock ran on
                       "check_seconds": time.perf_counter() - t0})
        if full <= target:  # the run ends after this evaluation
            state.stop = True

    log = (lambda line: print(line, file=sys.stderr)) if progress else (lambda _: None)
    run = Run.from_preset(preset, speed=plan, device=str(device))
    result = train_run(run, callbacks=[check_full_split], progress=progress, corpus=corpus, log=log)
    h, paused = result.history, sum(c["check_seconds"] for c in checks)
    hit = checks[-1] if checks and checks[-1]["val_loss_full"] <= target else {}
    out = {"preset": preset_name, "target": target, "reached": bool(hit), "seconds": hit.get("seconds"),
           "seconds_with_checks": h.elapsed[-1] + hit["check_seconds"] if hit else None,
           "step": hit.get("step"), "val_loss": hit.get("val_loss_estimate"),
           "val_loss_full": hit.get("val_loss_full"), "val_split_tokens": len(corpus.val_data),
           "eval_iters": preset.train.eval_iters, "eval_interval": preset.train.eval_interval,
           "check_margin": CHECK_MARGIN, "checks": checks, "final_step": h.step[-1],
           "final_val_loss": h.val_loss[-1], "final_seconds": h.elapsed[-1] - paused,
           "max_iters": preset.train.max_iters}
    if not hit:  # say how far it got, on the whole split too
        checked = checks and checks[-1]["step"] == h.step[-1]
        out["final_val_loss_full"] = (checks[-1]["val_loss_full"] if checked
                                      else score(result.model, corpus.val_data, block_size, device=device))
    return out


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on: date, device, threads, torch version, load average."""
    cpuinfo = Path("/proc/cpuinfo")
    found = re.search(r"^model name[^:]*:(.*)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else None
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": str(device),
            "torch": torch.version.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "cpu": found[1].strip() if found else platform.processor() or platform.machine()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if device.type == "cpu":  # freed memory kept, as every CPU training run does: both paths alike
        info["cpu_bf16"], info["keep_freed_memory"] = cpu_bf16_instructions() or "none", keep_freed_memory()
    _record_load(info, "start")
    return info


def _row(label: str, *numbers) -> str:
    return "  ".join([label.ljust(26)] + [str(c).rjust(w) for c, w in zip(numbers, (11, 13, 11, 7))])


def _table(r: dict, title: str, head: tuple, rows: list[tuple], speedup: str, digits: int) -> list[str]:
    """A titled table: its column heads, ``rows``, then ``r``'s speed-up with its per-round range."""
    q, x = r["speedup_rounds"], f"{r['speedup']:.{digits}f}x"
    last = _row(speedup, "", "", x, "") + f"   (per round: {q['min']:.{digits}f}-{q['max']:.{digits}f}x)"
    return ["", title, _row("", *head)] + [_row(*row) for row in rows] + [last]


def _train_lines(t: dict) -> list[str]:
    rows = [(label, f"{t[n + '_ms_per_iter']:,.1f}", "{q1:,.0f}-{q3:,.0f}".format(**t[n + "_ms_spread"]),
             f"{t[n + '_tok_s']:,.0f}", f"{100 * t[n + '_mfu']:.0f}%")
            for n, label in (("readable", "readable GPT, fp32"), ("fast", f"fast path, {t['fast_dtype']}"))]
    return _table(t, f"training: batch {t['batch_size']} x {t['block_size']} tokens, {t['steps_per_round']} "
                     f"step(s) per round, median of {t['rounds']} alternating rounds after a warm-up",
                  ("ms/iter", "q1-q3 ms", "tokens/s", "MFU"), rows, "speed-up", 2)


def _sample_lines(s: dict) -> list[str]:
    best = s["plan_sampler"]
    labels = {"naive": "naive generate", "cached": "KV cache, fp32"}
    labels.setdefault(best, f"KV cache, {best.removeprefix('cached_')}")
    rows = [(label, f"{s[n + '_seconds']:.2f}", "{min:.2f}-{max:.2f}".format(**s[n + "_seconds_spread"]),
             f"{s[n + '_tok_s']:,.0f}", "") for n, label in labels.items()]
    if best != "cached":
        rows.append(("speed-up, fp32 KV cache", "", "", f"{s['cache_speedup']:.1f}x", ""))
    return _table(s, f"sampling {s['new_tokens']} new tokens, median of {s['rounds']} alternating rounds",
                  ("seconds", "min-max s", "tokens/s", ""), rows, "speed-up, plan's", 1)


def _ttl_lines(r: dict) -> list[str]:
    where = f"on the whole val split ({r['val_split_tokens']:,} tokens)"
    line = (f"reached val {r['val_loss_full']:.4f} <= {r['target']} {where} at step {r['step']}, after "
            f"{r['seconds']:.1f} s of training ({r['seconds_with_checks']:.1f} s with the full-split checks)"
            if r["reached"] else
            f"did NOT reach val <= {r['target']} {where}: {r['final_val_loss_full']:.4f} after "
            f"{r['final_step']} steps, {r['final_seconds']:.1f} s")
    return ["", f"time to loss: preset {r['preset']} {line}",
            f"  plan: {describe_plan(SpeedConfig(**r['ttl_plan']))}"]


def format_report(results: dict) -> str:
    """The benchmark's results as a plain-text table with the speed-up ratios."""
    m, plan = results["machine"], results["plan"]
    lines = [f"gptlib bench, {m['date']}: preset {results['preset']} on {m['device']}"
             + (f" ({m['gpu']})" if "gpu" in m else f" ({m['cpu']}, {m['threads']} threads)")
             + f", torch {m['torch']}, load average {m.get('load_average_start', '?')} at start"
             + (f", {m['load_average_end']} at end" if "load_average_end" in m else "")
             + (", freed memory kept for reuse" if m.get("keep_freed_memory") else ""),
             f"speed plan: {describe_plan(SpeedConfig(**plan))}"]
    lines += [f"  why: {plan['why']}"] if plan.get("why") else []
    peaks = ", ".join(f"{dt} {flops / 1e9:,.0f} GFLOP/s" for dt, flops in results.get("peaks", {}).items())
    lines += [f"matmul peak: {peaks}"] if "peaks" in results else []
    for key, part in ("train", _train_lines), ("sample", _sample_lines), ("time_to_loss", _ttl_lines):
        if key in results:
            lines += part(results[key])
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    add = parser.add_argument
    add("--preset", default="lecture", help=f"model size to time; one of: {', '.join(PRESETS)} "
                                            f"(default: lecture)")
    add("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    add("--batch-size", type=int, default=None, help="default: the preset's")
    add("--rounds", type=int, default=5, help="timed training rounds (default 5)")
    add("--steps", type=int, default=1, help="training steps per round (default 1)")
    add("--new-tokens", type=int, default=500, help="tokens to sample (default 500)")
    add("--sample-rounds", type=int, default=3, help="timed sampling rounds (default 3)")
    add("--no-train", action="store_true", help="skip the training benchmark")
    add("--no-sample", action="store_true", help="skip the sampling benchmark")
    add("--time-to-loss", action="store_true",
        help="also train --ttl-preset until val loss <= --target and report the seconds")
    add("--ttl-preset", default="cpu", help="preset for --time-to-loss (default: cpu)")
    add("--target", type=float, default=1.88, help="val loss for --time-to-loss (default 1.88)")
    add("--compile", action=argparse.BooleanOptionalAction, default=None,
        help="override the speed plan's torch.compile choice")
    add("--no-progress", dest="progress", action="store_false", help="no progress bars on stderr")
    add("--json", type=path_arg, default=None, metavar="FILE", help="also write the results as JSON")


def run_bench(args: argparse.Namespace) -> dict:
    """Check ``args`` before anything is measured, run what they ask for, and return the results."""
    for name in ("rounds", "steps", "new_tokens", "sample_rounds", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:  # no --batch-size: the preset's
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not 0 < args.target < float("inf"):  # nan too
        raise ConfigError(f"--target must be a finite val loss > 0, got {args.target}")
    preset, ttl_preset = get_preset(args.preset), get_preset(args.ttl_preset)
    if args.json is not None:
        check_writable_file(args.json, "--json", "give a file like bench.json in a folder you can write to")
    device = pick_device(args.device)
    machine = machine_info(device)  # the load average before anything runs
    corpus = load_corpus()
    config = replace(preset.model, vocab_size=corpus.tokenizer.vocab_size)
    override = {} if args.compile is None else {"compile": args.compile}  # over the plan's own choice
    plan = replace(speed_plan(device, config), **override)
    if args.progress:
        print(f"speed plan for the {preset.name} preset: {plan.why}", file=sys.stderr)
    results = {"preset": preset.name, "machine": machine, "plan": asdict(plan),
               "model": asdict(config), "parameters": count_parameters(GPT(config))}
    if not args.no_train:
        batch = args.batch_size or preset.train.batch_size
        results["peaks"], results["train"] = bench_training(config, corpus.train_data, batch, device, plan,
                                                            args.rounds, args.steps, args.progress)
    if not args.no_sample:
        results["sample"] = bench_sampling(config, device, args.new_tokens, args.sample_rounds, args.progress,
                                           dtype=plan.autocast_dtype)
    if args.time_to_loss:
        ttl_plan = replace(speed_plan(device, ttl_preset.model), **override)
        ttl = time_to_loss(ttl_preset.name, args.target, device, ttl_plan, corpus, args.progress)
        results["time_to_loss"] = {**ttl, "ttl_plan": asdict(ttl_plan)}
    _record_load(machine, "end")
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
    print(format_report(results) + f"\n\n(bench took {results['machine']['bench_seconds']:.0f} s)")
    if args.json is not None:
        with atomic_write(args.json) as f:
            f.write((json.dumps(results, indent=2) + "\n").encode("utf-8"))
        print(f"wrote {args.json}")
