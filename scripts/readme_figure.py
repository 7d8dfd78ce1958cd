"""Draw the README's picture, book/images/ladder.png, from the book's committed ladder
(book/results/ladder.json): the rungs in ladder order and chapter 7's model on top, as
`gptlib.plotting.plot_ladder` draws them in the chapters.

Run from the repository root after the ladder file changes: python scripts/readme_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gptlib.ladder import load_ladder  # noqa: E402
from gptlib.plotting import plot_ladder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ladder = load_ladder(ROOT / "book" / "results" / "ladder.json")
    names = [r["name"] for r in ladder["rungs"] if r.get("kind") != "counterfactual"]
    ax = plot_ladder(ladder, names=names)
    ax.set_title("The ablation ladder: validation loss on the whole val split, trained on a 2-core CPU",
                 fontsize=9)
    plt.tight_layout()
    out = ROOT / "book" / "images" / "ladder.png"
    ax.figure.savefig(out, dpi=110, metadata={"Software": None})
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
