"""The book's plots (loss curves, also live; the ablation ladder; attention maps) from data, never a trainer,
drawn on ``ax`` (a new figure if None). Only this module imports matplotlib."""

import math

import matplotlib.pyplot as plt

# The val loss of the lecture's final model (Karpathy, "Let's build GPT", 2023: 10.8M parameters,
# context 256, 5,000 steps on an A100): the ladder plots draw it to measure the rungs against.
LECTURE_VAL_LOSS = 1.48
_LECTURE = dict(color="tab:green", ls=":", lw=1.5, gid="lecture", label="the lecture's GPT on a GPU: 1.48")


def _as_dict(history) -> dict:
    return history.to_dict() if hasattr(history, "to_dict") else dict(history)


def _axes(ax, figsize=(6, 3.5), grid: str | None = None, **labels):
    """``ax`` (a new figure's if None) with ``ax.set(**labels)`` and a faint grid on the ``grid`` axis."""
    ax = plt.subplots(figsize=figsize)[1] if ax is None else ax
    ax.set(**labels)
    if grid:
        ax.grid(axis=grid, alpha=0.3)
    return ax


def plot_history(history, ax=None, label: str | None = None, color=None, show_train: bool = True):
    """Train (dashed) and val (solid) loss against the step, one point per evaluation."""
    h, ax = _as_dict(history), _axes(ax, grid="both", xlabel="step", ylabel="loss")
    prefix = f"{label}: " if label else ""
    (line,) = ax.plot(h["step"], h["val_loss"], "-", color=color, label=f"{prefix}val")
    if show_train:
        ax.plot(h["step"], h["train_loss"], "--", color=line.get_color(), alpha=0.7, label=f"{prefix}train")
    ax.legend(fontsize=8)
    return ax


def _rungs(ladder: dict, names=None) -> list[dict]:
    return ladder["rungs"] if names is None else [r for n in names for r in ladder["rungs"] if r["name"] == n]


def plot_ladder(ladder: dict, ax=None, names=None, lecture: bool = True, xlim=None):
    """Each rung's final val loss, bottom rung first (``names`` picks and orders them): the mean over
    seeds ± one std (dots: the axis does not start at 0), a mark per seed; ``lecture``: the lecture's."""
    rungs = _rungs(ladder, names)
    ax = _axes(ax, (7, 0.45 * len(rungs) + 1.2), grid="x", xlabel="validation loss (lower is better)")
    texts = []
    for y, r in enumerate(rungs):
        color = "tab:orange" if r.get("kind") == "counterfactual" else "tab:blue"
        seeds = [s["val_loss"] for s in r.get("seeds", [])]
        if len(seeds) > 1:
            ax.plot(seeds, [y] * len(seeds), "|", color=color, ms=12, mew=1.2, alpha=0.7, gid="seeds")
        ax.errorbar(r["val_loss"], y, xerr=r.get("val_std") or 0.0, fmt="o", color=color, ms=6,
                    mfc="white", mew=1.5, elinewidth=3, capsize=5, capthick=2, zorder=3)
        spread = f" ± {r['val_std']:.4f}" if r.get("val_std") else ""
        texts.append(ax.annotate(f"{r['val_loss']:.4f}{spread}", (r["val_loss"], y), xytext=(8, 5),
                                 textcoords="offset points", fontsize=7.5))
    ax.set_yticks(range(len(rungs)), [r.get("label", r["name"]) for r in rungs], fontsize=8)
    ax.set_ylim(len(rungs) - 0.5, -0.7)  # the bottom rung of the ladder at the top, as in the table
    if lecture:
        ax.axvline(LECTURE_VAL_LOSS, **_LECTURE)
        ax.legend(fontsize=7.5, loc="upper left")
    if xlim is not None:
        ax.set_xlim(*xlim)
    elif rungs:  # an empty ladder draws empty axes
        stds = [r.get("val_std") or 0.0 for r in rungs]
        lo = min([r["val_loss"] - d for r, d in zip(rungs, stds)] + ([LECTURE_VAL_LOSS] if lecture else []))
        hi = max(r["val_loss"] + d for r, d in zip(rungs, stds))
        pad = 0.05 * (hi - lo) or 0.01
        ax.set_xlim(lo - pad, hi + pad)
        renderer = ax.figure.canvas.get_renderer()
        for _ in range(10):  # widen the x range until no value's text is clipped on the right
            right = max(t.get_window_extent(renderer).x1 for t in texts)
            box = ax.get_window_extent(renderer)
            if right <= box.x1 - 2:
                break
            lo, hi = ax.get_xlim()
            ax.set_xlim(lo, hi + (hi - lo) * (right - box.x1 + 6) / box.width)
    return ax


