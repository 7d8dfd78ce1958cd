"""`train`: a loop that knows nothing about GPT (any ``forward(idx, targets) -> (logits, loss)`` trains);
callbacks (live plots, checkpoints, early stopping) see a `TrainState` after each evaluation."""

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn

from gptlib.batches import get_batch
from gptlib.config import TrainConfig
from gptlib.distributed import SINGLE, Distributed, process_group
from gptlib.errors import TrainingDivergedError
from gptlib.speed import SpeedConfig, autocast, backend_flags, keep_freed_memory, make_grad_scaler


@dataclass
class History:
    """One row per evaluation: step, mean train and val loss, learning rate, seconds since start."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)

    def append(self, *row: float) -> None:
        """Add one evaluation's row, in the fields' order."""
        for column, value in zip(fields(self), row, strict=True):
            getattr(self, column.name).append(value)

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
                  eval_iters: int, generator: torch.Generator, device: torch.device | str) -> dict:
    """Mean loss over ``eval_iters`` random batches of each split, in eval mode (then back to the model's)."""
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
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), fused=fused)


def make_generators(seed: int, device: torch.device | str = "cpu") -> tuple[torch.Generator, torch.Generator]:
    """Separate random streams for training and evaluation batches, on a CUDA device, else the CPU."""
    where = device if torch.device(device).type == "cuda" else "cpu"
    return tuple(torch.Generator(device=where).manual_seed(seed + i) for i in (0, 1))


@dataclass
class TrainOptions:
    """`train`'s keyword arguments; only ``block_size`` must be given."""

    block_size: int
    device: torch.device | str = "cpu"
    callbacks: Iterable[Callback] = ()  # called with the `TrainState` after every evaluation
    state: TrainState | None = None  # a previous call's state: continue where it stopped
    progress: bool = True  # a tqdm progress bar
    speed: SpeedConfig | None = None  # `gptlib.speed.speed_plan`: autocast, TF32, fused AdamW, compile
    dist: Distributed = SINGLE  # under torchrun: train this process's rows of each batch, as a DDP replica
    grad_accum: int = 1  # micro-batches per step: the same result in less memory
    after_step: Callable[[int], None] | None = None  # called with the step after every step (PaceWatch)


def train(model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, config: TrainConfig,
          **options) -> TrainState:
    """Train ``model`` for ``config.max_iters`` steps (``options``: `TrainOptions`' fields), evaluating every
    ``eval_interval`` and at the last; a NaN or inf loss raises `TrainingDivergedError` at the next one."""
    opts = TrainOptions(**options)
    with backend_flags(opts.speed):
        return _Loop(model, train_data, val_data, config, opts).run()


