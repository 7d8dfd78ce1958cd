"""The ablation ladder (chapters 2, 4, 5): a class per rung from the bigram to the GPT, `COUNTERFACTUALS` that
each change one thing, their budget (`LADDER`), `train_rung`, and the results file (`record_rung`).

Shapes: B = batch, T = time, C = channels (n_embd), V = vocabulary size."""

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.attention import Head, MultiHeadAttention
from gptlib.bigram import lm_loss
from gptlib.config import GPTConfig, TrainConfig
from gptlib.files import atomic_write, results_folder
from gptlib.model import GPT, Block, FeedForward, LanguageModel, count_parameters
from gptlib.presets import Preset
from gptlib.run import Corpus, Run, RunResult, train_run
from gptlib.speed import READABLE

# The lecture's model, 3,000 steps not 5,000 (a minute a rung on a CPU): lr warms up to 3e-3, decays to 3e-4.
LADDER = Preset("ladder", "the shared budget of the ablation ladder: the lecture's small model, 3,000 steps",
                GPTConfig(vocab_size=65, block_size=8, n_embd=32, n_head=4, n_layer=3, dropout=0.0),
                TrainConfig(batch_size=32, max_iters=3000, eval_interval=300, eval_iters=50,
                            learning_rate=3e-3, min_lr=3e-4, warmup_iters=100, decay_lr=True, grad_clip=1.0))

RUNGS: dict[str, str] = {  # the rung names in ladder order, and how the table labels them
    "bigram": "bigram",
    "single_head": "+ one head (with positions)",
    "multi_head": "multi-head (4 heads)",
    "multi_head_ff": "+ feed-forward",
    "residual": "+ residual (3 blocks)",
    "layernorm": "+ LayerNorm (the GPT)",
    "scaled_up": "scaled up (cpu preset)",
}

LADDER_SEEDS = (1337, 1338, 1339)  # a rung trains once per seed: how far apart two runs of it land
SPLIT_SCORES = "whole val split; as many chunks spread over train"

COUNTERFACTUALS: dict[str, str] = {  # name -> label: one change to a rung, to measure a claim of the chapters
    "multi_head_no_proj": "multi-head, no projection",
    "multi_head_ff_init": "+ feed-forward, N(0, 0.02) init",
    "residual_init": "+ residual, N(0, 0.02) init",
    "gpt_init": "the GPT, N(0, 0.02) init",
    "gpt_dropout": "the GPT, dropout 0.2",
    "gpt_unscaled": "the GPT without 1/sqrt(hs)",
    "gpt_no_positions": "the GPT without positions",
    "gpt_post_norm": "the GPT, post-norm",
}


class RungLM(LanguageModel):
    """`SingleHeadLM` to `ResidualLM`: embeddings, the ``LAYERS`` (name -> maker of the config), a head."""
    LAYERS: dict[str, Callable[[GPTConfig], nn.Module]] = {}

    def __init__(self, config: GPTConfig):
        super().__init__(config)  # the token and position embedding tables
        for name, make in self.LAYERS.items():
            setattr(self, name, make(config))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.embed(idx)  # (B,T,C)
        for name in self.LAYERS:
            x = getattr(self, name)(x)  # (B,T,C)
        logits = self.lm_head(x)  # (B,T,V)
        return logits, None if targets is None else lm_loss(logits, targets)


class SingleHeadLM(RungLM):
    """Token + position embeddings, one self-attention head as wide as the embedding, a linear head."""
    LAYERS = {"sa_head": lambda config: Head(config, config.n_embd)}  # head_size = C: the output is (B,T,C)


class MultiHeadLM(RungLM):
    """`SingleHeadLM` with n_head heads of C / n_head channels each, concatenated and projected."""
    LAYERS = {"sa_heads": MultiHeadAttention}  # n_head x (B,T,hs) -> (B,T,C)


class ConcatHeads(nn.Module):
    """`MultiHeadAttention` without its output projection: the heads' outputs, concatenated."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.heads = nn.ModuleList([Head(config, config.head_size) for _ in range(config.n_head)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([h(x) for h in self.heads], dim=-1)  # n_head x (B,T,hs) -> (B,T,C)


class MultiHeadConcatLM(RungLM):
    """`MultiHeadLM` without the projection after the heads, as the lecture's multi-head step has it."""
    LAYERS = {"sa_heads": ConcatHeads}  # n_head x (B,T,hs) -> (B,T,C), no Linear after


class MultiHeadFeedForwardLM(RungLM):
    """`MultiHeadLM` plus a feed-forward layer: communication, then computation (no residual yet)."""
    LAYERS = {"sa_heads": MultiHeadAttention, "ffwd": FeedForward}  # talk, then think


