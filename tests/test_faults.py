"""Faults that really happen: `python -m gptlib train` killed with SIGKILL mid-run and mid-save, then
``--resume``; and the same seed giving the same losses and samples in two separate processes.

Every run here is the smoke model with dropout on, 200 steps, a checkpoint every 20. A killed and
resumed run must end exactly where an uninterrupted one ends: same losses, weights and sample.
Each child process runs torch on one thread (OMP_NUM_THREADS=1): the smoke model is fastest that
way, and on a busy 2-core machine two threads per process can make it 50x slower.

Run: pytest tests/test_faults.py
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptlib.checkpoint import load_checkpoint

from helpers import wait_for

TIMEOUT = 180  # seconds; generous, the machine running the tests may be busy

# A run of `python -m gptlib train` with a test-only pause in its second resumable save, so the test
# can kill it there: "writing" stops with half the bytes in the temp file, "renaming" stops with the
# whole temp file written and fsynced, just before the rename. Only this child process is patched.
PAUSED_TRAIN = r"""
import io, os, sys, time
import torch
from gptlib.cli import main

marker, point, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
real_save, real_replace = torch.save, os.replace
seen = {"save": 0, "replace": 0}

def pause():
    open(marker, "w").close()
    time.sleep(600)  # the test kills the process during this sleep

def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and "optimizer" in obj.get("extra", {}):
        seen["save"] += 1
        if point == "writing" and seen["save"] == 2:
            buffer = io.BytesIO()
            real_save(obj, buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            pause()
    return real_save(obj, f, *args, **kwargs)

def replace(src, dst):
    if str(dst).endswith("last.pt"):
        seen["replace"] += 1
        if point == "renaming" and seen["replace"] == 2:
            pause()
    return real_replace(src, dst)

torch.save, os.replace = save, replace
sys.exit(main(argv))
"""


def train_args(out: Path, data_args: list[str]) -> list[str]:
    return ["train", "--preset", "smoke", "--out", str(out), "--device", "cpu", "--dropout", "0.1",
            "--max-iters", "200", "--eval-interval", "20", "--sample-tokens", "40", *data_args]


def resume_args(out: Path, data_args: list[str]) -> list[str]:
    return ["train", "--resume", "--out", str(out), "--device", "cpu", "--sample-tokens", "40", *data_args]


def child_env() -> dict:
    """This process's environment (GPTLIB_DATA included), with torch on one thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def gptlib_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptlib", *args], capture_output=True, text=True,
                          env=child_env(), timeout=TIMEOUT)


def sample_of(stdout: str) -> str:
    """The text printed after training (everything after the "best val loss ..." line)."""
    return stdout.split("best val loss", 1)[1].split("\n", 1)[1]


def kill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the process was meant to be killed while still running"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_args):
    """An uninterrupted run: what every killed-and-resumed run must end up equal to."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = gptlib_cli(*train_args(out, data_args))
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def assert_same_run(out: Path, reference: Path) -> None:
    """Same steps, same losses (exact floats) and same weights in last.pt and best.pt."""
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(out / name), load_checkpoint(reference / name)
        assert a.step == b.step
        for key in ("step", "train_loss", "val_loss", "lr"):
            assert a.extra["history"][key] == b.extra["history"][key], (name, key)
        for k, tensor in b.model_state.items():
            assert torch.equal(a.model_state[k], tensor), (name, k)


def test_same_seed_same_losses_and_samples_in_two_processes(tmp_path, straight, data_args):
    reference, reference_stdout = straight
    out = tmp_path / "run"
    result = gptlib_cli(*train_args(out, data_args))
    assert result.returncode == 0, result.stderr

    def comparable(stdout: str, folder: Path) -> str:
        # Only the timings and the output folder may differ.
        return re.sub(r"\(\d+\.\ds\)", "(time)", stdout.replace(str(folder), "OUT"))

    assert comparable(result.stdout, out) == comparable(reference_stdout, reference)
    assert len(sample_of(result.stdout).strip()) > 0
    assert_same_run(out, reference)


def test_sigkill_mid_run_then_resume_ends_as_if_never_killed(tmp_path, straight, data_args):
    reference, reference_stdout = straight
    out = tmp_path / "run"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gptlib", *train_args(out, data_args)],
                                stdout=subprocess.DEVNULL, stderr=err, env=child_env())
        try:
            wait_for((out / "last.pt").is_file, proc, "the first checkpoint", TIMEOUT)
            kill(proc)  # mid-run: 180 of 200 steps still to go
        finally:
            if proc.poll() is None:
                proc.kill()
    killed_at = load_checkpoint(out / "last.pt")
    assert killed_at.resumable and killed_at.step == 20

    result = gptlib_cli(*resume_args(out, data_args))
    assert result.returncode == 0, result.stderr
    assert f"resuming {out / 'last.pt'} at step 20 of 200" in result.stdout
    steps = [int(s) for s in re.findall(r"step +(\d+):", result.stdout)]
    assert steps == list(range(40, 201, 20))  # continued from step 20, not restarted
    assert_same_run(out, reference)
    assert sample_of(result.stdout) == sample_of(reference_stdout)


@pytest.mark.parametrize("point", ["writing", "renaming"])
def test_sigkill_during_a_save_keeps_the_previous_checkpoint(tmp_path, straight, data_args, point):
    reference, reference_stdout = straight
    out, marker = tmp_path / "run", tmp_path / "paused"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", PAUSED_TRAIN, str(marker), point, *train_args(out, data_args)],
                                stdout=subprocess.DEVNULL, stderr=err, env=child_env())
        try:
            wait_for(marker.exists, proc, f"the save at step 40 to pause while {point}", TIMEOUT)
            kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()

    # The killed save left its temp file; the checkpoint is still the previous, complete one.
    leftovers = list(out.glob(".last.pt.*.tmp"))
    assert len(leftovers) == 1
    previous = load_checkpoint(out / "last.pt")
    assert previous.resumable and previous.step == 20

    result = gptlib_cli(*resume_args(out, data_args))
    assert result.returncode == 0, result.stderr
    assert f"removed {leftovers[0]}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]  # nothing else left over
    assert_same_run(out, reference)
    assert sample_of(result.stdout) == sample_of(reference_stdout)
