"""The 90/10 train/val split and random batches of ``block_size`` tokens with targets shifted by one.
Shapes: B = batch size, T = block size (time)."""

import torch

from gptlib.errors import DataError


def train_val_split(data: torch.Tensor, train_fraction: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 90% of the tokens for training, the last 10% for validation (no shuffling:
    the validation text is a stretch of the play the model never sees)."""
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    n = int(train_fraction * len(data))
    return data[:n], data[n:]


def get_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random chunks of ``block_size`` tokens (x) and the same chunks shifted by one (y): for
    every t, x[:t+1] is a context and y[t] the next token. ``generator`` makes them reproducible without
    touching torch's global random state. The sizes are checked once, where a run starts (`gptlib.run`)."""
    x, y = draw_batch(data, batch_size, block_size, generator)  # (B,T), (B,T) where ``generator`` draws
    if generator.device.type != "cpu":
        return x, y
    device = torch.device(device)
    if device.type == "cuda":
        # pinned memory lets the copy to the GPU overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def draw_batch(data: torch.Tensor, batch_size: int, block_size: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`get_batch`'s draw where ``generator`` lives (on a CUDA run's GPU: kernels queued there, nothing the
    CPU waits for; ``data`` elsewhere is copied there first). -> x, y (B,T) on that device."""
    data = data.to(generator.device)  # itself when already there
    starts = len(data) - block_size  # every start position that leaves room for the shifted target
    ix = torch.randint(starts, (batch_size,), generator=generator, device=generator.device)  # (B,)
    chunk = data[ix[:, None] + torch.arange(block_size + 1, device=generator.device)]  # (B, T+1)
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()  # (B,T), (B,T)
