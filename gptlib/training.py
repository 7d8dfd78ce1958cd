"""Training: `estimate_loss`, the learning-rate schedule and `train`, a loop that knows nothing about GPT.

Any model with ``forward(idx, targets) -> (logits, loss)`` trains. Callbacks see a `TrainState` after
every evaluation: live plots, checkpoints and early stopping plug in there. Nothing in a step waits for
the device: the loss is checked for NaN or inf at each evaluation (`DivergenceGuard`).
"""

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

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


class DivergenceGuard:
    """Notes on the device the first step whose loss is NaN or inf, and skips that step and every later one.

    From the first bad step on the loss is made NaN, so a `torch.amp.GradScaler` (fp16's, else one that
    keeps a scale of 1, which changes no number) finds non-finite gradients and skips the optimiser step:
    the weights stay those from before it. `check`, at each evaluation, reads the device once.
    """

    def __init__(self, scaler: torch.amp.GradScaler | None, device: torch.device, advice: str = ""):
        self.scaler = scaler or torch.amp.GradScaler(device.type, init_scale=1.0, growth_interval=2**30)
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)  # the first non-finite loss: nan or inf
        self.last_loss = torch.zeros((), device=device)
        self.advice = advice

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` for the backward pass: scaled (fp16), and NaN once a step has diverged."""
        return self.scaler.scale(loss * torch.where(self.first_bad_step >= 0, math.nan, 1.0))

    def watch(self, loss: torch.Tensor, step: int) -> None:
        """Note ``loss`` of optimiser step ``step``, on the device."""
        loss = loss.detach().float()
        first = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(first, step, self.first_bad_step)
        self.bad_loss = torch.where(first, loss, self.bad_loss)
        self.last_loss = loss

    def check(self) -> float:
        """The last step's loss; `TrainingDivergedError` (with its ``step``) if a loss was not finite."""
        step, bad, last = torch.stack([self.first_bad_step.double(), self.bad_loss.double(),
                                       self.last_loss.double()]).tolist()
        if step >= 0:
            raise TrainingDivergedError(f"the loss became {bad} at step {int(step)}; training stopped. "
                                        f"{self.advice}", step=int(step), loss=bad)
        return last


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
    """Train ``model`` for ``config.max_iters`` steps and return the final `TrainState`.

    ``options`` are `TrainOptions`' fields. Evaluates every ``eval_interval`` steps and at the last, then
    calls the callbacks; a loss that turns NaN or inf raises `TrainingDivergedError` there, naming its
    step, and no optimiser step from that step on is applied. Under torchrun only rank 0 evaluates and
    calls the callbacks. The run's TF32 setting is undone when it ends.
    """
    opts = TrainOptions(**options)
    with backend_flags(opts.speed):
        return _Loop(model, train_data, val_data, config, opts).run()


class _Loop:
    """`train`'s working state: the model, the data on its device, the guard and the options."""

    def __init__(self, model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor,
                 config: TrainConfig, opts: TrainOptions):
        self.model, self.config, self.opts, self.callbacks = model, config, opts, list(opts.callbacks)
        self.device = device = torch.device(opts.device)
        speed = opts.speed
        model.to(device)
        model.train()
        if device.type == "cpu":
            # reuse the big activations' memory step after step (process-wide and kept: glibc cannot
            # read the setting back; it changes no result)
            keep_freed_memory()
        state = opts.state
        if state is None:
            batch_gen, eval_gen = make_generators(config.seed, device)
            optimizer = make_optimizer(model, config, fused=speed is not None and speed.fused_adamw)
            state = TrainState(model, optimizer, config, 0, History(), batch_gen, eval_gen)
        if state.scaler is None:  # fp16 always trains with a GradScaler (a resumed state brings its own)
            state.scaler = make_grad_scaler(speed, device)
        self.state = state
        advice = f"Try a lower learning_rate (now {config.learning_rate}) or set grad_clip (e.g. 1.0)"
        if speed is not None and speed.autocast_dtype == "float16":
            advice += ", or train in bfloat16 or float32, whose range is wider"
        self.guard = DivergenceGuard(state.scaler, device, advice)
        # a CUDA run's generators draw the batches on the GPU: the data goes there once, not every step
        self.train_data = _where_drawn(train_data, state.batch_generator)
        self.splits = {"train": _where_drawn(self.train_data, state.eval_generator),  # (once there)
                       "val": _where_drawn(val_data, state.eval_generator)}
        self.start = time.perf_counter() - (state.history.elapsed[-1] if len(state.history) else 0.0)

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
        """One optimiser step on one batch; returns its learning rate. Nothing here waits for a GPU."""
        s, config = self.state, self.config
        lr = get_lr(s.step, config)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        # (B,T): the global batch, the same on every process; each trains on its own rows
        x, y = get_batch(self.train_data, config.batch_size, self.opts.block_size, s.batch_generator,
                         self.device)
        s.optimizer.zero_grad(set_to_none=True)
        self.guard.watch(self.forward_backward(step_model, replica, x, y), s.step)
        self.guard.scaler.unscale_(s.optimizer)  # the true gradients, for clipping
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.guard.scaler.step(s.optimizer)  # skipped if the gradients are not finite
        self.guard.scaler.update()
        s.step += 1
        return lr

    def forward_backward(self, step_model: nn.Module, replica: nn.Module, x: torch.Tensor,
                         y: torch.Tensor) -> torch.Tensor:
        """Add the gradient of the mean loss over the global batch (x, y) to ``.grad``; return that loss.

        This process's rows go in ``grad_accum`` equal micro-batches, each backpropagating its loss /
        grad_accum, so the sum is the mean; under DDP the last backward also averages over processes.
        """
        o, loss = self.opts, 0.0
        micro_xs, micro_ys = o.dist.my_rows(x).chunk(o.grad_accum), o.dist.my_rows(y).chunk(o.grad_accum)
        for i, (xm, ym) in enumerate(zip(micro_xs, micro_ys)):  # (b,T) each
            with o.dist.no_sync(replica, skip=i < o.grad_accum - 1):  # all-reduce after the last one
                with autocast(o.speed, self.device):
                    _, micro_loss = step_model(xm, ym)
                self.guard.scale(micro_loss / o.grad_accum).backward()
            loss = loss + micro_loss.detach() / o.grad_accum
        return o.dist.mean(loss)

    def evaluate(self, lr: float, bar) -> None:
        """Check the loss (every process), then on rank 0 estimate it, log it and call the callbacks."""
        s, o = self.state, self.opts
        last_loss = self.guard.check()  # before anything is evaluated or saved
        if not o.dist.is_main:  # under torchrun only rank 0 evaluates, logs and saves
            return
        with autocast(o.speed, self.device):
            losses = estimate_loss(self.model, self.splits, self.config.batch_size, o.block_size,
                                   self.config.eval_iters, s.eval_generator, self.device)
        bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{losses['val']:.3f}", refresh=False)
        s.improved = losses["val"] < s.history.best_val_loss
        s.history.append(s.step, losses["train"], losses["val"], lr, time.perf_counter() - self.start)
        for callback in self.callbacks:
            callback(s)
