"""Which speed tricks to use on which device: a small, printable, overridable `SpeedConfig`, which
`speed_plan(device)` picks at the same model semantics (on CUDA by compute capability, on a CPU by timing
one block's variants) and explains in ``plan.why``; ``torch.compile`` stays off unless asked for."""

import contextlib
import ctypes
import functools
import platform
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn

from gptlib.config import GPTConfig
from gptlib.errors import ConfigError
from gptlib.fast import ATTENTION, FastBlock, FastGPT
from gptlib.model import GPT, Block

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
PRECISIONS = ("float32", *_DTYPES)  # ``--dtype``'s names: float32 is no autocast, the others autocast to it


@dataclass(frozen=True)
class SpeedConfig:
    """The speed tricks for one run; `speed_plan` chooses them per device."""

    fast_model: bool = True  # `build_model` makes a FastGPT (same maths as GPT, fewer kernels)
    autocast_dtype: str | None = None  # "bfloat16"/"float16": matmuls in it (fp16 with a GradScaler)
    tf32: bool = False  # CUDA only: fp32 matmuls on tensor cores with a 10-bit mantissa
    fused_adamw: bool = False  # AdamW's single fused kernel instead of a loop over parameters
    compile: bool = False  # torch.compile the model for the training steps
    attention: str = "sdpa"  # FastGPT's attention: "sdpa" (fused kernel) or "explicit" (same maths)
    why: str = field(default="", repr=False, compare=False)  # what the plan measured, in words

    def __post_init__(self):
        if self.attention not in ATTENTION:  # the one check of the attention name
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")

    @property
    def precision(self) -> str:
        """The training precision's name: "float32", "bfloat16" or "float16"."""
        return self.autocast_dtype or "float32"

    @property
    def grad_scaler(self) -> bool:
        """Whether training needs a `torch.amp.GradScaler`: always with fp16, never otherwise."""
        return self.autocast_dtype == "float16"


READABLE = SpeedConfig(fast_model=False)  # `GPT` in fp32, the plain AdamW loop (``--readable``, the ladder)


def cuda_plan(capability: tuple[int, int]) -> SpeedConfig:
    """The plan for a CUDA GPU of compute ``capability`` (major, minor), e.g. (7, 5) for a T4.
    (Not ``torch.cuda.is_bf16_supported()``: it is true on a T4 too, where bf16 is only emulated.)"""
    cc = f"compute capability {capability[0]}.{capability[1]}"
    if tuple(capability) >= (8, 0):
        return SpeedConfig(autocast_dtype="bfloat16", tf32=True, fused_adamw=True, why=f"{cc} (Ampere or "
                           f"newer): bf16 tensor cores, TF32 for the matmuls left in fp32")
    if tuple(capability) >= (7, 0):
        return SpeedConfig(autocast_dtype="float16", fused_adamw=True, why=f"{cc} (Volta or Turing): fp16 "
                           f"tensor cores, with a GradScaler; bf16 would be emulated, and there is no TF32")
    return SpeedConfig(fused_adamw=True, why=f"{cc}: no tensor cores, so fp32")  # fp16 is slow on most


def with_precision(plan: SpeedConfig, precision: str) -> SpeedConfig:
    """``plan`` training in ``precision`` ("float32", "bfloat16" or "float16"; `Run` checks the name)."""
    return replace(plan, autocast_dtype=None if precision == "float32" else precision)


