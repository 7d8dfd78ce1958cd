"""The one place that picks a device: CUDA, then Apple's MPS, then the CPU; and what the machine's
memory allows (`free_cpu_memory`, `out_of_memory`)."""

import torch

from gptlib.errors import DeviceError


def pick_device(requested: str = "auto") -> torch.device:
    """Return ``requested`` as a torch.device, or the best available one for ``"auto"``.

    Asking for a device this machine lacks (``"cuda"`` without a GPU) is a `DeviceError` that says
    which devices are available, rather than a failure later inside torch.
    """
    requested = str(requested or "auto").lower()  # "CPU", "CUDA:0": as torch's names, in any case
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise DeviceError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {requested} was asked for, but no CUDA GPU is available here; "
                              f"use --device cpu (available: {', '.join(available_devices())})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device mps was asked for, but MPS is not available here "
                          f"(available: {', '.join(available_devices())})")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {requested!r}: use auto, cpu, cuda or mps")
    return device


def available_devices() -> list[str]:
    """The device names this machine can use, best first."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    if torch.backends.mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


_OOM_SIGNS = ("out of memory", "not enough memory", "can't allocate memory", "defaultcpuallocator")


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the device running out of memory (torch raises a RuntimeError on the CPU)."""
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or any(
        sign in str(err).lower() for sign in _OOM_SIGNS)


def free_cpu_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable); None elsewhere.

    Asked before an allocation that may not fit: Linux promises memory it does not have, and a
    process that then touches too much of it is killed without a word (the OOM killer)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    return None
