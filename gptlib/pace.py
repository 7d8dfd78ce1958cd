"""Training on a busy CPU: `PaceWatch` says early, once, when steps run far slower than chapter 6's speed
probe expects on one idle thread, and what to do; it changes nothing (a thread count would change losses)."""

import os
import time
from dataclasses import dataclass
from collections.abc import Callable

import torch

from gptlib.config import GPTConfig, TrainConfig
from gptlib.speed import PROBE_MIN_EMBD, SpeedConfig, probe_cpu

SLOW = 3.0  # a step this many times the one-idle-thread estimate is far slower than this CPU runs it
WARM_UP = 2  # steps not timed: the first steps allocate memory and pick kernels
TIMED = 10  # steps timed before deciding


def expected_step_seconds(model: GPTConfig, train: TrainConfig, plan: SpeedConfig) -> float | None:
    """A training step's seconds on one idle thread from the probe's time for one block (an underestimate:
    n_layer blocks of batch x block_size tokens); None where the probe does not measure."""
    probe = probe_cpu(model) if model.n_embd >= PROBE_MIN_EMBD else None  # narrower: not measured
    key = (("fast", plan.precision, plan.attention) if plan.fast_model else ("readable", "float32", "heads"))
    if probe is None or key not in probe.seconds:
        return None
    return model.n_layer * train.batch_size * model.block_size / probe.tokens * probe.seconds[key]


@dataclass
class PaceWatch:
    """Called after every step with its number: once, after `WARM_UP` + `TIMED` steps, ``log``s the
    numbers, the likely cause and what to do if they took `SLOW` times ``expected`` seconds a step."""

    expected: float
    log: Callable[[str], None] = print
    first: int | None = None  # the step that starts the clock
    t0: float = 0.0
    done: bool = False

    def __call__(self, step: int) -> None:
        if self.first is None:
            self.first = step + WARM_UP
        elif step == self.first:
            self.t0 = time.perf_counter()
        if self.done or step < self.first + TIMED:
            return
        self.done = True
        seconds, expected = (time.perf_counter() - self.t0) / (step - self.first), self.expected
        if seconds <= SLOW * expected:
            return
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        threads = torch.get_num_threads()
        advice = ("start Python with OMP_NUM_THREADS=1: one thread suffers far less from sharing a busy "
                  "machine (the losses then differ from this run's in the last digits)" if threads > 1
                  else "run it when the machine is quieter")
        self.log(f"slow: a training step takes {seconds:.2f} s, {seconds / expected:.0f}x the {expected:.3f} "
                 f"s that this CPU's speed probe expects on one idle thread; the machine looks busy (load "
                 f"average {load:.1f} on {os.cpu_count()} cores, torch uses {threads} threads). Close other "
                 f"programs, or {advice}. Training goes on.")
