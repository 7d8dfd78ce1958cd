"""Chapter 7's browser export goes beside the run unless a maintainer asks for the book's results.

Run: pytest tests/test_export_path.py
"""

from pathlib import Path

from gptlib.export import browser_export_path
from gptlib.files import REPOSITORY

BOOK = REPOSITORY / "book"


def test_a_readers_export_goes_beside_the_run(monkeypatch, tmp_path):
    monkeypatch.delenv("GPTLIB_RESULTS", raising=False)
    monkeypatch.setenv("GPTLIB_RUNS", str(tmp_path))
    assert browser_export_path(tmp_path / "run", "cpu", BOOK) == tmp_path / "run" / "gpt-model.bin"


def test_only_the_book_results_replace_the_books_model(monkeypatch, tmp_path):
    monkeypatch.setenv("GPTLIB_RESULTS", "book/results")
    assert browser_export_path(tmp_path, "cpu", BOOK) == BOOK / "_static" / "gpt-model.bin"
    assert browser_export_path(tmp_path, "smoke", BOOK) == Path(tmp_path) / "gpt-model.bin"  # not the page's preset
    monkeypatch.setenv("GPTLIB_RESULTS", str(tmp_path / "elsewhere"))
    assert browser_export_path(tmp_path, "cpu", BOOK) == Path(tmp_path) / "gpt-model.bin"
