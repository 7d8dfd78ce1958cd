"""Draw the book's diagrams into book/images/ as SVG: attention (queries, keys, values and the causal
mask), the pre-norm transformer block on its residual stream, the whole GPT from tokens to logits,
multi-head attention (concatenation and projection), the position embeddings and a LoRA layer.

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


def multi_head_diagram():
    """Multi-head attention: n_head heads side by side, their outputs concatenated, then projected."""
    fig, ax = canvas(10.6, 5.0)
    colors = (BLUE, GREEN, ORANGE, PURPLE)
    ys = (3.55, 2.6, 1.65, 0.7)
    box(ax, 0.9, 2.1, 1.3, 1.5, "x\n(B, T, C)\nC = 32", GREY)
    # the concatenation, channels drawn top to bottom: head k's hs = 8 channels are band k
    x0, w, band = 5.5, 1.3, 0.95
    for k, (y, color) in enumerate(zip(ys, colors)):
        box(ax, 3.3, y, 1.9, 0.72, f"head {k}\nq, k, v: Linear(C, hs)", color, fontsize=8.5)
        arrow(ax, (1.55, 2.1), (2.33, y))
        arrow(ax, (4.25, y), (x0 - 0.03, y), "(B,T,hs)", offset=(-0.3, 0.15))
        ax.add_patch(Rectangle((x0, y - band / 2), w, band, facecolor=color, edgecolor="#555555",
                               linewidth=0.8))
        ax.text(x0 + w / 2, y, f"channels\n{8 * k}-{8 * k + 7}", ha="center", va="center", fontsize=7.5)
    ax.text(x0 + w / 2, 4.35, "torch.cat(..., dim=-1)\n(B, T, C): 4 × 8 channels", ha="center",
            va="center", fontsize=8.5)
    arrow(ax, (x0 + w + 0.03, 2.1), (7.65, 2.1))
    box(ax, 8.2, 2.1, 1.0, 0.9, "proj\nLinear(C, C)", GREY, fontsize=8.5)
    arrow(ax, (8.7, 2.1), (9.35, 2.1))
    ax.text(9.45, 2.1, "out\n(B,T,C)", ha="left", va="center", fontsize=8.5)
    ax.text(8.2, 1.45, "mixes the heads'\nchannels; without it,\nthe concatenation\nis the output",
            ha="center", va="top", fontsize=7.5, color="#555555")
    ax.text(0.2, 4.8, "Multi-head attention: heads side by side, concatenated, projected", fontsize=11,
            fontweight="bold", va="center")
    save(fig, "multi_head.svg")


def position_diagram():
    """Token embeddings plus position embeddings: what a token is, plus where it is."""
    fig, ax = canvas(10.6, 4.4)
    chars, ids = "hello", (46, 43, 50, 50, 53)
    row_h = 0.2
    tok_colors = {46: "#9ecae1", 43: "#6baed6", 50: "#c6dbef", 53: "#4292c6"}  # one colour per token
    pos_colors = ("#fee6ce", "#fdd0a2", "#fdae6b", "#fd8d3c", "#e6550d")  # one per position
    sum_colors = ("#dadaeb", "#bcbddc", "#9e9ac8", "#807dba", "#6a51a3")
    for t, (ch, i) in enumerate(zip(chars, ids)):
        x = 1.0 + t * 0.62
        ax.text(x, 3.75, f"'{ch}'", ha="center", va="center", fontsize=9, family="monospace")
        ax.text(x, 3.35, str(i), ha="center", va="center", fontsize=9, color="#1f4e79")
        ax.text(x, 0.6, str(t), ha="center", va="center", fontsize=9, color="#7a4b00")
    ax.text(0.15, 3.35, "token id", ha="left", va="center", fontsize=7.5, color="#1f4e79")
    ax.text(0.15, 0.6, "position", ha="left", va="center", fontsize=7.5, color="#7a4b00")
    box(ax, 2.25, 2.55, 3.2, 0.6, "token table  nn.Embedding(V, C)\nrow = the token id", BLUE, fontsize=8.5)
    box(ax, 2.25, 1.4, 3.2, 0.6, "position table  nn.Embedding(T, C)\nrow = the position", ORANGE,
        fontsize=8.5)
    arrow(ax, (2.25, 3.15), (2.25, 2.87))
    arrow(ax, (2.25, 0.8), (2.25, 1.08))

    def matrix(x0, y0, colors, label, notes=None):
        for t, color in enumerate(colors):
            ax.add_patch(Rectangle((x0, y0 + (4 - t) * row_h), 1.4, row_h, facecolor=color,
                                   edgecolor="#555555", linewidth=0.6))
            if notes and notes[t]:
                ax.text(x0 + 0.7, y0 + (4.5 - t) * row_h, notes[t], ha="center", va="center", fontsize=6.5)
        ax.text(x0 + 0.7, y0 - 0.2, label, ha="center", va="center", fontsize=8)

    same = [None, None, "'l'", "'l'", None]
    matrix(4.6, 2.1, [tok_colors[i] for i in ids], "tok_emb (B, T, C)", same)
    matrix(4.6, 0.45, pos_colors, "pos_emb (T, C)", ["0", "1", "2", "3", "4"])
    ax.text(5.3, 3.3, "rows 2 and 3 ('l'): the same vector", ha="center", va="center", fontsize=7,
            color="#555555")
    arrow(ax, (3.9, 2.55), (4.55, 2.55))
    arrow(ax, (3.9, 1.4), (4.55, 0.95))
    cx, cy = 7.35, 1.9
    ax.add_patch(plt.Circle((cx, cy), 0.2, facecolor="white", edgecolor="#333333", linewidth=1.2))
    ax.text(cx, cy, "+", ha="center", va="center", fontsize=13)
    arrow(ax, (6.05, 2.75), (cx - 0.17, cy + 0.1))
    arrow(ax, (6.05, 0.95), (cx - 0.17, cy - 0.1))
    matrix(7.9, 1.4, sum_colors, "x = tok_emb + pos_emb", [None, None, "'l' at 2", "'l' at 3", None])
    arrow(ax, (cx + 0.2, cy), (7.85, cy))
    ax.text(9.45, 1.9, "(B, T, C):\nwhat a token is,\nplus where it is", ha="left", va="center",
            fontsize=8, style="italic")
    ax.text(0.15, 4.2, "Position embeddings: the same character at two positions gets two vectors",
            fontsize=11, fontweight="bold", va="center")
    save(fig, "position_embeddings.svg")


def lora_diagram():
    """A LoRA layer: the frozen W beside a trainable low-rank path B A, scaled by alpha / r, added."""
    fig, ax = canvas(10.6, 4.2)
    box(ax, 0.9, 2.0, 1.2, 1.0, "x\n(B, T, in)", GREY)
    box(ax, 4.4, 3.05, 3.0, 0.8, "W: (out, in), and b\nfrozen: the pretrained weights", GREY, fontsize=8.5)
    box(ax, 3.4, 1.0, 1.4, 0.8, "A: (r, in)\nrandom", GREEN, fontsize=8.5)
    box(ax, 5.6, 1.0, 1.5, 0.8, "B: (out, r)\nstarts at 0", GREEN, fontsize=8.5)
    arrow(ax, (1.5, 2.2), (2.85, 3.0))
    arrow(ax, (1.5, 1.8), (2.65, 1.1))
    arrow(ax, (4.1, 1.0), (4.83, 1.0), "(B,T,r)", offset=(-0.35, 0.22))
    box(ax, 7.3, 1.0, 0.9, 0.6, "× alpha / r", ORANGE, fontsize=8.5)
    arrow(ax, (6.37, 1.0), (6.83, 1.0))
    cx, cy = 8.3, 2.0
    ax.add_patch(plt.Circle((cx, cy), 0.2, facecolor="white", edgecolor="#333333", linewidth=1.2))
    ax.text(cx, cy, "+", ha="center", va="center", fontsize=13)
    arrow(ax, (5.92, 3.05), (cx - 0.12, cy + 0.17), "W x + b", offset=(0.1, 0.15))
    arrow(ax, (7.76, 1.0), (cx - 0.1, cy - 0.18))
    arrow(ax, (cx + 0.2, cy), (9.1, cy))
    ax.text(9.15, 2.0, "out\n(B,T,out)", ha="left", va="center", fontsize=8.5)
    ax.text(4.5, 0.2, "trainable: r × (in + out) numbers instead of out × in", ha="center", va="center",
            fontsize=8.5, style="italic")
    ax.text(0.2, 3.95, "LoRA: W x + (alpha / r) B A x, with W frozen and only A and B trained", fontsize=11,
            fontweight="bold", va="center")
    save(fig, "lora.svg")


if __name__ == "__main__":
    attention_diagram()
    block_diagram()
    model_diagram()
    multi_head_diagram()
    position_diagram()
    lora_diagram()
