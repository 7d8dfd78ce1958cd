"""The committed notebooks: executed top to bottom, every code cell with outputs, no errors; no test
machinery in the lesson code; code that fits the page; exercises at the end of every chapter, each with
a worked solution and at least three self-checked; the diagrams used.

The book shows committed outputs without re-executing (`execute_notebooks: auto`), and re-executes
any notebook with a code cell that has no output, so every code cell must show something.

Run: pytest tests/test_notebooks.py
"""

import importlib
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


# What a reader's eye must not meet in the code on the page: the test machinery and the switches the
# tests and the maintainers use (a preset from the environment, the results folder's variable).
MACHINERY = ("NBVAL", "not compared by the tests", "the tests", "GPTLIB_PRESET", "GPTLIB_RESULTS",
             "choose(", "os.environ", "RESULTS =")
FOLDED = {"hide-input", "remove-input", "remove-cell"}  # tags that keep a cell's code off the page


def _visible_code(path):
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and not FOLDED & set(c.get("metadata", {}).get("tags", []))]


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.name)
def test_no_test_machinery_in_the_lesson_code(path):
    """nbval and Jupyter Book read cell tags (`nbval-ignore-output`, `remove-stderr`...), and the
    switches live in folded cells (`hide-input`): the code a reader sees carries no NBVAL marker, no
    remark about the tests, no preset switch and no results variable."""
    for source in _visible_code(path):
        for word in MACHINERY:
            assert word not in source, f"{path.name}: {word!r} in a visible cell: {source[:80]!r}"


def test_machinery_is_found_in_visible_cells_only(tmp_path):
    cell = lambda src, tags=(): {"cell_type": "code", "source": [src], "metadata": {"tags": list(tags)}}
    nb = {"cells": [cell("budget = choose(LADDER)", ["hide-input"]), cell("print(1)")]}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb))
    assert _visible_code(tmp_path / "nb.ipynb") == ["print(1)"]


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


SOLUTION = re.compile(r"# Solution to exercise (\d+)\n")


def _exercises(cells: list[dict], chapter: str) -> list[tuple[int, str, dict | None]]:
    """The exercises after a chapter's `## Exercises` heading, in order: (number, the markdown that
    states it, its solution cell or None). Raises AssertionError where the convention is broken."""
    heading = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
               and re.search(r"^## Exercises\s*$", "".join(c["source"]), re.M)]
    assert len(heading) == 1, f"{chapter}: no (or more than one) '## Exercises' heading"
    exercises, current = [], None  # current: [number, statement, solution]
    for cell in cells[heading[0]:]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if re.search(r"^## (?!Exercises)", source, re.M):
                break  # a section after the exercises
            for number, statement in re.findall(r"^(\d+)\. (\*\*.*?)(?=^\d+\. \*\*|\Z)", source,
                                                re.M | re.S):
                current = [int(number), statement, None]
                exercises.append(current)
        else:
            m = SOLUTION.match(source)
            assert m, f"{chapter}: code after Exercises must be a solution: {source[:60]!r}"
            assert "hide-input" in cell.get("metadata", {}).get("tags", []), \
                f"{chapter}: fold the solution to exercise {m.group(1)} (tag hide-input)"
            assert current is not None and int(m.group(1)) == current[0] and current[2] is None, \
                f"{chapter}: the solution to exercise {m.group(1)} must follow that exercise"
            current[2] = cell
    return [tuple(e) for e in exercises]


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.name)
def test_chapter_ends_with_exercises(path):
    """An "Exercises" section after the lessons: at least three numbered exercises, each followed by
    its worked solution (a folded code cell, `# Solution to exercise N`, run by nbval), and at least
    three of them self-checked: the exercise says which `gptlib.exercises` check to call, the
    solution calls it, and the committed page shows it passing."""
    chapter = path.name
    module = f"ch{chapter[:2]}"
    exercises = _exercises(json.loads(path.read_text())["cells"], chapter)
    assert len(exercises) >= 3, f"{chapter}: fewer than 3 exercises"
    assert [n for n, _, _ in exercises] == list(range(1, len(exercises) + 1)), f"{chapter}: numbering"
    checks = importlib.import_module(f"gptlib.exercises.{module}")
    checked = 0
    for number, statement, solution in exercises:
        assert solution is not None, f"{chapter}: exercise {number} has no solution cell"
        called = re.findall(rf"^{module}\.(\w+)\(", "".join(solution["source"]), re.M)
        if not called:
            continue
        checked += 1
        for name in called:
            assert callable(getattr(checks, name, None)), f"{chapter}: {module}.{name} does not exist"
            assert f"{module}.{name}(" in statement, f"{chapter}: exercise {number} should say how to check"
        shown = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                        for o in solution.get("outputs", []))
        assert "✓ correct" in shown, f"{chapter}: the solution to exercise {number} does not pass its check"
    assert checked >= 3, f"{chapter}: {checked} self-checked exercises, at least 3 wanted"


def test_the_exercise_convention_is_read_right():
    md = lambda src: {"cell_type": "markdown", "source": [src], "metadata": {}}
    code = lambda src, tags=("hide-input",): {"cell_type": "code", "source": [src],
                                              "metadata": {"tags": list(tags)}, "outputs": []}
    cells = [md("## Exercises\n\n1. **One.** Do it: `ch01.f(x)`."), code("# Solution to exercise 1\nch01.f(1)"),
             md("2. **Two.** Again.\n\n3. **Three.** More."), code("# Solution to exercise 3\n")]
    got = _exercises(cells, "x")
    assert [(n, s is not None) for n, _, s in got] == [(1, True), (2, False), (3, True)]
    with pytest.raises(AssertionError, match="fold"):
        _exercises(cells[:1] + [code("# Solution to exercise 1\n", tags=())], "x")
    with pytest.raises(AssertionError, match="must be a solution"):
        _exercises(cells[:1] + [code("print(1)")], "x")
    with pytest.raises(AssertionError, match="must follow"):
        _exercises(cells[:1] + [code("# Solution to exercise 2\n")], "x")


def test_diagrams_are_drawn_and_used():
    """At least three diagrams in book/images, each shown by a chapter (scripts/diagrams.py draws them)."""
    diagrams = sorted((BOOK / "images").glob("*.svg"))
    assert len(diagrams) >= 3
    markdown = "".join(s for path in NOTEBOOKS for s in _cells(path, "markdown"))
    markdown += "".join(page.read_text() for page in BOOK.glob("*.md"))  # the pages without code
    for diagram in diagrams:
        assert f"images/{diagram.name}" in markdown, f"{diagram.name} is not used by any chapter"
