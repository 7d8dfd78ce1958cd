"""The busy-machine notice: `PaceWatch` speaks once, only when steps are far slower than the speed
probe's estimate, and changes nothing about the run.

Run: pytest tests/test_pace.py
"""

from dataclasses import replace

import torch

from gptlib import get_preset
from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.pace import TIMED, WARM_UP, PaceWatch, expected_step_seconds
from gptlib.speed import READABLE, SpeedConfig
from gptlib.training import train


def steps(watch: PaceWatch, n: int) -> None:
    for step in range(1, n + 1):
        watch(step)


def test_a_step_far_slower_than_expected_is_said_once_with_what_to_do():
    said = []
    steps(PaceWatch(expected=1e-9, log=said.append), 3 * (WARM_UP + TIMED))
    assert len(said) == 1
    assert said[0].startswith("slow: a training step takes") and "Training goes on" in said[0]
    assert "load average" in said[0] and f"torch uses {torch.get_num_threads()} threads" in said[0]
    assert ("OMP_NUM_THREADS=1" in said[0]) == (torch.get_num_threads() > 1)


def test_steps_at_the_expected_pace_are_not_mentioned():
    said = []
    steps(PaceWatch(expected=1e3, log=said.append), 3 * (WARM_UP + TIMED))
    assert said == []


def test_the_estimate_follows_the_plan_and_skips_what_the_probe_does_not_measure():
    preset = get_preset("cpu")
    model = replace(preset.model, vocab_size=65)
    fast = expected_step_seconds(model, preset.train, SpeedConfig(fast_model=True))
    readable = expected_step_seconds(model, preset.train, READABLE)
    assert fast > 0 and readable > 0
    # twice the batch, twice the estimate (tokens per step)
    double = expected_step_seconds(model, replace(preset.train, batch_size=2 * preset.train.batch_size),
                                   SpeedConfig(fast_model=True))
    assert abs(double - 2 * fast) < 1e-12
    assert expected_step_seconds(GPTConfig(n_embd=16, n_head=2, n_layer=1, block_size=8), preset.train,
                                 READABLE) is None  # too small to probe, as speed_plan says


def test_watching_changes_nothing_about_training():
    preset = get_preset("smoke")
    data = torch.randint(0, 65, (2000,))
    losses = []
    for watch in (None, PaceWatch(expected=1e-9, log=lambda _: None)):
        torch.manual_seed(0)
        model = GPT(replace(preset.model, vocab_size=65))
        state = train(model, data, data[:500], preset.train, block_size=preset.model.block_size,
                      progress=False, after_step=watch)
        losses.append((state.history.train_loss, state.history.val_loss))
    assert losses[0] == losses[1]
