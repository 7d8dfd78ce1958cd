"""The ablation ladder: the lecture's models between the bigram and the GPT, one small class per rung,
the one training budget they all share, and the results file the chapters fill in.

The rungs, bottom to top (chapter 2, 4 and 5 each train the ones they explain):

- ``bigram``: a (V, V) lookup table — `gptlib.bigram.BigramLanguageModel` (chapter 2)
- ``single_head``: + position embeddings and one head with head_size = C — `SingleHeadLM` (chapter 4)
- ``multi_head``: four heads of C/4 channels instead of one — `MultiHeadLM` (chapter 4)
- ``multi_head_ff``: + a feed-forward layer after attention — `MultiHeadFeedForwardLM` (chapter 4)
- ``residual``: n_layer blocks with residual connections, no LayerNorm — `ResidualLM` (chapter 5)
- ``layernorm``: + pre-norm LayerNorm, i.e. the book's GPT — `LayerNormLM` (chapter 5)
- ``scaled_up``: `gptlib.model.GPT` at the ``cpu`` preset's size and budget (chapter 5)

Every rung but the last trains with `LADDER` (same data, seed, batch, block, steps and learning rate);
the last with the ``cpu`` preset. `train_rung` trains one through `gptlib.run.train_run`, the one
run path; `record_rung` adds its result to a ladder file whose path the caller chooses (the book
keeps its own in its results folder) and `load_ladder` reads one back. The final chapter adds its
own rung the same way.

Shapes: B = batch, T = time, C = channels (n_embd), V = vocabulary size.
"""

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from gptlib.attention import Head, MultiHeadAttention
from gptlib.bigram import lm_loss
from gptlib.config import GPTConfig, TrainConfig
from gptlib.files import atomic_write
from gptlib.model import GPT, FeedForward, count_parameters
from gptlib.presets import Preset
from gptlib.run import Corpus, Run, RunResult, train_run
from gptlib.speed import READABLE

# The shared budget: the lecture's small model (32 wide, 4 heads, 3 blocks, context 8, batch 32), with
# 3,000 steps instead of 5,000 so that a rung takes about a minute on a laptop CPU. To make up for the
# fewer steps the learning rate warms up to 3e-3 and decays to 3e-4 (the lecture: a constant 1e-3).
LADDER = Preset(
    "ladder", "the shared budget of the ablation ladder: the lecture's small model, 3,000 steps",
    GPTConfig(vocab_size=65, block_size=8, n_embd=32, n_head=4, n_layer=3, dropout=0.0),
    TrainConfig(batch_size=32, max_iters=3000, eval_interval=300, eval_iters=50, learning_rate=3e-3,
                min_lr=3e-4, warmup_iters=100, decay_lr=True, grad_clip=1.0),
)

# The rung names in ladder order, and how the table labels them.
RUNGS: dict[str, str] = {
    "bigram": "bigram",
    "single_head": "+ one head (with positions)",
    "multi_head": "multi-head (4 heads)",
    "multi_head_ff": "+ feed-forward",
    "residual": "+ residual (3 blocks)",
    "layernorm": "+ LayerNorm (the GPT)",
    "scaled_up": "scaled up (cpu preset)",
}

# ---------------------------------------------------------------------------------------------------
# The rung models. Each follows the book's contract forward(idx, targets) -> ((B,T,V) logits, loss),
# and has a ``block_size`` so that `gptlib.sampling.generate` can crop the context. They keep PyTorch's
# default initialisation, as in the lecture: gptlib's normal(0, 0.02) (`gptlib.init`) is made for the
# GPT's residual stream, and in these plain stacks it shrinks the signal layer by layer (measured on
# the ladder budget: val 2.61 instead of 2.17 for `MultiHeadFeedForwardLM`).


class SingleHeadLM(nn.Module):
    """Token + position embeddings, one self-attention head as wide as the embedding, a linear head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.sa_head = Head(config, config.n_embd)  # head_size = C, so the output is (B,T,C)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """(B,T) -> logits (B,T,V), loss."""
        T = idx.shape[1]
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T, device=idx.device))
        x = self.sa_head(x)  # (B,T,C): each token a weighted average of the values so far
        logits = self.lm_head(x)  # (B,T,V)
        return logits, None if targets is None else lm_loss(logits, targets)


class MultiHeadLM(nn.Module):
    """`SingleHeadLM` with n_head heads of C / n_head channels each, concatenated and projected."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.sa_heads = MultiHeadAttention(config)  # n_head x (B,T,hs) -> (B,T,C)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """(B,T) -> logits (B,T,V), loss."""
        T = idx.shape[1]
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T, device=idx.device))
        x = self.sa_heads(x)  # (B,T,C)
        logits = self.lm_head(x)  # (B,T,V)
        return logits, None if targets is None else lm_loss(logits, targets)


class MultiHeadFeedForwardLM(nn.Module):
    """`MultiHeadLM` plus a per-token feed-forward layer: communication, then computation (one layer,
    no residual connection and no LayerNorm yet)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.sa_heads = MultiHeadAttention(config)
        self.ffwd = FeedForward(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """(B,T) -> logits (B,T,V), loss."""
        T = idx.shape[1]
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T, device=idx.device))
        x = self.sa_heads(x)  # (B,T,C) the tokens talk
        x = self.ffwd(x)  # (B,T,C) each token thinks about what it heard
        logits = self.lm_head(x)  # (B,T,V)
        return logits, None if targets is None else lm_loss(logits, targets)


