"""The one place that picks a device: CUDA, then Apple's MPS, then the CPU; and what the machine's
memory allows (`free_cpu_memory`, `out_of_memory`)."""

import torch

from gptlib.errors import DeviceError


def pick_device(requested: str = "auto") -> torch.device:
    """``requested`` as a torch.device (the best available for ``"auto"``); one this machine lacks is
    a `DeviceError` that says which devices are available."""
    requested = str(requested or "auto").lower()  # "CPU", "CUDA:0": as torch's names, in any case
    if requested == "auto":
        return torch.device(available_devices()[0])
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise DeviceError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from err
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {requested!r}: use auto, cpu, cuda or mps")
    if device.type not in available_devices():
        missing = "no CUDA GPU is available" if device.type == "cuda" else "MPS is not available"
        raise DeviceError(f"--device {requested} was asked for, but {missing} here; use --device cpu "
                          f"(available: {', '.join(available_devices())})")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"{requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def available_devices() -> list[str]:
    """The device names this machine can use, best first."""
    found = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    return [name for name, available in found.items() if available]


_OOM_SIGNS = ("out of memory", "not enough memory", "can't allocate memory", "defaultcpuallocator")


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the device running out of memory (torch raises a RuntimeError on the CPU)."""
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or any(
        sign in str(err).lower() for sign in _OOM_SIGNS)


def free_cpu_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable); None elsewhere.
    Asked before an allocation that may not fit: Linux would kill the process, not refuse."""
    try:
        with open("/proc/meminfo") as f:  # it counts kB
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):  # not Linux, or a kernel without MemAvailable (before 3.14)
        return None
