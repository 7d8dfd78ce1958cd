"""The fast path against nanoGPT's model on one GPU, at the lecture's shape (run by scripts/gpu_run.sh).

    python scripts/gpu_speed.py --json speed.json [--nanogpt .nanogpt] [--rounds 5] [--steps 50]
    python scripts/gpu_speed.py --json /tmp/s.json --device cpu --preset smoke --steps 2 --rounds 1

One process; each round times ``--steps`` training steps of every contender of a group (eager, then
compiled), the order alternating from round to round; the median of ``--rounds`` rounds after a
warm-up round (which also compiles).
Every contender trains the same way: batch 64 x 256, dropout 0.2, bf16 autocast, TF32 (scoped by
`gptlib.speed.backend_flags`), fused AdamW, and draws each step's batch on the GPU (`draw_batch`):

- ``nanogpt`` / ``nanogpt_compiled``: nanoGPT's ``model.py`` (bias=False, its own fused AdamW), when
  ``--nanogpt`` names a folder holding it (it is not part of this project: carry a copy);
- ``fast`` / ``fast_compiled``: `FastGPT`;
- ``train_loop``: `gptlib.training.train` itself with `FastGPT` (its divergence guard, schedule and
  progress bar included): the ms per step of the real loop, from the elapsed time between two
  evaluations of one batch each.

Writes ms/step, tokens/s and MFU (against the bf16 matmul peak measured here) per contender, and
prints a table. Without CUDA it says so and exits 2 (the second line above tries the code on a CPU).
"""

import argparse
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from gptlib.batches import draw_batch
from gptlib.bench import flops_per_token, matmul_peak
from gptlib.data import load_text
from gptlib.fast import FastGPT
from gptlib.presets import get_preset
from gptlib.speed import autocast, backend_flags, cuda_plan, with_precision
from gptlib.tokenizer import CharTokenizer
from gptlib.training import make_optimizer, train