def tokens_per_step(rung: dict, ladder: dict | None = None) -> int:
    """Tokens a step of ``rung`` reads: its batch (its own, else its budget's) x its ``block_size``."""
    batch, budget = rung.get("batch_size"), (ladder or {}).get("budget") or {}
    if batch is None and budget.get("name") == rung.get("budget") and "train" in budget:
        batch = budget["train"]["batch_size"]
    elif batch is None:
        from gptlib.presets import get_preset  # only for a rung trained with a named preset
        batch = get_preset(rung["budget"]).train.batch_size
    return batch * rung["model"]["block_size"]


def plot_ladder_histories(ladder: dict, ax=None, names=None, lecture: bool = True):
    """Each rung's (first seed's) val loss against the tokens read by then: budgets share one axis."""
    ax = _axes(ax, (7, 4), grid="both", xlabel="tokens seen in training (millions)", ylabel="validation loss")
    for r in _rungs(ladder, names):
        h, per_step = _as_dict(r["history"]), tokens_per_step(r, ladder)
        ax.plot([s * per_step / 1e6 for s in h["step"]], h["val_loss"], "-", label=r.get("label", r["name"]))
    if lecture:
        ax.axhline(LECTURE_VAL_LOSS, **_LECTURE)
    ax.legend(fontsize=7.5)
    return ax


def token_labels(tokens) -> list[str]:
    """Characters as tick labels: a newline shows as '⏎' and a space as '␣', so neither is invisible."""
    return [{"\n": "⏎", " ": "␣"}.get(ch, ch) for ch in tokens]


def plot_loss_curves(history, ax=None, title: str | None = None):
    """Train and val loss against the step from step 0, with the best val loss marked."""
    h, ax = _as_dict(history), plot_history(history, ax=ax)
    ax.set_xlim(0, max(h["step"], default=1) * 1.03)
    if h["val_loss"]:
        best = min(range(len(h["val_loss"])), key=h["val_loss"].__getitem__)
        ax.plot(h["step"][best], h["val_loss"][best], "o", color="black", ms=4,
                label=f"best val {h['val_loss'][best]:.3f} (step {h['step'][best]})")
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


class LiveLossPlot:
    """A `train` callback that redraws `plot_loss_curves` in place after every evaluation (Jupyter)."""

    def __init__(self, title: str | None = None, figsize=(6, 3.5)):
        self.title, self.figsize, self.handle = title, figsize, None  # handle: made at the first evaluation

    def __call__(self, state) -> None:
        from IPython.display import display
        fig = plot_loss_curves(state.history, ax=_axes(None, self.figsize), title=self.title).figure
        plt.close(fig)  # shown through the handle only, not again when the cell ends
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)  # replaces the previous picture instead of adding one


def plot_attention(weights, tokens, ax=None, title: str | None = None, labels: bool = True,
                   colorbar: bool = True):
    """One head's (T,T) attention weights as a heatmap: row = the token reading, column = the token read."""
    ax = _axes(ax, (5.6, 5), xticks=[], yticks=[])  # no ticks unless labelled
    weights = weights.detach().cpu().numpy() if hasattr(weights, "detach") else weights  # matplotlib: NumPy
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.tick_params(length=0, pad=1)
    if labels:
        for set_ticks in (ax.set_xticks, ax.set_yticks):
            set_ticks(range(len(tokens)), token_labels(tokens), fontsize=8, fontfamily="monospace")
        ax.set_xlabel("token read", fontsize=8)
        ax.set_ylabel("token reading", fontsize=8)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="attention weight")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_attention_grid(maps, tokens, cell_size: float = 2.5, title: str | None = None):
    """Each layer (row) x head (column) of ``maps`` (L,nh,T,T) as heatmaps, one colour bar: the figure."""
    L, nh = maps.shape[:2]
    fig, axes = plt.subplots(L, nh, figsize=(cell_size * nh + 1.2, cell_size * L + 0.9), squeeze=False,
                             layout="constrained")
    names, fontsize = token_labels(tokens), 6.5
    every = max(1, math.ceil(len(tokens) * fontsize * 1.1 / (72 * cell_size * 0.85)))
    ticks = range(0, len(names), every), names[::every]  # every every-th token's, so that each stays readable
    for layer in range(L):
        for head in range(nh):
            ax = plot_attention(maps[layer, head], tokens, ax=axes[layer][head], labels=False, colorbar=False,
                                title=f"head {head}" if layer == 0 else None)  # heads named on the top row
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=9)
                ax.set_yticks(*ticks, fontsize=fontsize, fontfamily="monospace")
            if layer == L - 1:
                ax.set_xticks(*ticks, fontsize=fontsize, fontfamily="monospace")
    if title:  # a suptitle, which the constrained layout places above the heads' titles
        fig.suptitle(title, fontsize=11)
    nth = {1: "every", 2: "every second", 3: "every third"}.get(every, f"every {every}th")
    fig.supxlabel(f"rows: the token reading; columns: the token read ({nth} token labelled)", fontsize=9)
    fig.colorbar(axes[-1][-1].images[0], ax=axes, shrink=0.6, label="attention weight")
    return fig
