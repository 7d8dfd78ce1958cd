"""Draw the book's diagrams into book/images/ as SVG: attention (queries, keys, values and the causal
mask), the pre-norm transformer block on its residual stream, and the whole GPT from tokens to logits.

Run from the repository root: python scripts/diagrams.py
The output is deterministic (no dates, fixed ids), so re-running it changes no file unless this
script changed.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "book" / "images"
plt.rcParams.update({"svg.hashsalt": "gpt-from-scratch", "svg.fonttype": "none", "font.size": 10,
                     "font.family": "sans-serif"})

BLUE, ORANGE, GREEN, GREY, PURPLE = "#dbe9f6", "#fde3c8", "#d9f0d3", "#e6e6e6", "#e8dcf2"


def box(ax, x, y, w, h, text, color=BLUE, fontsize=10, bold=False):
    """A rounded box centred at (x, y) with its text."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor="#333333", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize,
            fontweight="bold" if bold else "normal")


def arrow(ax, start, end, text=None, offset=(0.08, 0), style="-|>", color="#333333", rad=0.0):
    """An arrow from start to end, with an optional label beside its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                 linewidth=1.2, connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
    if text:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, text, fontsize=8.5, color="#333333", ha="left", va="center")


def grid(ax, x0, y0, rows, cols, cell, fill, labels=None, fontsize=7, text_color=lambda r, c: "black"):
    """A small matrix of cells with its lower-left corner at (x0, y0); fill(r, c) -> colour."""
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((x0 + c * cell, y0 + (rows - 1 - r) * cell), cell, cell,
                                   facecolor=fill(r, c), edgecolor="#555555", linewidth=0.6))
            if labels is not None and labels(r, c):
                ax.text(x0 + (c + 0.5) * cell, y0 + (rows - 0.5 - r) * cell, labels(r, c),
                        ha="center", va="center", fontsize=fontsize, color=text_color(r, c))


def canvas(width, height):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    return fig, ax


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    print("wrote", OUT / name)


def attention_diagram():
    """One head: x -> q, k, v; scores q k^T / sqrt(hs); the causal mask; softmax; weights @ v."""
    fig, ax = canvas(11.0, 5.0)
    T, cell = 5, 0.34
    # the input tokens
    box(ax, 0.9, 2.5, 1.3, 2.2, "x\n(B, T, C)\n\none vector\nper token", GREY)
    # the three linear maps
    for y, name, what, color in ((4.1, "query", "what am I\nlooking for?", BLUE),
                                 (2.5, "key", "what do I\ncontain?", GREEN),
                                 (0.9, "value", "what I tell\nif chosen", ORANGE)):
        box(ax, 2.75, y, 1.3, 0.95, f"{name}\nLinear(C, hs)", color, fontsize=9)
        arrow(ax, (1.55, 2.5), (2.1, y))
        ax.text(2.75, y - 0.72, what, ha="center", va="center", fontsize=7.5, style="italic")
    box(ax, 4.55, 4.1, 0.9, 0.7, "q\n(B,T,hs)", BLUE, fontsize=9)
    box(ax, 4.55, 2.5, 0.9, 0.7, "k\n(B,T,hs)", GREEN, fontsize=9)
    box(ax, 4.55, 0.9, 0.9, 0.7, "v\n(B,T,hs)", ORANGE, fontsize=9)
    for y in (4.1, 2.5, 0.9):
        arrow(ax, (3.4, y), (4.1, y))
    # the scores with the causal mask
    x0, y0 = 5.75, 2.55
    grid(ax, x0, y0, T, T, cell, lambda r, c: "#9ecae1" if c <= r else "#bdbdbd",
         labels=lambda r, c: "" if c <= r else "−∞")
    ax.text(x0 + T * cell / 2, y0 + T * cell + 0.42, "scores = q kᵀ / √hs\n(B, T, T), masked",
            ha="center", va="center", fontsize=9)
    ax.text(x0 - 0.12, y0 + T * cell / 2, "t (reading)", rotation=90, ha="right", va="center",
            fontsize=7.5)
    ax.text(x0 + T * cell / 2, y0 - 0.15, "s (read)", ha="center", va="top", fontsize=7.5)
    arrow(ax, (5.0, 4.1), (x0 - 0.05, y0 + T * cell * 0.75))
    arrow(ax, (5.0, 2.5), (x0 - 0.05, y0 + T * cell * 0.25))
    ax.text(x0 + T * cell / 2, y0 - 0.75, "the causal mask: future\npositions (s > t) get −∞,\nso weight 0",
            ha="center", va="center", fontsize=7.5, color="#555555")
    # softmax -> weights
    x1 = 8.2
    weights = [[1.0], [0.4, 0.6], [0.3, 0.3, 0.4], [0.3, 0.2, 0.2, 0.3], [0.1, 0.2, 0.2, 0.1, 0.4]]
    grid(ax, x1, y0, T, T, cell,
         lambda r, c: plt.cm.Blues(0.15 + 0.8 * weights[r][c]) if c <= r else "white",
         labels=lambda r, c: f"{weights[r][c]:.1f}" if c <= r else "0", fontsize=6.5,
         text_color=lambda r, c: "white" if c <= r and weights[r][c] > 0.5 else "black")
    ax.text(x1 + T * cell / 2, y0 + T * cell + 0.42, "weights = softmax(scores)\neach row sums to 1",
            ha="center", va="center", fontsize=9)
    arrow(ax, (x0 + T * cell + 0.05, y0 + T * cell / 2), (x1 - 0.05, y0 + T * cell / 2), "softmax",
          offset=(-0.35, 0.18))
    # out = weights @ v
    box(ax, 9.05, 0.9, 1.6, 0.8, "out = weights @ v\n(B, T, hs)", PURPLE, fontsize=9)
    arrow(ax, (5.0, 0.9), (8.25, 0.9))
    arrow(ax, (x1 + T * cell / 2, y0 - 0.05), (9.05, 1.3))
    ax.text(0.2, 4.85, "One head of causal self-attention", fontsize=11, fontweight="bold", va="center")
    save(fig, "attention_qkv.svg")


def block_diagram():
    """The pre-norm transformer block: two forks off the residual stream, each added back."""
    fig, ax = canvas(7.4, 7.2)
    sx = 2.1  # the residual stream's x
    ax.add_patch(FancyArrowPatch((sx, 0.35), (sx, 6.6), arrowstyle="-|>", mutation_scale=14,
                                 color="#1f4e79", linewidth=3))
    ax.text(sx - 0.2, 0.55, "x (B, T, C)\nfrom the block below", ha="right", va="bottom", fontsize=8.5)
    ax.text(sx - 0.2, 6.45, "to the next block\n(B, T, C)", ha="right", va="top", fontsize=8.5)
    ax.text(sx - 0.28, 3.5, "residual stream", rotation=90, ha="center", va="center", fontsize=9,
            color="#1f4e79")
    for y_fork, y_add, name, detail, color in (
            (1.0, 3.0, "multi-head\nattention", "the tokens talk\n(communication)", BLUE),
            (3.65, 5.65, "feed-forward\nC → 4C → C", "each token thinks\n(computation)", ORANGE)):
        fx = 4.0
        ax.plot([sx, fx], [y_fork, y_fork], color="#333333", linewidth=1.2)
        box(ax, fx, y_fork + 0.5, 1.3, 0.5, "LayerNorm", GREEN, fontsize=9)
        arrow(ax, (fx, y_fork), (fx, y_fork + 0.25))
        box(ax, fx, y_fork + 1.35, 1.6, 0.8, name, color, fontsize=9)
        arrow(ax, (fx, y_fork + 0.75), (fx, y_fork + 0.95))
        ax.text(fx + 0.95, y_fork + 1.35, detail, ha="left", va="center", fontsize=8, style="italic")
        ax.plot([fx, fx], [y_fork + 1.75, y_add], color="#333333", linewidth=1.2)
        arrow(ax, (fx, y_add), (sx + 0.2, y_add))
        ax.add_patch(plt.Circle((sx, y_add), 0.18, facecolor="white", edgecolor="#1f4e79", linewidth=2,
                                zorder=3))
        ax.text(sx, y_add, "+", ha="center", va="center", fontsize=13, zorder=4, color="#1f4e79")
    ax.text(4.0, 6.75, "x = x + sa(ln1(x))\nx = x + ffwd(ln2(x))", ha="left", va="top", fontsize=9,
            family="monospace")
    ax.text(0.1, 7.1, "The pre-norm transformer block", fontsize=11, fontweight="bold", va="top")
    save(fig, "block.svg")


def model_diagram():
    """The whole GPT: token ids -> embeddings + positions -> n_layer blocks -> LayerNorm -> logits."""
    fig, ax = canvas(7.9, 8.2)
    cx = 3.0
    rows = [  # y, text, colour, shape note
        (0.55, "token ids  idx", GREY, "(B, T) integers"),
        (1.65, "token embedding\nnn.Embedding(V, C)", BLUE, "(B, T, C): what"),
        (3.05, "n_layer × Block\n(attention, feed-forward)", PURPLE, "(B, T, C)"),
        (4.3, "final LayerNorm  ln_f", GREEN, "(B, T, C)"),
        (5.3, "lm_head  nn.Linear(C, V)", ORANGE, "(B, T, V) logits"),
        (6.45, "softmax over V: next-token\nprobabilities; cross-entropy\nwith the targets: the loss", GREY,
         "(B, T, V)"),
    ]
    sizes = {0.55: (1.9, 0.5), 1.65: (2.2, 0.7), 3.05: (2.6, 0.85), 4.3: (2.5, 0.5), 5.3: (2.7, 0.5),
             6.45: (3.0, 0.95)}
    for y, text, color, note in rows:
        w, h = sizes[y]
        box(ax, cx, y, w, h, text, color, fontsize=9)
        ax.text(cx + w / 2 + 0.15, y, note, ha="left", va="center", fontsize=8.5, style="italic")
    # position embeddings join the token embeddings
    px = 6.75
    box(ax, px, 1.65, 1.9, 0.7, "position embedding\nnn.Embedding(T, C)", BLUE, fontsize=8.5)
    ax.text(px, 1.08, "(T, C): where", ha="center", va="center", fontsize=8.5, style="italic")
    ax.add_patch(plt.Circle((cx, 2.3), 0.16, facecolor="white", edgecolor="#333333", linewidth=1.2))
    ax.text(cx, 2.3, "+", ha="center", va="center", fontsize=12)
    arrow(ax, (cx, 0.8), (cx, 1.3))
    arrow(ax, (cx, 2.0), (cx, 2.14))
    arrow(ax, (px, 2.0), (cx + 0.17, 2.3), rad=0.25)
    arrow(ax, (cx, 2.46), (cx, 2.62))
    arrow(ax, (cx, 3.48), (cx, 4.05))
    arrow(ax, (cx, 4.55), (cx, 5.05))
    arrow(ax, (cx, 5.55), (cx, 5.97))
    ax.text(0.1, 8.0, "The GPT, from tokens to logits", fontsize=11, fontweight="bold", va="top")
    ax.text(0.1, 7.6, "B: batch   T: time (≤ block_size)   C: n_embd   V: vocab_size", fontsize=8.5,
            va="top", color="#555555")
    save(fig, "gpt_model.svg")


if __name__ == "__main__":
    attention_diagram()
    block_diagram()
    model_diagram()