class ResidualBlock(nn.Module):
    """`gptlib.model.Block` without the LayerNorms: each sub-layer adds to the residual stream."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.sa = MultiHeadAttention(config)
        self.ffwd = FeedForward(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C)."""
        x = x + self.sa(x)  # the addition passes gradients straight through
        x = x + self.ffwd(x)
        return x


class ResidualLM(nn.Module):
    """n_layer `ResidualBlock`s between the embeddings and the linear head: the GPT without LayerNorm."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.Sequential(*[ResidualBlock(config) for _ in range(config.n_layer)])
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """(B,T) -> logits (B,T,V), loss."""
        T = idx.shape[1]
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T, device=idx.device))
        x = self.blocks(x)  # (B,T,C)
        logits = self.lm_head(x)  # (B,T,V)
        return logits, None if targets is None else lm_loss(logits, targets)


class LayerNormLM(GPT):
    """`gptlib.model.GPT` (pre-norm LayerNorm in every block, and a final one) with PyTorch's default
    initialisation, like the rungs below it, so that this rung adds LayerNorm and nothing else."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        for module in self.modules():  # undo gptlib's normal(0, 0.02): back to each layer's default
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()


# ---------------------------------------------------------------------------------------------------
# Training a rung, and the results file.


def budget_dict(budget: Preset) -> dict:
    """A budget as plain JSON: its name, description and both configs."""
    return {"name": budget.name, "description": budget.description,
            "model": asdict(budget.model), "train": asdict(budget.train)}


def train_rung(name: str, make_model: Callable[[GPTConfig], nn.Module], budget: Preset, corpus: Corpus,
               *, label: str | None = None, device: torch.device | str = "cpu", progress: bool = True,
               speed=READABLE) -> dict:
    """Train the rung ``make_model`` builds (from ``budget.model``, vocabulary set from the corpus)
    with ``budget.train`` through `gptlib.run.train_run`, and return its ladder entry (a JSON-ready
    dict). Every rung starts alike: the run seeds the weights and the batches with ``budget.train.seed``.
    The rungs train the readable way (``speed``: `READABLE`), as the chapters write them."""
    run = Run.from_preset(budget, speed=speed, device=str(device))
    result = train_run(run, make_model=make_model, corpus=corpus, progress=progress, log=lambda _: None)
    return rung_entry(name, result, label=label)


def rung_entry(name: str, result: RunResult, *, at: int = -1, label: str | None = None,
               device: str | None = None) -> dict:
    """The ladder entry of a finished run: its losses at evaluation ``at`` (the last by default; the
    best checkpoint's index for a run that keeps it), parameters, wall time and history."""
    history = result.history.to_dict()
    return {
        "name": name,
        "label": label or RUNGS.get(name, name),
        "val_loss": history["val_loss"][at],
        "train_loss": history["train_loss"][at],
        "params": count_parameters(result.model),
        "wall_s": round(history["elapsed"][-1], 1),
        "device": device or str(result.device),
        "budget": result.run.name,
        "history": history,
    }


def load_ladder(path: str | os.PathLike) -> dict:
    """The ladder file as a dict ``{"budget": ..., "rungs": [...]}``; an empty ladder if there is none."""
    path = Path(path)
    if not path.exists():
        return {"budget": budget_dict(LADDER), "rungs": []}
    return json.loads(path.read_text())


def _ladder_index(name: str) -> float:
    order = list(RUNGS)
    return order.index(name) if name in order else float("inf")


def record_rung(rung: dict, path: str | os.PathLike, *, start_from: str | os.PathLike | None = None) -> dict:
    """Add ``rung`` to the ladder file and return the new ladder.

    An entry with the same name is replaced in place; a new rung of the book's ladder goes to its
    place in ladder order, any other name (the final chapter's "lecture GPU") at the end. A ladder
    file that does not exist yet starts as a copy of ``start_from`` (e.g. the book's own results). The
    file is written to a temporary file and renamed over the old one, so it is never left half written.
    """
    path = Path(path)
    ladder = load_ladder(path if path.exists() or start_from is None else start_from)
    ladder["budget"] = budget_dict(LADDER)
    rungs = ladder["rungs"]
    names = [r["name"] for r in rungs]
    if rung["name"] in names:
        rungs[names.index(rung["name"])] = rung
    else:
        i = _ladder_index(rung["name"])
        pos = next((k for k, r in enumerate(rungs) if _ladder_index(r["name"]) > i), len(rungs))
        rungs.insert(pos, rung)
    with atomic_write(path) as f:
        f.write((json.dumps(ladder, indent=1) + "\n").encode("utf-8"))
    return ladder


def ladder_table(ladder: dict, names=None) -> str:
    """The ladder as a fixed-width text table: rung, budget, params, train and val loss, wall time."""
    rungs = ladder["rungs"]
    if names is not None:
        rungs = [r for r in rungs if r["name"] in set(names)]
    lines = [f"{'rung':<30} {'budget':<8} {'params':>9} {'train':>7} {'val':>7} {'wall s':>7}  device"]
    for r in rungs:
        lines.append(f"{r['label']:<30} {r['budget']:<8} {r['params']:>9,} {r['train_loss']:>7.4f} "
                     f"{r['val_loss']:>7.4f} {r['wall_s']:>7.1f}  {r['device']}")
    return "\n".join(lines)
