"""One repository URL: every notebook's Colab badge and setup cell agree with _config.yml, and the
setup cell fails loudly, saying what to do, when the clone fails.

A fork changes ``repository.url`` in ``_config.yml`` and runs ``python scripts/setup_cells.py``;
these tests say so when a notebook still carries another URL or an older setup cell.

Run: pytest tests/test_setup_cells.py
"""

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("setup_cells", ROOT / "scripts" / "setup_cells.py")
setup_cells = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_cells)

URL, BRANCH = setup_cells.repository()
NOTEBOOKS = setup_cells.NOTEBOOKS
FIX = "run: python scripts/setup_cells.py"


def setup_source(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code").source


def test_the_url_is_a_github_repository():
    assert URL.startswith("https://github.com/") and URL.count("/") == 4, URL


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_opens_this_notebook_from_the_configured_repository(path):
    badge = nbformat.read(path, as_version=4).cells[0].source
    assert setup_cells.colab_url(URL, BRANCH, path) in badge, f"{path.name}: badge URL differs; {FIX}"
    assert setup_cells.BADGE_URL.findall(badge) == [setup_cells.colab_url(URL, BRANCH, path)]
    # the picture is the book's own, so that the page shows it offline
    assert setup_cells.badge(URL, BRANCH, path) in badge, f"{path.name}: badge differs; {FIX}"
    assert (path.parent / setup_cells.BADGE_IMAGE).is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_the_template_with_the_configured_url(path):
    source = setup_source(path)
    assert f'REPO_URL = "{URL}"' in source, f"{path.name}: setup cell URL differs; {FIX}"
    assert source == setup_cells.expected_setup_cell(URL), f"{path.name}: setup cell differs; {FIX}"


def test_the_check_mode_agrees(capsys):
    assert setup_cells.main(["--check"]) == 0, capsys.readouterr().out


def test_setup_cell_locally_finds_the_repository(monkeypatch):
    """Off Colab the cell clones nothing and points ROOT and BOOK at this checkout."""
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("cloned off Colab"))
    namespace = {}
    exec(setup_cells.expected_setup_cell(URL), namespace)
    assert namespace["ROOT"] == ROOT and namespace["BOOK"] == ROOT / "book"


def test_setup_cell_on_colab_fails_loudly_when_the_clone_fails(monkeypatch, capsys):
    """A clone that fails (a wrong URL, no network) stops the cell with the URL and the fix, instead of
    passing silently and leaving the next cell to die on `import gptlib`."""
    clone = Path("/content") / URL.rsplit("/", 1)[-1]
    if clone.exists():
        pytest.skip(f"{clone} exists here (a real Colab?)")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = []

    def failing_git(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 128, "", "fatal: repository not found")

    monkeypatch.setattr(subprocess, "run", failing_git)
    with pytest.raises(RuntimeError) as info:
        exec(setup_cells.expected_setup_cell(URL), {})
    message = str(info.value)
    assert calls == [["git", "clone", "--depth=1", URL, str(clone)]]
    assert URL in message and "repository not found" in message
    assert "_config.yml" in message and "scripts/setup_cells.py" in message and "run this cell again" in message
