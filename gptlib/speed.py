"""Which speed tricks to use on which device: a small, printable, overridable `SpeedConfig`.

`speed_plan(device)` picks what measured fastest at the same model semantics:

- every device: `FastGPT` (fused QKV, batched heads, fused attention, cheap dropout masks);
- CUDA: bf16 autocast (tensor cores; bf16 has fp32's range, so no loss scaling), TF32 for the
  matmuls left in fp32, the fused AdamW kernel; ``torch.compile`` is there to switch on;
- CPU: fp32 and the fused AdamW kernel (one pass over the parameters instead of a Python loop).
  ``torch.compile`` is off: on this 2-core CPU it took over a minute to compile the lecture model,
  and its dropout-with-random-numbers kernels were slower than `FastGPT`'s.

    plan = speed_plan("cpu")
    print(plan)                          # see the choice
    plan = replace(plan, compile=True)   # override it
    model = build_model(config, plan)
    train(model, ..., speed=plan)
"""

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from gptlib.config import GPTConfig
from gptlib.errors import ConfigError

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class SpeedConfig:
    """The speed tricks for one run; `speed_plan` chooses them per device."""

    fast_model: bool = True  # `build_model` makes a FastGPT (same maths as GPT, fewer kernels)
    autocast_dtype: str | None = None  # "bfloat16" runs the matmuls in bf16; None keeps fp32
    tf32: bool = False  # CUDA only: fp32 matmuls on tensor cores with a 10-bit mantissa
    fused_adamw: bool = False  # AdamW's single fused kernel instead of a loop over parameters
    compile: bool = False  # torch.compile the model for the training steps

    def __post_init__(self):
        if self.autocast_dtype is not None and self.autocast_dtype not in _DTYPES:
            raise ConfigError(f"autocast_dtype must be None or one of {', '.join(_DTYPES)}, "
                              f"got {self.autocast_dtype!r}")


# The readable path: `GPT` in fp32 with the plain AdamW loop (``--readable``, the ladder's rungs).
READABLE = SpeedConfig(fast_model=False)


def speed_plan(device: torch.device | str) -> SpeedConfig:
    """The fastest measured settings for ``device`` at the same model semantics."""
    device = torch.device(device)
    if device.type == "cuda":
        # bf16 needs Ampere or newer; asked about CUDA on a machine without it, describe a recent GPU
        bf16 = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else True
        return SpeedConfig(fast_model=True, autocast_dtype="bfloat16" if bf16 else None, tf32=True,
                           fused_adamw=True, compile=False)
    if device.type == "cpu":
        return SpeedConfig(fast_model=True, fused_adamw=True)
    return SpeedConfig(fast_model=True)  # MPS and others: only the model-level tricks


def build_model(config: GPTConfig, speed: SpeedConfig | None = None) -> nn.Module:
    """A `FastGPT` if ``speed.fast_model`` (the default), else the readable `GPT`."""
    from gptlib.fast import FastGPT
    from gptlib.model import GPT

    return FastGPT(config) if speed is None or speed.fast_model else GPT(config)


def autocast(speed: SpeedConfig | None, device: torch.device | str):
    """The autocast context for ``speed`` on ``device``, or a no-op one."""
    if speed is None or speed.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[speed.autocast_dtype])


def apply_backend_flags(speed: SpeedConfig | None) -> None:
    """Switch on TF32 matmuls if ``speed`` asks for it (a global torch setting; CUDA only)."""
    if speed is not None and speed.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
