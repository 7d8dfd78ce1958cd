"""DistributedDataParallel started by ``torchrun`` (book: "Training on more than one GPU"). Each process
trains on its own rows of the same global batch and DDP averages the gradients, so N processes train
what one does; only rank 0 evaluates, logs, saves and samples. Without torchrun, `SINGLE` does nothing."""

import contextlib
import inspect
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.nn as nn

from gptlib.device import pick_device
from gptlib.errors import ConfigError, DeviceError, DistributedError

RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for every process it starts
MEETING_VARS = ("MASTER_ADDR", "MASTER_PORT")  # rank 0's address, where they meet
TIMEOUT = timedelta(minutes=10)  # at each collective: then a process fails, not hangs on a dead peer
JOIN_TIMEOUT = timedelta(minutes=2)  # a job started by hand (not torchrun) waits this long for its processes
GRACE_SECONDS = 10.0  # how long rank > 0 waits for rank 0 to print the same error and torchrun to end the job
_LAST_BARRIER: list = []  # the handle of the last run's final barrier (see `process_group`)


@dataclass(frozen=True)
class Distributed:
    """This process's rank among ``world_size``, its device and backend; `SINGLE` is one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank among the processes on this machine: picks the GPU
    backend: str | None = None  # "nccl" or "gloo"; None: one process, no process group
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        """Whether this process is one of a torchrun job (even a job of one process)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, logs, saves and samples."""
        return self.rank == 0

    def my_rows(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch: rows rank*B/N to (rank+1)*B/N. (B,...) -> (B/N,...)"""
        rows = batch.shape[0] // self.world_size
        return batch[self.rank * rows:(self.rank + 1) * rows]

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as a DDP replica (averages the gradients in backward); in one process, itself."""
        if not self.active:
            return model
        ddp = nn.parallel.DistributedDataParallel
        # The buffers (causal masks) never change: no need to sync them (torch 2.13 renamed the option).
        sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters \
            else "broadcast_buffers"
        gpu = [self.device.index] if self.device.type == "cuda" else None
        return ddp(model, device_ids=gpu, **{sync: False})

    def no_sync(self, replica: nn.Module, skip: bool):
        """A context in which backward does not all-reduce (``skip``: a micro-batch before the last)."""
        if skip and isinstance(replica, nn.parallel.DistributedDataParallel):
            return replica.no_sync()  # the gradients add up locally; the last micro-batch syncs them
        return contextlib.nullcontext()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over the processes (every process gets it); in one process, ``value``."""
        if not self.active:
            return value
        total = value.detach().clone()
        torch.distributed.all_reduce(total)  # a sum: gloo has no average
        return total / self.world_size

    def from_main(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every process (e.g. rank 0's callbacks asked to stop)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())


SINGLE = Distributed()


def from_env(requested_device: str = "auto") -> Distributed:
    """This process's place in the job from torchrun's variables (else `SINGLE` on ``requested_device``),
    checked before any process connects, so a mistake is the same error on every process."""
    if not any(name in os.environ for name in RANK_VARS):  # not started as part of a job
        return Distributed(device=pick_device(requested_device))
    missing = [name for name in ("RANK", "WORLD_SIZE", *MEETING_VARS) if name not in os.environ]
    if missing:
        have = [name for name in RANK_VARS if name in os.environ]
        raise DistributedError(
            f"{' and '.join(have)} {'is' if len(have) == 1 else 'are'} set, so this is one process of a "
            f"distributed run, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: start "
            f"the run with torchrun (torchrun --standalone --nproc_per_node=N -m gptlib train ...), or set "
            f"RANK, WORLD_SIZE, MASTER_ADDR (rank 0's address) and MASTER_PORT (a free port) yourself")
    rank, world_size = _int_var("RANK"), _int_var("WORLD_SIZE")
    local_rank = _int_var("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank  # one machine
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise DistributedError(f"RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={world_size}: need "
                               f"WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE, LOCAL_RANK >= 0")
    auto = requested_device in (None, "", "auto")  # without CUDA: the CPU, not MPS
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if auto else requested_device
    if kind == "cpu":
        return Distributed(rank, world_size, local_rank, "gloo", torch.device("cpu"))
    if kind != "cuda":
        raise DeviceError(f"--device {requested_device}: a distributed run trains on CUDA GPUs (NCCL), one "
                          f"per process, or on CPUs (gloo); use --device cuda or --device cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {requested_device} under torchrun trains over NCCL, which needs CUDA "
                          f"GPUs, and this machine has none; use --device cpu (gloo)")
    gpus, here = torch.cuda.device_count(), max(int(os.environ.get("LOCAL_WORLD_SIZE", 0)), local_rank + 1)
    if here > gpus:
        raise DeviceError(f"{here} processes on this machine, but it has {gpus} CUDA GPU(s) and each "
                          f"process needs its own: use --nproc_per_node={gpus}")
    device = torch.device("cuda", local_rank)  # its own GPU
    torch.cuda.set_device(device)  # before anything touches CUDA, so no process opens a context on GPU 0
    return Distributed(rank, world_size, local_rank, "nccl", device)


def _int_var(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise DistributedError(f"{name}={os.environ[name]!r} is not an integer; torchrun sets it, so "
                               f"start the run with torchrun or fix the variable") from None


def split_batch(batch_size: int, world_size: int, grad_accum: int) -> int:
    """Rows per micro-batch when ``world_size`` processes share each batch in ``grad_accum`` parts each."""
    if type(grad_accum) is not int or grad_accum < 1:
        raise ConfigError(f"grad_accum must be a positive integer, got {grad_accum!r}")
    parts = world_size * grad_accum
    if batch_size % parts:
        who = (f"{world_size} processes x " if world_size > 1 else "") + f"{grad_accum} micro-batches"
        raise ConfigError(f"batch_size {batch_size} cannot be split evenly into {who} ({parts} parts): "
                          f"use a batch_size that is a multiple of {parts}, or another "
                          f"{'--nproc_per_node or ' if world_size > 1 else ''}--grad-accum")
    return batch_size // parts


@contextlib.contextmanager
def process_group(dist: Distributed) -> Iterator[None]:
    """Connect the job's processes for the block and, when it ends well, disconnect them together;
    after an error the process just leaves (torchrun stops the others). Nothing in one process."""
    if not dist.active:
        yield
        return
    options = {"device_id": dist.device} if dist.device.type == "cuda" else {}  # binds NCCL to its GPU
    address = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    try:
        if "TORCHELASTIC_RUN_ID" not in os.environ:  # started by hand: say what it waits for, not for long
            print(f"[rank {dist.rank}] waiting up to {JOIN_TIMEOUT.seconds} s for all {dist.world_size} "
                  f"processes to meet at {address}, where rank 0 listens", file=sys.stderr)
            options["store"] = torch.distributed.TCPStore(
                os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), dist.world_size, dist.rank == 0,
                timeout=JOIN_TIMEOUT)
        torch.distributed.init_process_group(dist.backend, rank=dist.rank, world_size=dist.world_size,
                                             timeout=TIMEOUT, **options)
    except (RuntimeError, ValueError) as err:  # a peer that never came, a port in use...
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedError(f"rank {dist.rank} of {dist.world_size} could not join the others at "
                               f"{address} ({dist.backend}): {detail}") from None
    yield
    # Only after a block that ended well: after an error another rank may be in a collective this one
    # never joins, and leaving would wait for it (torchrun ends the job).
    done = torch.distributed.barrier(async_op=True)  # nobody leaves while another still works
    done.wait()
    torch.distributed.destroy_process_group()
    # Keep the barrier's handle past the group's last user (the DDP replica): else gloo's worker thread
    # may free it, needing the GIL that this thread holds while waiting for that worker (a deadlock).
    _LAST_BARRIER[:] = [done]


def seed_other_ranks(dist: Distributed, seed: int, step: int) -> None:
    """Give every rank but 0 (which keeps one process's stream) a dropout stream from seed, rank and step."""
    if dist.active and not dist.is_main:
        torch.manual_seed((seed + 1_000_003 * dist.rank + 7919 * step) % (2**63 - 1))


def report_error(message: str) -> None:
    """Print a user error once per job, on stderr: rank 0 prints it; another rank under torchrun first
    waits `GRACE_SECONDS` for rank 0 to print the same error and torchrun to end it, then prints its own."""
    rank = os.environ.get("RANK", "0")
    if rank != "0":
        if "TORCHELASTIC_RUN_ID" in os.environ:  # started by torchrun, which stops the job when rank 0 exits
            time.sleep(GRACE_SECONDS)
        message = f"[rank {rank}] {message}"
    print(message, file=sys.stderr)