def make_grad_scaler(speed: SpeedConfig | None, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A `torch.amp.GradScaler` for ``device`` if ``speed`` trains in fp16, else None."""
    return torch.amp.GradScaler(torch.device(device).type) if speed and speed.grad_scaler else None


# How much faster a variant must be to replace fp32 with fused attention, so timing noise in a near tie
# never changes a seeded run's numbers between processes (bf16 most: autocast adds casts outside blocks).
_MARGIN = {"bfloat16": 1.25, "explicit": 1.1, "readable": 1.1}
PROBE_MIN_EMBD = 64  # narrower blocks take ~1 ms, too little to time: the default plan
_DEFAULT_SHAPE = (64, 128, 4, 0.0)  # block_size, n_embd, n_head, dropout: the `cpu` preset's block


@dataclass(frozen=True)
class CpuProbe:
    """What `probe_cpu` measured: the best seconds of one block's forward + backward per candidate."""

    seconds: dict  # {(model, dtype, attention): seconds}, e.g. ("fast", "bfloat16", "explicit")
    tokens: int  # batch x block_size of the timed block
    bf16_instructions: str  # what the CPU reports, e.g. "avx512_bf16"; "" if none
    probe_seconds: float  # how long probing took


def cpu_bf16_instructions() -> str:
    """The bf16 matrix instructions Linux reports for this CPU ("avx512_bf16", "amx_bf16"), "" if none
    or elsewhere; "arm" for an ARM CPU, which the probe tries bf16 on and times."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:  # not Linux: nothing reported
        return ""
    return "+".join(flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags)


@functools.lru_cache(maxsize=None)
def _probe(shape: tuple) -> CpuProbe:
    started = time.perf_counter()
    block_size, n_embd, n_head, dropout = shape
    config = GPTConfig(65, block_size, n_embd, n_head, n_layer=1, dropout=dropout)
    bf16 = cpu_bf16_instructions()
    batch = max(1, 512 // block_size)  # ~512 tokens: big enough for the matmuls to matter, fast
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, timed by its CPU time: other programs barely move the numbers
    try:
        with torch.random.fork_rng():  # the probe's random numbers must not move anyone's seed
            torch.manual_seed(0)
            x = torch.randn(batch, block_size, n_embd)
            candidates = {("readable", "float32", "heads"): Block(config)}
            for dtype in ("float32", "bfloat16") if bf16 else ("float32",):
                candidates.update({("fast", dtype, att): FastBlock(config, att) for att in ATTENTION})
            best = dict.fromkeys(candidates, float("inf"))
            for r in range(4):  # round 0 warms up; then interleaved, best of 3
                for key, block in candidates.items():
                    xr = x.detach().requires_grad_(True)
                    t0 = time.thread_time()
                    with autocast(with_precision(READABLE, key[1]), "cpu"):
                        out = block(xr)  # (B,T,C)
                    out.float().sum().backward()
                    if r:
                        best[key] = min(best[key], time.thread_time() - t0)
    finally:
        torch.set_num_threads(threads)
    return CpuProbe(best, batch * block_size, bf16, time.perf_counter() - started)


def probe_cpu(config: GPTConfig | None = None) -> CpuProbe:
    """Time one block of ``config``'s shape forward + backward on one thread (once per shape): `Block`, and
    `FastBlock` with each attention in fp32 and, if the CPU reports bf16 instructions, bf16 autocast."""
    shape = (config.block_size, config.n_embd, config.n_head, config.dropout) if config else _DEFAULT_SHAPE
    return _probe(shape)


def speed_plan(device: torch.device | str, config: GPTConfig | None = None) -> SpeedConfig:
    """The fastest settings for ``device``; on a CPU measured for ``config``'s shape (see `probe_cpu`)."""
    device = torch.device(device)
    if device.type == "cuda":  # on a machine without CUDA: a recent GPU's plan (Ampere's 8.0)
        return cuda_plan(torch.cuda.get_device_capability(device) if torch.cuda.is_available() else (8, 0))
    if device.type != "cpu":
        return SpeedConfig(fast_model=True)  # MPS and others: only the model-level tricks
    n_embd = config.n_embd if config else _DEFAULT_SHAPE[1]
    default = SpeedConfig(fast_model=True, fused_adamw=True)
    if n_embd < PROBE_MIN_EMBD:
        return replace(default, why=f"the default CPU plan, not measured: a block {n_embd} wide takes "
                                    f"about a millisecond, too little for timings to tell variants apart")
    probe = probe_cpu(config)
    t, best = probe.seconds, {}  # best: each dtype's attention, sdpa unless explicit is clearly faster
    for dtype in [d for d in ("float32", "bfloat16") if ("fast", d, "sdpa") in t]:
        sdpa, explicit = ("fast", dtype, "sdpa"), ("fast", dtype, "explicit")
        best[dtype] = explicit if t[sdpa] >= _MARGIN["explicit"] * t[explicit] else sdpa
    pick = best["float32"]
    if "bfloat16" in best and t[pick] >= _MARGIN["bfloat16"] * t[best["bfloat16"]]:
        pick = best["bfloat16"]
    readable = t[("readable", "float32", "heads")]
    measured = f"readable {1000 * readable:.1f} ms" + "".join(
        f" | {dtype}: " + ", ".join(f"{att} {1000 * t[('fast', dtype, att)]:.1f}" for att in ATTENTION)
        for dtype in best)
    how = (f"one block of {probe.tokens} tokens, forward + backward, best of 3 on one thread: {measured}; "
           + (f"the CPU reports {probe.bf16_instructions}" if probe.bf16_instructions
              else "no bf16 instructions reported, so bf16 not tried")
           + f"; probing took {probe.probe_seconds:.1f} s")
    if t[pick] >= _MARGIN["readable"] * readable:  # never clearly slower than the readable path
        return replace(READABLE, fused_adamw=True, why=f"the readable GPT: no fast variant beat it ({how})")
    _, dtype, attention = pick
    name = "bf16 autocast" if dtype == "bfloat16" else "fp32"
    return with_precision(replace(default, attention=attention, why=f"{name} with {attention} attention, "
                                  f"{readable / t[pick]:.1f}x the readable block ({how})"), dtype)


def build_model(config: GPTConfig, speed: SpeedConfig | None = None) -> nn.Module:
    """A `FastGPT` if ``speed.fast_model`` (the default), else the readable `GPT`."""
    speed = speed or SpeedConfig()
    return FastGPT(config, speed.attention) if speed.fast_model else GPT(config)


def autocast(speed: SpeedConfig | None, device: torch.device | str):
    """The autocast context for ``speed`` on ``device``, or a no-op one."""
    if speed is None or speed.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[speed.autocast_dtype])


