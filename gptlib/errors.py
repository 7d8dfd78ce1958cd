"""gptlib's errors: each carries its facts (step, path, sizes) and is also a standard exception."""


class GPTLibError(Exception):
    """Base class of every error that gptlib raises on purpose; keyword arguments become attributes."""

    def __init__(self, message: str = "", **facts):
        BaseException.__init__(self, message)  # TrainingInterrupted's too
        self.__dict__.update(facts)


class ConfigError(GPTLibError, ValueError):
    """A configuration value is out of range (e.g. ``n_embd`` not divisible by ``n_head``)."""


class DataError(GPTLibError, ValueError):
    """The data is unusable: wrong checksum, too short for the block size, unknown characters."""


class DataNotFoundError(GPTLibError, FileNotFoundError):
    """The data file is missing and could not be downloaded."""


class CheckpointError(GPTLibError, ValueError):
    """A checkpoint is truncated, is not a gptlib checkpoint, or does not fit the model."""


class DeviceError(GPTLibError, ValueError):
    """The requested device is not available on this machine."""


class TrainingDivergedError(GPTLibError, RuntimeError):
    """The loss became NaN or infinite at ``step``."""


class OutputPathError(GPTLibError, OSError):
    """An output folder cannot be used: not a folder, not writable, or in use by another run."""


class OutOfMemoryError(GPTLibError, MemoryError):
    """The device ran out of memory; the message says which sizes to make smaller."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run that keeps checkpoints: ``path`` and ``step`` of its last one (None: none yet)."""

    path = step = max_iters = None
    __init__ = GPTLibError.__init__


class DistributedError(GPTLibError, RuntimeError):
    """A distributed run (torchrun) is set up wrongly, or its processes could not connect."""
