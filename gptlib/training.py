"""Training: `estimate_loss`, the learning-rate schedule and a `train` loop that knows nothing about GPT.

The loop works with any model that follows the book's contract, ``forward(idx, targets) -> (logits,
loss)``. Callbacks see a `TrainState` after every evaluation: that is where live plots, checkpoints
and early stopping plug in, without the loop knowing about any of them.

On a GPU the loop never waits for the device between evaluations. Reading a GPU number on the CPU
(``loss.item()``, printing it) waits until the GPU has done all the work queued before it, and the
GPU then sits idle while Python prepares the next step: once per step, that is a large share of a
small model's step. `DivergenceGuard` watches the loss on the device instead, and the progress bar
shows the loss at each evaluation.
"""

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from gptlib.batches import get_batch
from gptlib.config import TrainConfig
from gptlib.distributed import SINGLE, Distributed, process_group, split_batch
from gptlib.errors import DataError, TrainingDivergedError
from gptlib.speed import SpeedConfig, autocast, backend_flags, keep_freed_memory, make_grad_scaler


@dataclass
class History:
    """One row per evaluation: step, mean train and val loss, learning rate, seconds since start."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)

    def append(self, step: int, train_loss: float, val_loss: float, lr: float, elapsed: float) -> None:
        """Add one evaluation's row."""
        for name, value in zip(("step", "train_loss", "val_loss", "lr", "elapsed"),
                               (step, train_loss, val_loss, lr, elapsed)):
            getattr(self, name).append(value)

    def __len__(self) -> int:
        return len(self.step)

    @property
    def best_val_loss(self) -> float:
        """The lowest validation loss seen so far (inf before the first evaluation)."""
        return min(self.val_loss, default=math.inf)

    def to_dict(self) -> dict:
        """Plain lists, for JSON and checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """The inverse of `to_dict`."""
        return cls(**{k: list(v) for k, v in d.items()})


@dataclass
class TrainState:
    """Everything the loop is working with, handed to callbacks after each evaluation."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    step: int  # optimiser steps completed
    history: History
    batch_generator: torch.Generator  # draws the training batches
    eval_generator: torch.Generator  # draws the evaluation batches
    improved: bool = False  # whether the last evaluation set a new best validation loss
    stop: bool = False  # a callback may set this to end training after the current evaluation
    scaler: torch.amp.GradScaler | None = None  # fp16 training's loss scaler (see `gptlib.speed`)


Callback = Callable[[TrainState], None]


@torch.no_grad()
def estimate_loss(model: nn.Module, splits: dict[str, torch.Tensor], batch_size: int, block_size: int,
                  eval_iters: int, generator: torch.Generator, device: torch.device | str) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split, in eval mode (no dropout).

    One batch's loss is noisy; the mean of many is a steady number to compare runs by. The model is
    put back in the mode it was in.
    """
    was_training = model.training
    model.eval()
    out = {}
    for name, data in splits.items():
        losses = torch.zeros(eval_iters, device=device)
        for k in range(eval_iters):
            x, y = get_batch(data, batch_size, block_size, generator, device)
            _, loss = model(x, y)
            losses[k] = loss  # stays on the device: one wait per split, not one per batch
        out[name] = losses.mean().item()
    model.train(was_training)
    return out


def get_lr(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``learning_rate``, then (if ``decay_lr``) cosine decay to ``min_lr``."""
    if step < config.warmup_iters:
        return config.learning_rate * (step + 1) / config.warmup_iters
    if not config.decay_lr:
        return config.learning_rate
    progress = (step - config.warmup_iters) / max(1, config.max_iters - config.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # 1 -> 0
    return config.min_lr + coeff * (config.learning_rate - config.min_lr)


def make_optimizer(model: nn.Module, config: TrainConfig, *, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only; biases, LayerNorm and 1-D tensors are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # fused=True: one kernel updates every parameter (CPU and CUDA), instead of a Python loop
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), fused=fused)


def make_generators(seed: int, device: torch.device | str = "cpu") -> tuple[torch.Generator, torch.Generator]:
    """Separate random streams for training and evaluation batches, so evaluating does not change
    which batches training sees. On a CUDA device they live there, so the batches are drawn and
    gathered on the GPU (`get_batch`); everywhere else on the CPU (whose streams the book's CPU
    results come from)."""
    device = torch.device(device)
    where = device if device.type == "cuda" else torch.device("cpu")
    return (torch.Generator(device=where).manual_seed(seed),
            torch.Generator(device=where).manual_seed(seed + 1))


