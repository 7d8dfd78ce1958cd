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
    assert len(ax.patches) == 1
    plt.close(ax.figure)
    ax = plot_ladder_histories(ladder)
    assert len(ax.lines) == 2
    plt.close(ax.figure)