class _Loop:
    """`train`'s working state. From the first NaN/inf loss (noted on the device) the loss is made NaN, so
    the GradScaler (fp16's, else one at scale 1) skips each step; no step waits for the device."""

    def __init__(self, model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor,
                 config: TrainConfig, opts: TrainOptions):
        self.model, self.config, self.opts, self.callbacks = model, config, opts, list(opts.callbacks)
        self.device = device = torch.device(opts.device)
        speed, s = opts.speed, opts.state
        model.to(device).train()
        if device.type == "cpu":
            keep_freed_memory()  # reuse the activations' memory from step to step (changes no result)
        if s is None:
            optimizer = make_optimizer(model, config, fused=speed is not None and speed.fused_adamw)
            s = TrainState(model, optimizer, config, 0, History(), *make_generators(config.seed, device))
        if s.scaler is None:  # fp16 always trains with a GradScaler (a resumed state brings its own)
            s.scaler = make_grad_scaler(speed, device)
        self.state, self.fp16 = s, s.scaler is not None
        self.scaler = s.scaler or torch.amp.GradScaler(device.type, init_scale=1.0, growth_interval=2**30)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)  # the first non-finite loss's
        self.bad_loss, self.last_loss = torch.zeros((), device=device), torch.zeros((), device=device)
        # a CUDA run's generators draw the batches on the GPU: the data goes there once, not every step
        self.train_data = train_data.to(s.batch_generator.device)
        self.splits = {"train": self.train_data.to(s.eval_generator.device),
                       "val": val_data.to(s.eval_generator.device)}
        self.start = time.perf_counter() - (s.history.elapsed[-1] if len(s.history) else 0.0)

    def run(self) -> TrainState:
        """Step until ``max_iters``, evaluating every ``eval_interval`` steps and at the last."""
        from tqdm.auto import tqdm
        s, o, config = self.state, self.opts, self.config
        bar = tqdm(total=config.max_iters, initial=s.step, desc="training",
                   disable=not (o.progress and o.dist.is_main), dynamic_ncols=True)
        with bar, process_group(o.dist):  # torchrun's processes connect here and leave together
            replica = o.dist.wrap(self.model)  # DDP averages the gradients over the processes
            # the steps may run a compiled copy; evaluation runs the plain model (no recompiling)
            step_model = torch.compile(replica) if o.speed is not None and o.speed.compile else replica
            while s.step < config.max_iters:
                lr = self.step(step_model, replica)
                bar.update(1)
                if o.after_step is not None:
                    o.after_step(s.step)
                if s.step % config.eval_interval == 0 or s.step == config.max_iters:
                    self.evaluate(lr, bar)
                    if o.dist.from_main(s.stop):  # rank 0's callbacks stop every process
                        break
        return s

    def step(self, step_model: nn.Module, replica: nn.Module) -> float:
        """One optimiser step on the mean loss of one global batch, in ``grad_accum`` micro-batches of this
        process's rows (each backpropagates loss / grad_accum); returns the learning rate."""
        s, o, config = self.state, self.opts, self.config
        lr = get_lr(s.step, config)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        # (B,T): the global batch, the same on every process; each trains on its own rows
        x, y = get_batch(self.train_data, config.batch_size, o.block_size, s.batch_generator, self.device)
        s.optimizer.zero_grad(set_to_none=True)
        loss, diverged = 0.0, torch.where(self.bad_step >= 0, math.nan, 1.0)  # NaN: the scaler skips
        for i, (xm, ym) in enumerate(zip(o.dist.my_rows(x).chunk(o.grad_accum),
                                         o.dist.my_rows(y).chunk(o.grad_accum))):  # (b,T) each
            with o.dist.no_sync(replica, skip=i < o.grad_accum - 1):  # all-reduce after the last one
                with autocast(o.speed, self.device):
                    _, micro_loss = step_model(xm, ym)
                self.scaler.scale(micro_loss / o.grad_accum * diverged).backward()
            loss = loss + micro_loss.detach() / o.grad_accum
        loss = o.dist.mean(loss).float()
        first = ~torch.isfinite(loss) & (self.bad_step < 0)  # on the device: nothing here waits for it
        self.bad_step = torch.where(first, s.step, self.bad_step)
        self.bad_loss, self.last_loss = torch.where(first, loss, self.bad_loss), loss
        self.scaler.unscale_(s.optimizer)  # the true gradients, for clipping
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.scaler.step(s.optimizer)  # skipped if the gradients are not finite
        self.scaler.update()
        s.step += 1
        return lr

    def evaluate(self, lr: float, bar) -> None:
        """Raise `TrainingDivergedError` if a loss was not finite; on rank 0, estimate, log and call back."""
        s, o = self.state, self.opts
        step, bad, last = torch.stack([self.bad_step.double(), self.bad_loss.double(),
                                       self.last_loss.double()]).tolist()
        if step >= 0:
            advice = (", set `grad_clip` (e.g. 1.0) or train in bfloat16 or float32 (`dtype`), whose range "
                      "is wider" if self.fp16 else " or set `grad_clip` (e.g. 1.0)")
            raise TrainingDivergedError(f"the loss became {bad} at step {int(step)}; training stopped. Try a "
                                        f"lower `learning_rate` (now {self.config.learning_rate}){advice}",
                                        step=int(step))
        if not o.dist.is_main:  # under torchrun only rank 0 evaluates, logs and saves
            return
        with autocast(o.speed, self.device):
            losses = estimate_loss(self.model, self.splits, self.config.batch_size, o.block_size,
                                   self.config.eval_iters, s.eval_generator, self.device)
        bar.set_postfix(loss=f"{last:.3f}", val=f"{losses['val']:.3f}", refresh=False)
        s.improved = losses["val"] < s.history.best_val_loss
        s.history.append(s.step, losses["train"], losses["val"], lr, time.perf_counter() - self.start)
        for callback in self.callbacks:
            callback(s)
