"""gptlib.plotting draws from plain data (a History or a dict), headless, without errors.

Run: pytest tests/test_plotting.py
"""

import matplotlib

matplotlib.use("Agg")  # no display in the tests

import matplotlib.pyplot as plt  # noqa: E402

from gptlib.plotting import plot_history, plot_ladder, plot_ladder_histories  # noqa: E402
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
    ladder = {"budget": {}, "rungs": [
        {"name": "a", "label": "rung a", "val_loss": 2.5, "history": _history(0.5).to_dict()},
        {"name": "b", "label": "rung b", "val_loss": 2.0, "history": _history().to_dict()},
    ]}
    ax = plot_ladder(ladder)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rung a", "rung b"]
    plt.close(ax.figure)
    ax = plot_ladder(ladder, names=["b"])
    assert len(ax.containers) == 1  # one rung: one dot with its error bar
    plt.close(ax.figure)
    ax = plot_ladder_histories(ladder)
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