class ResidualBlock(Block):
    """`gptlib.model.Block` without the LayerNorms: each sub-layer adds to the residual stream."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.ln1, self.ln2 = nn.Identity(), nn.Identity()  # (LayerNorm draws no random numbers)


class ResidualLM(RungLM):
    """n_layer `ResidualBlock`s between the embeddings and the linear head: the GPT without LayerNorm."""
    LAYERS = {"blocks": lambda config: nn.Sequential(*[ResidualBlock(config) for _ in range(config.n_layer)])}


class LayerNormLM(GPT):
    """`gptlib.model.GPT` with PyTorch's default initialisation, like the rungs below: it adds LayerNorm."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        for module in self.modules():  # undo gptlib's normal(0, 0.02): back to each layer's default
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()


class UnscaledHead(Head):
    """`Head` without the 1/sqrt(hs) scale: the scores q·k keep a variance of about hs (chapter 3)."""

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        wei = self.query(x) @ self.key(x).transpose(-2, -1)  # (B,T,hs) @ (B,hs,T) -> (B,T,T)
        wei = wei.masked_fill(self.tril[:x.shape[1], :x.shape[1]] == 0, float("-inf"))
        return F.softmax(wei, dim=-1)  # (B,T,T)


class UnscaledLM(LayerNormLM):
    """`LayerNormLM` whose heads are `UnscaledHead`s: the same model minus the scale."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        for block in self.blocks:
            block.sa.heads = nn.ModuleList(UnscaledHead(config, config.head_size) for _ in block.sa.heads)


class NoPositionsLM(LayerNormLM):
    """`LayerNormLM` without position embeddings: only the causal mask tells a token about order."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        del self.position_embedding_table

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        return self.token_embedding_table(idx)


class PostNormBlock(Block):
    """`gptlib.model.Block`, each LayerNorm after its residual addition ("Attention Is All You Need")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.sa(x))  # add, then normalise the stream
        return self.ln2(x + self.ffwd(x))


class PostNormLM(LayerNormLM):
    """`LayerNormLM` with `PostNormBlock`s (the final LayerNorm stays)."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.blocks = nn.Sequential(*[PostNormBlock(config) for _ in range(config.n_layer)])


@torch.no_grad()
def split_loss(model: nn.Module, data: torch.Tensor, block_size: int, *, chunks: int | None = None,
               device: torch.device | str | None = None, batch_size: int = 512) -> float:
    """The mean next-token loss in eval mode over ``data``'s ``block_size`` chunks (or ``chunks`` of them)."""
    device = next(model.parameters()).device if device is None else device
    was_training = model.training
    model.eval()
    n = (len(data) - 1) // block_size  # whole chunks
    x = data[:n * block_size].view(n, block_size)  # (n,T)
    y = data[1:n * block_size + 1].view(n, block_size)  # (n,T), shifted by one
    if chunks is not None and chunks < n:
        keep = torch.linspace(0, n - 1, chunks).round().long()  # evenly spread over the split
        x, y, n = x[keep], y[keep], chunks
    total = 0.0
    for i in range(0, n, batch_size):
        logits, _ = model(x[i:i + batch_size].to(device))  # (B,T,V)
        targets = y[i:i + batch_size].to(device)  # (B,T)
        total += F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum").item()
    model.train(was_training)
    return total / (n * block_size)


def split_scores(model: nn.Module, corpus: Corpus, block_size: int,
                 device: torch.device | str | None = None) -> dict:
    """``{"train_loss", "val_loss"}``: the whole val split, as many chunks of train (equally precise)."""
    val_chunks = (len(corpus.val_data) - 1) // block_size
    return {"train_loss": split_loss(model, corpus.train_data, block_size, chunks=val_chunks, device=device),
            "val_loss": split_loss(model, corpus.val_data, block_size, device=device)}


def _entry(name: str, label: str, kind: str, evaluated_on: str, runs: list[dict], first: RunResult,
           device: str | None = None) -> dict:
    """A ladder entry: the runs' mean losses and their spread, the first run's model, budget and history."""
    entry = {"name": name, "label": label, "kind": kind}
    for split in ("val", "train"):  # the sample standard deviation: None for one run
        losses = [r[f"{split}_loss"] for r in runs]
        entry[f"{split}_loss"] = statistics.fmean(losses)
        entry[f"{split}_std"] = statistics.stdev(losses) if len(runs) > 1 else None
    return {**entry, "evaluated_on": evaluated_on, "seeds": runs, "params": count_parameters(first.model),
            "wall_s": round(statistics.fmean(r["wall_s"] for r in runs), 1),
            "device": device or str(first.device), "budget": first.run.name, "model": asdict(first.run.model),
            "history": first.history.to_dict()}


