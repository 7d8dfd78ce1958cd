"""The committed notebooks: executed top to bottom, every code cell with outputs, no errors; no test
machinery in the lesson code; code that fits the page; exercises at the end of every chapter; the
diagrams used.

The book shows committed outputs without re-executing (`execute_notebooks: auto`), and re-executes
any notebook with a code cell that has no output, so every code cell must show something.

Run: pytest tests/test_notebooks.py
"""

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
TOC = (BOOK.parent / "_toc.yml").read_text()
MAX_LINE = 88  # characters: wider code cells scroll sideways in the built book
# Chapter 7 gets its teaching pass separately: these tests must start passing for it then (strict).
PENDING: set[str] = set()
TAUGHT = [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="its teaching pass is pending"))
          if p.name in PENDING else p for p in NOTEBOOKS]


def _cells(path, kind):
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


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


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.name)
def test_no_test_machinery_in_the_lesson_code(path):
    """nbval and Jupyter Book read cell tags (`nbval-ignore-output`, `remove-stderr`...): the code a
    reader sees carries no NBVAL marker and no remark about the tests."""
    for source in _cells(path, "code"):
        assert "NBVAL" not in source, f"{path.name}: use the cell tag instead: {source[:80]!r}"
        assert "not compared by the tests" not in source, f"{path.name}: {source[:80]!r}"


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.name)
def test_code_lines_fit_the_page(path):
    long = [line for source in _cells(path, "code") for line in source.splitlines() if len(line) > MAX_LINE]
    assert not long, f"{path.name}: {len(long)} code lines over {MAX_LINE} characters, e.g. {long[0]!r}"


def _code_blocks(markdown: str) -> list[str]:
    """The lines of the fenced code blocks (```bash, ``` ...) of a page; directives (```{note}) are
    prose, not code."""
    lines, fence = [], None
    for line in markdown.splitlines():
        m = re.match(r"\s*(`{3,}|~{3,})(.*)$", line)
        if m and fence is None:
            fence = (m.group(1), m.group(2).strip().startswith("{"))
        elif m and m.group(1) == fence[0] and not m.group(2).strip():
            fence = None
        elif fence is not None and not fence[1]:
            lines.append(line)
    return lines


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.md")), ids=lambda p: p.name)
def test_code_blocks_of_the_pages_fit_too(path):
    long = [line for line in _code_blocks(path.read_text()) if len(line) > MAX_LINE]
    assert not long, f"{path.name}: {len(long)} code lines over {MAX_LINE} characters, e.g. {long[0]!r}"


def test_code_blocks_are_found():
    page = "text\n```bash\n" + "x" * 100 + "\n```\n```{note}\n" + "y" * 100 + "\n```\n"
    assert _code_blocks(page) == ["x" * 100]


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.name)
def test_chapter_ends_with_exercises(path):
    """An "Exercises" section after the last code cell, with at least three numbered exercises and
    their hints or solutions folded away in dropdowns."""
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    heading = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
               and re.search(r"^## Exercises\s*$", "".join(c["source"]), re.M)]
    assert len(heading) == 1, f"{path.name}: no (or more than one) '## Exercises' heading"
    assert all(c["cell_type"] == "markdown" for c in cells[heading[0]:]), f"{path.name}: code after Exercises"
    text = "".join("".join(c["source"]) for c in cells[heading[0]:])
    section = re.split(r"^## (?!Exercises)", text, flags=re.M)[0]
    assert len(re.findall(r"^\d+\. \*\*", section, re.M)) >= 3, f"{path.name}: fewer than 3 exercises"
    assert section.count(":::{dropdown}") >= 3, f"{path.name}: put hints or solutions in dropdowns"


def test_diagrams_are_drawn_and_used():
    """At least three diagrams in book/images, each shown by a chapter (scripts/diagrams.py draws them)."""
    diagrams = sorted((BOOK / "images").glob("*.svg"))
    assert len(diagrams) >= 3
    markdown = "".join(s for path in NOTEBOOKS for s in _cells(path, "markdown"))
    markdown += "".join(page.read_text() for page in BOOK.glob("*.md"))  # the pages without code
    for diagram in diagrams:
        assert f"images/{diagram.name}" in markdown, f"{diagram.name} is not used by any chapter"
