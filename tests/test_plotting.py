"""gptlib.plotting draws from plain data (a History or a dict), headless, without errors.

Run: pytest tests/test_plotting.py
"""

import matplotlib

matplotlib.use("Agg")  # no display in the tests

import matplotlib.pyplot as plt  # noqa: E402

from gptlib.plotting import (LECTURE_VAL_LOSS, plot_history, plot_ladder,  # noqa: E402
                             plot_ladder_histories, tokens_per_step)
from gptlib.training import History  # noqa: E402


def _history(offset=0.0):
    h = History()
    for i, step in enumerate((10, 20, 30)):
        h.append(step, 3.0 - i * 0.5 + offset, 3.1 - i * 0.5 + offset, 1e-3, float(i))
    return h


def test_plot_history_takes_a_history_or_a_dict():
    for history in (_history(), _history().to_dict()):
        ax = plot_history(history, label="run")
        assert len(ax.lines) == 2  # val and train
        assert list(ax.lines[0].get_xdata()) == [10, 20, 30]
        plt.close(ax.figure)


def test_plot_history_on_given_axes_without_train():
    _, ax = plt.subplots()
    assert plot_history(_history(), ax=ax, show_train=False) is ax
    assert len(ax.lines) == 1
    plt.close(ax.figure)


def test_plot_ladder_and_histories():
    model = {"block_size": 8}
    ladder = {"budget": {}, "rungs": [
        {"name": "a", "label": "rung a", "val_loss": 2.5, "history": _history(0.5).to_dict(),
         "batch_size": 4, "model": model},
        {"name": "b", "label": "rung b", "val_loss": 2.0, "history": _history().to_dict(),
         "batch_size": 4, "model": model},
    ]}
    ax = plot_ladder(ladder)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rung a", "rung b"]
    plt.close(ax.figure)
    ax = plot_ladder(ladder, names=["b"])
    assert len(ax.containers) == 1  # one rung: one dot with its error bar
    plt.close(ax.figure)
    ax = plot_ladder_histories(ladder, lecture=False)
    assert len(ax.lines) == 2
    plt.close(ax.figure)


def test_plot_ladder_draws_error_bars_and_each_seed():
    seeds = [{"seed": s, "val_loss": v, "train_loss": v} for s, v in ((1, 2.0), (2, 2.1), (3, 2.2))]
    ladder = {"budget": {}, "rungs": [
        {"name": "a", "label": "rung a", "val_loss": 2.1, "val_std": 0.1, "seeds": seeds},
        {"name": "b", "label": "what if", "val_loss": 2.4, "kind": "counterfactual"},
    ]}
    ax = plot_ladder(ladder)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rung a", "what if"]
    seed_marks = [line for line in ax.lines if line.get_gid() == "seeds"]
    assert len(seed_marks) == 1 and list(seed_marks[0].get_xdata()) == [2.0, 2.1, 2.2]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["2.1000 ± 0.1000", "2.4000"]
    plt.close(ax.figure)


def _seeds(*vals):
    return [{"seed": i, "val_loss": v, "train_loss": v} for i, v in enumerate(vals)]


LADDER = {"budget": {"name": "ladder", "train": {"batch_size": 32}}, "rungs": [
    {"name": "bigram", "label": "bigram", "val_loss": 2.5022, "val_std": 0.0004,
     "seeds": _seeds(2.5018, 2.5022, 2.5026), "budget": "ladder", "model": {"block_size": 8},
     "history": {"step": [0, 300, 3000], "val_loss": [4.3, 2.6, 2.5], "train_loss": [4.3, 2.6, 2.5]}},
    {"name": "layernorm", "label": "+ LayerNorm (the GPT)", "val_loss": 2.0560, "val_std": 0.0025,
     "seeds": _seeds(2.0535, 2.0560, 2.0585), "budget": "ladder", "model": {"block_size": 8},
     "history": {"step": [0, 300, 3000], "val_loss": [4.2, 2.4, 2.06], "train_loss": [4.2, 2.4, 2.0]}},
    {"name": "scaled_up", "label": "scaled up (cpu preset)", "val_loss": 1.8236, "val_std": 0.0050,
     "seeds": _seeds(1.8186, 1.8236, 1.8286), "budget": "cpu", "model": {"block_size": 64},
     "history": {"step": [0, 100, 700], "val_loss": [4.2, 2.5, 1.85], "train_loss": [4.2, 2.5, 1.7]}},
]}