def _where_drawn(data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``data`` where ``generator`` draws batches from it (`get_batch`): on its GPU, or as it is."""
    return data if generator.device.type == "cpu" else data.to(generator.device)


def _check_split(name: str, data: torch.Tensor, batch_size: int, block_size: int) -> None:
    # Checked before the first step, so a too-small val split fails now, not at the first evaluation.
    if block_size >= len(data):
        raise DataError(f"the {name} split has {len(data):,} tokens, too few for block_size {block_size}: "
                        f"use a smaller block_size or more text")
    if batch_size > len(data) - block_size:
        raise DataError(f"batch_size ({batch_size}) is larger than the {len(data) - block_size:,} distinct "
                        f"chunks of {block_size} tokens in the {name} split; use a smaller batch_size")


class DivergenceGuard:
    """Watches each step's loss for NaN or inf on the device, without waiting for the device.

    It keeps, on the device, the first step whose loss was not finite and that loss, and from that
    step on has the optimiser skip every step, so the weights stay those from before it: the fused
    AdamW kernel takes a ``found_inf`` flag (the one `torch.amp.GradScaler` uses to skip a step whose
    gradients overflowed), and with a GradScaler the loss is made NaN so the scaler skips the step.
    `check`, at each evaluation, reads it (one wait) and raises `TrainingDivergedError` naming the
    step. The plain AdamW loop (the readable path) cannot skip a step on the device, so with it the
    guard checks before every step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, advice: str = ""):
        # fused AdamW (the speed plans) can skip a step on the device; the plain loop cannot
        self.on_device = bool(getattr(optimizer, "_step_supports_amp_scaling", False))
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)  # the first non-finite loss: nan or inf
        self.last_loss = torch.zeros((), device=device)
        self.advice = advice

    @property
    def diverged(self) -> torch.Tensor:
        """A flag on the device: whether any loss so far was not finite."""
        return self.first_bad_step >= 0

    def watch(self, loss: torch.Tensor, step: int) -> None:
        """Note ``loss`` of optimiser step ``step``, on the device."""
        loss = loss.detach().float()
        first = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(first, step, self.first_bad_step)
        self.bad_loss = torch.where(first, loss, self.bad_loss)
        self.last_loss = loss

    def nan_once_diverged(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss``, or NaN from the first bad step on: a GradScaler then finds NaN gradients and
        skips the step."""
        return loss * torch.where(self.diverged, math.nan, 1.0)

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        """The optimiser step, skipped once the loss has diverged."""
        if not self.on_device:
            self.check()  # waits for this step's loss: the plain loop cannot skip a step on the device
        if scaler is not None:
            scaler.step(optimizer)  # skipped if the gradients are not finite
            scaler.update()
        elif self.on_device:
            optimizer.found_inf, optimizer.grad_scale = self.diverged.float(), None
            try:
                optimizer.step()
            finally:
                del optimizer.found_inf, optimizer.grad_scale
        else:
            optimizer.step()

    def check(self) -> float:
        """Raise `TrainingDivergedError` if a loss was not finite; else return the last step's loss.
        Waits for the device (once: one transfer of three numbers)."""
        step, bad, last = torch.stack([self.first_bad_step.double(), self.bad_loss.double(),
                                       self.last_loss.double()]).tolist()
        if step >= 0:
            raise TrainingDivergedError(f"the loss became {bad} at step {int(step)}; training stopped. "
                                        f"{self.advice}")
        return last


def forward_backward(step_model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, grad_accum: int = 1,
                     dist: Distributed = SINGLE, replica: nn.Module | None = None,
                     speed: SpeedConfig | None = None, device: torch.device | str = "cpu",
                     scale: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Add the gradient of the mean loss over the global batch (x, y) to the parameters' ``.grad``
    and return that loss (the same on every process). ``scale`` (fp16's GradScaler) scales each
    loss before its backward pass.

    This process takes its rows of the batch (all of them in one process) in ``grad_accum``
    micro-batches and backpropagates each micro-batch's loss / grad_accum: equal micro-batches, so
    the sum is the whole share's mean. Under DDP (``replica``) the last backward also averages the
    gradients over the processes (equal shares again), so every process ends with the whole batch's.
    """
    loss = 0.0
    micro_xs, micro_ys = dist.my_rows(x).chunk(grad_accum), dist.my_rows(y).chunk(grad_accum)  # (b,T) each
    for i, (xm, ym) in enumerate(zip(micro_xs, micro_ys)):
        with dist.no_sync(replica, skip=i < grad_accum - 1):  # all-reduce once, after the last one
            with autocast(speed, device):
                _, micro_loss = step_model(xm, ym)
            part = micro_loss / grad_accum
            (part if scale is None else scale(part)).backward()
        loss = loss + micro_loss.detach() / grad_accum
    return dist.mean(loss)


def train(model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, config: TrainConfig, *,
          block_size: int, device: torch.device | str = "cpu", callbacks: Iterable[Callback] = (),
          state: TrainState | None = None, progress: bool = True,
          speed: SpeedConfig | None = None, dist: Distributed = SINGLE, grad_accum: int = 1,
          after_step: Callable[[int], None] | None = None) -> TrainState:
    """Train ``model`` for ``config.max_iters`` steps and return the final `TrainState`.

    Evaluates every ``eval_interval`` steps and at the last step, appends to ``state.history`` and
    calls each callback with the state. Pass a previous ``state`` to continue where it stopped.
    A loss that turns NaN or infinite stops training with `TrainingDivergedError` at the next
    evaluation, naming its step; no optimiser step is applied from that step on (`DivergenceGuard`).
    ``speed`` (see `gptlib.speed.speed_plan`) switches on autocast (fp16 with a GradScaler), TF32,
    fused AdamW and torch.compile. ``grad_accum`` splits each batch into that many micro-batches
    (same result, less memory). ``dist`` (`gptlib.distributed.from_env`, under torchrun) trains this
    process's share of each batch as a DDP replica; only rank 0 evaluates and calls the callbacks.
    ``after_step`` is called with the step number after every step (`gptlib.pace.PaceWatch`).
    """
    with backend_flags(speed):  # TF32 for this run only: the process is left as it was found
        return _train(model, train_data, val_data, config, block_size=block_size, device=device,
                      callbacks=callbacks, state=state, progress=progress, speed=speed, dist=dist,
                      grad_accum=grad_accum, after_step=after_step)


def _train(model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, config: TrainConfig, *,
           block_size: int, device: torch.device | str, callbacks: Iterable[Callback],
           state: TrainState | None, progress: bool, speed: SpeedConfig | None, dist: Distributed,
           grad_accum: int, after_step: Callable[[int], None] | None) -> TrainState:
    """`train`'s loop, inside the run's backend settings."""
    from tqdm.auto import tqdm

    for name, data in (("train", train_data), ("val", val_data)):
        _check_split(name, data, config.batch_size, block_size)
    split_batch(config.batch_size, dist.world_size, grad_accum)  # before the processes connect
    device = torch.device(device)
    model.to(device)
    model.train()
    if device.type == "cpu":
        # reuse the big activations' memory step after step (process-wide, and kept: glibc cannot
        # read the setting back, so unlike TF32 it is not restored; it changes no result)
        keep_freed_memory()
    if state is None:
        batch_gen, eval_gen = make_generators(config.seed, device)
        optimizer = make_optimizer(model, config, fused=speed is not None and speed.fused_adamw)
        state = TrainState(model=model, optimizer=optimizer, config=config, step=0,
                           history=History(), batch_generator=batch_gen, eval_generator=eval_gen)
    if state.scaler is None:  # fp16 always trains with a GradScaler (a resumed state brings its own)
        state.scaler = make_grad_scaler(speed, device)
    advice = f"Try a lower learning_rate (now {config.learning_rate}) or set grad_clip (e.g. 1.0)"
    if speed is not None and speed.autocast_dtype == "float16":
        advice += ", or train in bfloat16 or float32 (--dtype), whose range is wider"
    guard = DivergenceGuard(state.optimizer, device, advice)
    # fp16: backpropagate the loss scaled up, so small gradients do not flush to zero
    scale = None if state.scaler is None else (lambda l: state.scaler.scale(guard.nan_once_diverged(l)))
    # a CUDA run's generators draw the batches on the GPU: the data goes there once, not every step
    train_data = _where_drawn(train_data, state.batch_generator)
    splits = {"train": _where_drawn(train_data, state.eval_generator),  # (the same tensor, once there)
              "val": _where_drawn(val_data, state.eval_generator)}
    callbacks = list(callbacks)
    start = time.perf_counter() - (state.history.elapsed[-1] if len(state.history) else 0.0)

    bar = tqdm(total=config.max_iters, initial=state.step, desc="training",
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    with bar, process_group(dist):  # torchrun's processes connect here and leave together at the end
        replica = dist.wrap(model)  # DDP averages the gradients over the processes; one process: model
        # the training steps may run a compiled copy; evaluation runs the plain model (no recompiling)
        step_model = torch.compile(replica) if speed is not None and speed.compile else replica
        while state.step < config.max_iters:
            lr = get_lr(state.step, config)
            for group in state.optimizer.param_groups:
                group["lr"] = lr
            # (B,T): the global batch, the same on every process; each trains on its own rows
            x, y = get_batch(train_data, config.batch_size, block_size, state.batch_generator, device)
            state.optimizer.zero_grad(set_to_none=True)
            loss = forward_backward(step_model, x, y, grad_accum=grad_accum, dist=dist, replica=replica,
                                    speed=speed, device=device, scale=scale)
            guard.watch(loss, state.step)  # on the device: nothing here waits for the GPU
            if state.scaler is not None:
                state.scaler.unscale_(state.optimizer)  # the true gradients, for clipping
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            guard.step(state.optimizer, state.scaler)  # skipped from a NaN/inf loss on
            state.step += 1
            bar.update(1)
            if after_step is not None:
                after_step(state.step)

            evaluate = state.step % config.eval_interval == 0 or state.step == config.max_iters
            if evaluate:
                last_loss = guard.check()  # on every process, before anything is evaluated or saved
            if evaluate and dist.is_main:  # under torchrun only rank 0 evaluates, logs and saves
                with autocast(speed, device):
                    losses = estimate_loss(model, splits, config.batch_size, block_size, config.eval_iters,
                                           state.eval_generator, device)
                bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{losses['val']:.3f}", refresh=False)
                state.improved = losses["val"] < state.history.best_val_loss
                state.history.append(state.step, losses["train"], losses["val"], lr,
                                     time.perf_counter() - start)
                for callback in callbacks:
                    callback(state)
            if evaluate and dist.from_main(state.stop):  # rank 0's callbacks stop every process
                break
    return state
