"""The committed notebooks: executed top to bottom, every code cell with outputs, no errors.

The book shows committed outputs without re-executing (`execute_notebooks: auto`), and re-executes
any notebook with a code cell that has no output, so every code cell must show something.

Run: pytest tests/test_notebooks.py
"""

import json
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
TOC = (BOOK.parent / "_toc.yml").read_text()


def test_there_are_chapters():
    assert NOTEBOOKS, "no chapter notebooks found in book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: re-run it top to bottom on a fresh kernel"
    for i, cell in enumerate(code):
        assert cell["outputs"], f"{path.name}: code cell {i + 1} has no output (the book would re-execute it)"
        assert all(o["output_type"] != "error" for o in cell["outputs"]), f"{path.name}: cell {i + 1} errored"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_toc_and_has_a_colab_badge(path):
    nb = json.loads(path.read_text())
    assert f"file: {path.stem}" in TOC
    first = "".join(nb["cells"][0]["source"])
    assert "colab.research.google.com/github/" in first and f"book/{path.name}" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_markers_are_exact(path):
    """nbval only honours a marker alone on its comment line (`# NBVAL_IGNORE_OUTPUT`); a reason
    goes on the next line. `# NBVAL_IGNORE_OUTPUT: reason` would be silently ignored."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for line in "".join(cell["source"]).splitlines():
            comment = line.strip().lstrip("#").strip()
            if line.strip().startswith("#") and comment.startswith("NBVAL_"):
                assert comment in {"NBVAL_IGNORE_OUTPUT", "NBVAL_CHECK_OUTPUT", "NBVAL_SKIP",
                                   "NBVAL_RAISES_EXCEPTION"}, f"{path.name}: {line.strip()!r}"