def test_plot_ladder_error_bars_are_drawn_over_the_dot_and_show_when_zoomed():
    """The bar is ± one standard deviation, thick, with caps, through a hollow dot; zoomed in on
    close rungs (``xlim``), a 0.0025 spread reaches well beyond the dot."""
    ax = plot_ladder(LADDER, lecture=False, xlim=(2.04, 2.08), names=["layernorm"])
    (bars,) = ax.containers
    marker, caps, (segments,) = bars.lines
    (x0, _), (x1, _) = segments.get_segments()[0]
    assert (x0, x1) == (2.0560 - 0.0025, 2.0560 + 0.0025)
    assert segments.get_linewidth()[0] >= 2 and len(caps) == 2
    assert marker.get_markerfacecolor() == "white"
    ax.figure.canvas.draw()
    to_px = ax.transData.transform
    bar_px = to_px((x1, 0))[0] - to_px((x0, 0))[0]
    dot_px = marker.get_markersize() * ax.figure.dpi / 72
    assert bar_px > 2 * dot_px  # visible beyond the dot on both sides
    plt.close(ax.figure)


def test_plot_ladder_keeps_every_label_inside_the_axes():
    """The values written beside the dots are never clipped on the right, however narrow the axes."""
    for width in (3, 7):
        fig, ax = plt.subplots(figsize=(width, 3))
        plot_ladder(LADDER, ax=ax)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        right = ax.get_window_extent(renderer).x1
        assert [t.get_text() for t in ax.texts][0] == "2.5022 ± 0.0004"
        assert all(t.get_window_extent(renderer).x1 <= right for t in ax.texts), width
        plt.close(fig)


def test_ladder_plots_draw_the_lectures_loss():
    """A dotted line at the lecture's 1.48, inside the axes and named in the legend."""
    assert LECTURE_VAL_LOSS == 1.48
    ax = plot_ladder(LADDER)
    (line,) = [line for line in ax.lines if line.get_gid() == "lecture"]
    assert set(line.get_xdata()) == {1.48} and ax.get_xlim()[0] < 1.48
    assert any("1.48" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(ax.figure)
    ax = plot_ladder_histories(LADDER)
    (line,) = [line for line in ax.lines if line.get_gid() == "lecture"]
    assert set(line.get_ydata()) == {1.48}
    assert any("1.48" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(ax.figure)
    ax = plot_ladder(LADDER, lecture=False)
    assert not [line for line in ax.lines if line.get_gid() == "lecture"] and ax.get_legend() is None
    plt.close(ax.figure)


def test_ladder_histories_are_drawn_against_tokens_seen():
    """The ladder's steps read 32 x 8 = 256 tokens, the cpu preset's 32 x 64 = 2,048 (its batch
    size from the preset of that name): the x axis is tokens, in millions."""
    assert tokens_per_step(LADDER["rungs"][0], LADDER) == 256
    assert tokens_per_step(LADDER["rungs"][2], LADDER) == 2048
    assert tokens_per_step({**LADDER["rungs"][2], "batch_size": 16}) == 1024  # the rung's own wins
    ax = plot_ladder_histories(LADDER, lecture=False)
    xs = [list(line.get_xdata()) for line in ax.lines]
    assert xs == [[0, 300 * 256 / 1e6, 3000 * 256 / 1e6]] * 2 + [[0, 100 * 2048 / 1e6, 700 * 2048 / 1e6]]
    assert "tokens" in ax.get_xlabel()
    plt.close(ax.figure)


def test_loss_curves_start_at_step_zero_on_a_linear_axis():
    from gptlib.plotting import plot_loss_curves

    ax = plot_loss_curves(_history(), title="run")
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    assert any("best val" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(ax.figure)


def test_attention_heatmap_has_a_colour_bar_and_labels():
    import torch

    from gptlib.plotting import plot_attention, plot_attention_grid

    tokens = "To be, or not to be: that is the question."
    T = len(tokens)
    weights = torch.tril(torch.ones(T, T))
    weights = weights / weights.sum(-1, keepdim=True)
    ax = plot_attention(weights, tokens, title="one head")
    assert len(ax.figure.axes) == 2  # the map and its colour bar
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["T", "o", "␣"]
    plt.close(ax.figure)
    fig = plot_attention_grid(weights.expand(2, 3, T, T), tokens, cell_size=2.0)
    panels = [a for a in fig.axes if a.images]
    assert len(panels) == 6 and len(fig.axes) == 7  # one shared colour bar
    bottom_left = panels[3]
    labels = [t.get_text() for t in bottom_left.get_xticklabels()]
    assert 1 < len(labels) < T and labels[0] == "T"  # thinned out, so each label stays readable
    assert min(t.get_fontsize() for t in bottom_left.get_xticklabels()) >= 6
    plt.close(fig)
