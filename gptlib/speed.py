"""Which speed tricks to use on which device: a small, printable, overridable `SpeedConfig`.

`speed_plan(device)` picks what measured fastest at the same model semantics:

- every device: `FastGPT` (fused QKV, batched heads, fused attention, cheap dropout masks);
- CUDA, by the GPU's compute capability (`cuda_plan`, a pure function of it):
  - Ampere or newer (8.0+: A100, RTX 30xx/40xx, H100): bf16 autocast (tensor cores; bf16 has fp32's
    range, so no loss scaling), TF32 for the matmuls left in fp32, the fused AdamW kernel;
  - Volta and Turing (V100 7.0, Colab's T4 7.5): their tensor cores do fp16 only, so fp16 autocast
    with a `torch.amp.GradScaler` (fp16's range is small: the loss is scaled up so that small
    gradients do not flush to zero, and a step whose gradients overflow is skipped), no TF32 (they
    have none), the fused AdamW kernel. ``torch.cuda.is_bf16_supported()`` is not asked: it is true
    on a T4 too, where bf16 is only emulated, and slow;
  - older GPUs (no tensor cores): fp32 and the fused AdamW kernel;
- CPU: fp32 and the fused AdamW kernel (one pass over the parameters instead of a Python loop).
  ``torch.compile`` is off: on this 2-core CPU it took over a minute to compile the lecture model,
  and its dropout-with-random-numbers kernels were slower than `FastGPT`'s.

``torch.compile`` is off on CUDA too, by a judgement not yet measured here: the `lecture` run is short
(5,000 steps, minutes on a recent GPU), compiling takes about a minute (nanoGPT's train.py says so
for its models; longer on Colab's two CPU cores), evaluation runs the uncompiled model, and `FastGPT`
already fuses the attention. ``--compile`` switches it on; ``scripts/gpu_run.sh`` times a short run
both ways.

    plan = speed_plan("cpu")
    print(plan)                                # see the choice
    plan = replace(plan, compile=True)         # override it
    plan = with_precision(plan, "bfloat16")    # or its precision ("float32", "bfloat16", "float16")
    model = build_model(config, plan)
    train(model, ..., speed=plan)              # fp16 plans train with a GradScaler
"""

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from gptlib.config import GPTConfig
from gptlib.errors import ConfigError

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# the names ``--dtype`` takes: float32 is no autocast, the others autocast to that type
PRECISIONS = ("float32", *_DTYPES)


@dataclass(frozen=True)
class SpeedConfig:
    """The speed tricks for one run; `speed_plan` chooses them per device."""

    fast_model: bool = True  # `build_model` makes a FastGPT (same maths as GPT, fewer kernels)
    # "bfloat16" or "float16" runs the matmuls in that type (float16 with a GradScaler); None keeps fp32
    autocast_dtype: str | None = None
    tf32: bool = False  # CUDA only: fp32 matmuls on tensor cores with a 10-bit mantissa
    fused_adamw: bool = False  # AdamW's single fused kernel instead of a loop over parameters
    compile: bool = False  # torch.compile the model for the training steps

    def __post_init__(self):
        if self.autocast_dtype is not None and self.autocast_dtype not in _DTYPES:
            raise ConfigError(f"autocast_dtype must be None or one of {', '.join(_DTYPES)}, "
                              f"got {self.autocast_dtype!r}")

    @property
    def precision(self) -> str:
        """The training precision's name: "float32", "bfloat16" or "float16"."""
        return self.autocast_dtype or "float32"

    @property
    def grad_scaler(self) -> bool:
        """Whether training needs a `torch.amp.GradScaler`: always with fp16, never otherwise."""
        return self.autocast_dtype == "float16"


# The readable path: `GPT` in fp32 with the plain AdamW loop (``--readable``, the ladder's rungs).
READABLE = SpeedConfig(fast_model=False)


def speed_plan(device: torch.device | str) -> SpeedConfig:
    """The fastest measured settings for ``device`` at the same model semantics."""
    device = torch.device(device)
    if device.type == "cuda":
        # asked about CUDA on a machine without it, describe a recent GPU (Ampere's 8.0)
        return cuda_plan(torch.cuda.get_device_capability(device) if torch.cuda.is_available() else (8, 0))
    if device.type == "cpu":
        return SpeedConfig(fast_model=True, fused_adamw=True)
    return SpeedConfig(fast_model=True)  # MPS and others: only the model-level tricks


def cuda_plan(capability: tuple[int, int]) -> SpeedConfig:
    """The plan for a CUDA GPU of compute ``capability`` (major, minor), e.g. (7, 5) for a T4."""
    if tuple(capability) >= (8, 0):  # Ampere or newer: bf16 tensor cores, TF32
        return SpeedConfig(fast_model=True, autocast_dtype="bfloat16", tf32=True, fused_adamw=True)
    if tuple(capability) >= (7, 0):  # Volta, Turing: fp16 tensor cores; bf16 only emulated, no TF32
        return SpeedConfig(fast_model=True, autocast_dtype="float16", fused_adamw=True)
    # older (Pascal and before): no tensor cores, and fp16 is slow on most of them: fp32
    return SpeedConfig(fast_model=True, fused_adamw=True)


def with_precision(plan: SpeedConfig, precision: str) -> SpeedConfig:
    """``plan`` training in ``precision`` ("float32", "bfloat16" or "float16") instead of its own."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return replace(plan, autocast_dtype=None if precision == "float32" else precision)


def make_grad_scaler(speed: SpeedConfig | None,
                     device: torch.device | str) -> torch.amp.GradScaler | None:
    """A `torch.amp.GradScaler` for ``device`` if ``speed`` trains in fp16, else None."""
    if speed is None or not speed.grad_scaler:
        return None
    return torch.amp.GradScaler(torch.device(device).type)


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