def nanogpt_model(folder: Path, config, device):
    """nanoGPT's GPT at ``config``'s shape (no bias, as its shakespeare_char config) and its optimizer."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    conf = module.GPTConfig(block_size=config.block_size, vocab_size=config.vocab_size, n_layer=config.n_layer,
                            n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout, bias=False)
    model = module.GPT(conf).to(device)
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), device.type)
    return model, optimizer


def step(model, optimizer, data, batch_size, block_size, generator, plan, device):
    """One training step as the loop takes it: a batch drawn on the device, forward under autocast,
    backward, the optimizer; no wait for the device."""
    x, y = draw_batch(data, batch_size, block_size, generator)
    with autocast(plan, device):
        _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def time_train_loop(config, preset, data, plan, device, steps: int) -> float:
    """ms per step of `train` itself: two evaluations (one batch each), ``steps`` steps apart."""
    n = len(data)
    run_config = replace(preset.train, max_iters=2 * steps, eval_interval=steps, eval_iters=1)
    torch.manual_seed(0)
    state = train(FastGPT(config), data[:int(0.9 * n)], data[int(0.9 * n):], run_config,
                  block_size=config.block_size, device=device, progress=False, speed=plan)
    elapsed = state.history.elapsed
    return 1000 * (elapsed[1] - elapsed[0]) / steps  # the second stretch: warmed up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--nanogpt", type=Path, default=None, help="folder with nanoGPT's model.py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--no-compile", action="store_true", help="eager contenders only")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="lecture", help="the shape and batch (smoke: a quick try)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; try the code with --device cpu --steps 2", file=sys.stderr)
        return 2
    preset = get_preset(args.preset)
    tokenizer = CharTokenizer.from_text(text := load_text())
    config = replace(preset.model, vocab_size=tokenizer.vocab_size)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long, device=device)
    plan = cuda_plan(torch.cuda.get_device_capability(device)) if device.type == "cuda" else \
        with_precision(cuda_plan((8, 0)), "bfloat16")
    B, T = preset.train.batch_size, config.block_size
    contenders = {}
    torch.manual_seed(1337)
    fast = FastGPT(config).to(device).train()
    contenders["fast"] = (fast, make_optimizer(fast, preset.train, fused=True))
    if args.nanogpt is not None and (args.nanogpt / "model.py").is_file():
        nano, nano_opt = nanogpt_model(args.nanogpt, config, device)
        contenders["nanogpt"] = (nano.train(), nano_opt)
    else:
        print(f"nanoGPT's model.py not found in {args.nanogpt}: timing gptlib alone")
    if not args.no_compile:
        for name in list(contenders):
            model, opt = contenders[name]
            contenders[f"{name}_compiled"] = (torch.compile(model), opt)
    gen = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {name: [] for name in contenders}
    first_round = {}
    fpt = flops_per_token(config)
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "batch": [B, T], "rounds": args.rounds, "steps_per_round": args.steps,
           "plan": repr(plan), "flops_per_token": fpt, "contenders": {}}

    def record(ms_of: dict, peak) -> None:
        """Write what is measured so far (a step stopped at its time cap keeps the rounds it ran)."""
        out["bf16_peak_flops"] = peak
        for name, ms in ms_of.items():
            tok_s = B * T / (ms / 1000)
            out["contenders"][name] = {"ms_per_step": ms, "tokens_per_s": tok_s,
                                       "mfu": tok_s * fpt / peak if peak else None,
                                       "ms_rounds": [1000 * t for t in times.get(name, [])],
                                       "first_round_s": first_round.get(name)}
        for ours, theirs in (("fast", "nanogpt"), ("fast_compiled", "nanogpt_compiled")):
            if ours in ms_of and theirs in ms_of:
                out[f"{ours}_vs_{theirs}"] = ms_of[theirs] / ms_of[ours]
        args.json.write_text(json.dumps(out, indent=2) + "\n")

    with backend_flags(plan):
        peak = matmul_peak(device, torch.bfloat16) if device.type == "cuda" else None
    # the real loop first (eager, no compiling): its number is in the file whatever comes later
    ms_of = {"train_loop": time_train_loop(config, preset, data, plan, device, 4 * args.steps)}
    record(ms_of, peak)
    # eager first, then compiled: each group alternates within itself, and its numbers are written
    # before the next group compiles (the step's time cap may stop a long compilation)
    groups = [[n for n in contenders if not n.endswith("_compiled")],
              [n for n in contenders if n.endswith("_compiled")]]
    with backend_flags(plan):
        for group in filter(None, groups):
            for r in range(args.rounds + 1):  # round 0 warms up (and compiles)
                for name in group if r % 2 == 0 else reversed(group):
                    model, opt = contenders[name]
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(args.steps if r else 3):
                        step(model, opt, data, B, T, gen, plan, device)
                    sync()
                    if r:
                        times[name].append((time.perf_counter() - t0) / args.steps)
                    else:
                        first_round[name] = time.perf_counter() - t0
                if r:
                    ms_of.update({name: 1000 * statistics.median(times[name]) for name in group})
                    record(ms_of, peak)
                print(f"round {r}: " + ", ".join(f"{n} {1000 * times[n][-1]:.2f} ms" for n in group if times[n])
                      + ", ".join(f"{n} first round {first_round[n]:.1f} s" for n in group if not r),
                      flush=True)
    print(f"\n{'contender':<20}{'ms/step':>10}{'tokens/s':>14}{'MFU':>8}{'first round s':>15}")
    for name, c in out["contenders"].items():
        mfu = f"{c['mfu']:.0%}" if c["mfu"] is not None else "-"
        first = f"{c['first_round_s']:.1f}" if c["first_round_s"] is not None else "-"
        print(f"{name:<20}{c['ms_per_step']:>10.2f}{c['tokens_per_s']:>14,.0f}{mfu:>8}{first:>15}")
    for key, value in out.items():
        if key.endswith(("_vs_nanogpt", "_vs_nanogpt_compiled")):
            print(f"{key}: {value:.2f}x (nanoGPT's ms / ours)")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