def train_rung(name: str, make_model: Callable[[GPTConfig], nn.Module], budget: Preset, corpus: Corpus,
               *, seeds: Sequence[int] | None = None, label: str | None = None,
               device: torch.device | str = "cpu", progress: bool = True) -> tuple[dict, nn.Module]:
    """Train and score the rung once per seed (default: the budget's): its entry, the first seed's model."""
    runs, first = [], None
    for seed in (budget.train.seed,) if seeds is None else seeds:
        start = time.perf_counter()
        run = Run.from_preset(replace(budget, train=replace(budget.train, seed=seed)), speed=READABLE,
                              device=str(device))
        result = train_run(run, make_model=make_model, corpus=corpus, progress=progress, log=lambda _: None)
        wall_s = round(time.perf_counter() - start, 1)
        scores = split_scores(result.model, corpus, budget.model.block_size, result.device)
        runs.append({"seed": seed, **scores, "wall_s": wall_s})
        first = first or result
    kind = "counterfactual" if name in COUNTERFACTUALS else "rung"
    label = label or RUNGS.get(name) or COUNTERFACTUALS.get(name, name)
    return _entry(name, label, kind, SPLIT_SCORES, runs, first), first.model


def rung_entry(name: str, result: RunResult, *, model: nn.Module | None = None, at: int = -1,
               label: str | None = None, device: str | None = None) -> dict:
    """A run trained elsewhere (chapter 7's) as an entry: ``model`` scored as a rung, else its own ``at``."""
    history = result.history.to_dict()
    if model is None:
        scores = {"train_loss": history["train_loss"][at], "val_loss": history["val_loss"][at]}
        evaluated_on = f"the run's own estimate at step {history['step'][at]}"
    else:  # on the model's device
        scores, evaluated_on = split_scores(model, result.corpus, result.run.model.block_size), SPLIT_SCORES
    runs = [{"seed": result.run.train.seed, **scores, "wall_s": round(history["elapsed"][-1], 1)}]
    return _entry(name, label or name, "model", evaluated_on, runs, result, device)


def load_ladder(path: str | Path, fallback: str | Path | None = None) -> dict:
    """The ladder file at ``path`` (else at ``fallback``, else an empty ladder): ``{"budget", "rungs"}``."""
    found = [p for p in (path, fallback) if p is not None and Path(p).exists()]
    return json.loads(Path(found[0]).read_text()) if found else {"budget": asdict(LADDER), "rungs": []}


def ladder_file(folder: str | Path | None = None) -> Path:
    """The reader's ``ladder.json`` in ``folder``, by default `gptlib.files.results_folder`."""
    return Path(folder if folder is not None else results_folder()) / "ladder.json"


def record_rung(rung: dict, path: str | Path | None = None, start_from: str | Path | None = None) -> dict:
    """Add ``rung`` to the ladder file ``path`` (`ladder_file`; a new one copies ``start_from``; a ``smoke``
    rung: ``ladder-smoke.json``), atomically: in its namesake's place, else in ladder order, others last."""
    path = ladder_file() if path is None else Path(path)
    if rung.get("budget") == "smoke":
        path, start_from = path.with_name(f"{path.stem}-smoke{path.suffix}"), None
    ladder = load_ladder(path, fallback=start_from)
    ladder["budget"] = asdict(LADDER)
    rungs, names = ladder["rungs"], [r["name"] for r in ladder["rungs"]]
    if rung["name"] in names:
        rungs[names.index(rung["name"])] = rung
    else:
        order = {n: i for i, n in enumerate([*RUNGS, *COUNTERFACTUALS])}  # any other name goes last
        rank = [order.get(r["name"], len(order)) for r in [*rungs, rung]]
        rungs.insert(next((k for k in range(len(rungs)) if rank[k] > rank[-1]), len(rungs)), rung)
    with atomic_write(path) as f:
        f.write((json.dumps(ladder, indent=1) + "\n").encode("utf-8"))
    return ladder


def ladder_table(ladder: dict, names=None) -> str:
    """The ladder (or its ``names``) as a text table: the budget column only if the rungs' budgets differ."""
    rungs = ladder["rungs"]
    rungs = rungs if names is None else [r for n in names for r in rungs if r["name"] == n]  # in names' order
    rows = [("rung", "budget", "params", "seeds", "train", "val", "±", "val-train", "wall s")]
    for r in rungs:
        std = "" if r.get("val_std") is None else f"{r['val_std']:.4f}"
        rows.append((r["label"], r["budget"], f"{r['params']:,}", str(len(r.get("seeds", [])) or 1),
                     f"{r['train_loss']:.4f}", f"{r['val_loss']:.4f}", std,
                     f"{r['val_loss'] - r['train_loss']:.4f}", f"{r['wall_s']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)] + [5, 6, 6, 6, 9, 6]
    columns = [i for i in range(9) if i != 1 or len({r["budget"] for r in rungs}) > 1]  # budget if differs
    return "\n".join(" ".join(f"{row[i]:{'<' if i < 2 else '>'}{widths[i]}}" for i in columns)
                     for row in rows)
