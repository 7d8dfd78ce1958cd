"""Helpers that more than one test file uses (fixtures live in conftest.py)."""

import re
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import torch.nn as nn

from gptlib.config import GPTConfig
from gptlib.model import GPT


class BlowsUp(nn.Module):
    """A GPT of ``config`` whose training loss becomes ``bad`` (NaN or inf) from the ``at``-th
    training forward pass on; evaluation passes are left alone."""

    def __init__(self, config: GPTConfig, bad: float, at: int):
        super().__init__()
        self.gpt, self.bad, self.at, self.calls = GPT(config), bad, at, 0

    def forward(self, idx, targets=None):
        logits, loss = self.gpt(idx, targets)
        if self.training:
            self.calls += 1
            if self.calls >= self.at:
                loss = loss * self.bad
        return logits, loss


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float) -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the process ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def accepts(verdict) -> None:
    """A self-check's verdict passed, and says so the way the page shows it."""
    assert verdict.passed, verdict.message
    assert repr(verdict).startswith("✓ correct: ")


def rejects(verdict, *words: str) -> None:
    """A self-check's verdict failed with a hint that mentions each of ``words``."""
    assert not verdict.passed
    assert repr(verdict).startswith("✗ not yet: ")
    for word in words:
        assert word in verdict.message, verdict.message


def boom(*args):
    """A reader's answer that raises: the check must turn it into a verdict."""
    raise ZeroDivisionError("oops")


def solution_blocks(page: Path) -> list[str]:
    """The Python code of every ``:::{dropdown} Solution`` block of a markdown page, in order."""
    blocks = re.findall(r":::\{dropdown\} Solution\n(.*?)\n\s*:::", page.read_text(), flags=re.S)
    code = []
    for block in blocks:
        code += [textwrap.dedent(c) for c in re.findall(r"```python\n(.*?)```", block, flags=re.S)]
    return code
