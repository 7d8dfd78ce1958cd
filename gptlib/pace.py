"""Training on a busy CPU: say early, once, when steps run far slower than this CPU can run them.

Chapter 6's speed probe (`gptlib.speed.probe_cpu`) times one transformer block on one thread by its
CPU time, so other programs barely move it: it tells how fast this CPU trains when the run has a core
to itself. From it, `expected_step_seconds` estimates one training step on one idle thread. When the
first steps of a run take several times that, other programs are taking the cores: torch's threads
wait for each other at every operation, and a step can run 4x to 20x slower. `PaceWatch` says so
after the first few steps, with what to do, and training goes on unchanged (nothing about the run
changes: only a message is printed).

Why it does not pick the thread count itself: on a shared 2-core machine (load average 6 to 11),
the `cpu` preset's step took 2.5 to 9.2 s with torch's 2 threads and 0.24 to 0.96 s with one, but
the thread count changes how sums are split, so the losses differ in the last digits (1 vs 2
threads, 15 steps: weights apart by up to 1.2e-3). A run's numbers must not depend on the load.
"""

import os
import time
from dataclasses import dataclass
from collections.abc import Callable

import torch

from gptlib.config import GPTConfig, TrainConfig
from gptlib.speed import SpeedConfig, probe_cpu

SLOW = 3.0  # a step this many times the one-idle-thread estimate is far slower than this CPU runs it
WARM_UP = 2  # steps not timed: the first steps allocate memory and pick kernels
TIMED = 10  # steps timed before deciding


def expected_step_seconds(model: GPTConfig, train: TrainConfig, plan: SpeedConfig) -> float | None:
    """One training step of ``model`` at ``train.batch_size`` with ``plan``, estimated for one idle
    thread of this CPU from the probe's time for one block (n_layer blocks, batch x block_size
    tokens; the embeddings, the output layer and the optimiser are left out, so this is an
    underestimate). None where the probe does not measure (a model under 64 wide, as `speed_plan`)."""
    if model.n_embd < 64:
        return None
    probe = probe_cpu(model)
    key = (("fast", plan.precision, plan.attention) if plan.fast_model else ("readable", "float32", "heads"))
    if key not in probe.seconds:
        return None
    return model.n_layer * train.batch_size * model.block_size / probe.tokens * probe.seconds[key]


def slow_message(seconds: float, expected: float) -> str:
    """What `PaceWatch` prints: the numbers, the likely cause and what to do."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = torch.get_num_threads()
    advice = ("start Python with OMP_NUM_THREADS=1: one thread suffers far less from sharing a busy "
              "machine (the losses then differ from this run's in the last digits)" if threads > 1
              else "run it when the machine is quieter")
    return (f"slow: a training step takes {seconds:.2f} s, {seconds / expected:.0f}x the {expected:.3f} s "
            f"that this CPU's speed probe expects on one idle thread; the machine looks busy (load average "
            f"{load:.1f} on {os.cpu_count()} cores, torch uses {threads} threads). Close other programs, or "
            f"{advice}. Training goes on.")


@dataclass
class PaceWatch:
    """Called after every training step with the step number; after `WARM_UP` + `TIMED` steps it
    compares their wall-clock time with ``expected`` seconds a step and, if they are `SLOW` times
    slower, calls ``log`` with `slow_message`. Once per run, then never again."""

    expected: float
    log: Callable[[str], None] = print
    started: tuple[int, float] | None = None
    done: bool = False

    def __call__(self, step: int) -> None:
        if self.done:
            return
        if self.started is None:
            self.started = (step + WARM_UP, 0.0)  # the step to start the clock at
            return
        first, t0 = self.started
        if step == first:
            self.started = (first, time.perf_counter())
        elif step >= first + TIMED:
            self.done = True
            seconds = (time.perf_counter() - t0) / (step - first)
            if seconds > SLOW * self.expected:
                self.log(slow_message(seconds, self.expected))