# The process-wide settings a run may change, (getter, setter) pairs in the order they go back: TF32's two
# APIs depend on each other (the legacy ``allow_tf32`` flags; since torch 2.9 ``fp32_precision`` strings),
# so the legacy flags first, then the matmul precision, then the strings (those this torch has).
_SETTINGS = ("cudnn.allow_tf32", "cuda.matmul.allow_tf32", "float32_matmul_precision", "fp32_precision",
             "cuda.matmul.fp32_precision", "cudnn.fp32_precision", "cudnn.conv.fp32_precision",
             "cudnn.rnn.fp32_precision", "mkldnn.matmul.fp32_precision", "num_threads")
_UNREADABLE = "unreadable"  # `process_settings`' value for a setting torch refuses to read


def _settings() -> dict:
    found = {}
    for name in _SETTINGS:  # torch.backends' attributes, or torch's get_NAME and set_NAME
        *path, attr = name.split(".")
        module = functools.reduce(lambda m, part: getattr(m, part, None), path, torch.backends)
        if hasattr(torch, f"set_{name}"):
            found[name] = getattr(torch, f"get_{name}"), getattr(torch, f"set_{name}")
        elif hasattr(module, attr):
            found[name] = functools.partial(getattr, module, attr), functools.partial(setattr, module, attr)
    for device_type in ("cpu", "cuda"):  # autocast, as the ``with torch.autocast`` blocks leave it
        found[f"autocast.{device_type}"] = (
            lambda d=device_type: (torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)),
            lambda value, d=device_type: (torch.set_autocast_enabled(d, value[0]),
                                          torch.set_autocast_dtype(d, value[1])))
    return found


def _read(get) -> object:
    try:
        return get()
    except RuntimeError:  # torch refuses to read a legacy TF32 flag after a mix of both APIs
        return _UNREADABLE


def process_settings() -> dict:
    """The process-wide torch settings a run could change, by name: what `backend_flags` puts back."""
    return {name: _read(get) for name, (get, _) in _settings().items()}


@contextlib.contextmanager
def backend_flags(speed: SpeedConfig | None):
    """TF32 matmuls for the block if ``speed`` asks (CUDA only); on leaving it, however it is left, every
    `process_settings` value is put back: a run leaves the process (a notebook) as it found it."""
    saved = process_settings()
    try:
        if speed is not None and speed.tf32:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        yield
    finally:
        for name, (get, set_) in _settings().items():
            if saved[name] != _UNREADABLE and _read(get) != saved[name]:
                set_(saved[name])


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Keep freed memory (glibc only, else False): a CPU step reallocates the same big activations, which
    glibc would hand back and page-fault in again. Lasting (glibc cannot read it back); no result changes."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 2**30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
