"""The README's test command is the one CI runs, and its layout matches the repository.

Run: pytest tests/test_readme.py
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .*)\n```", readme)
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1, "the README must show exactly one set-up + test command"
    assert test_command[0] in (ROOT / ".ci" / "run").read_text()


def test_book_toc_is_the_top_level_toc():
    assert (ROOT / "book" / "_toc.yml").resolve() == (ROOT / "_toc.yml").resolve()


def readme_bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_offline_line_as_written():
    """The offline line a user types (a path relative to the repository root) is the one CI uses."""
    lines = [b for b in readme_bash_blocks() if b.startswith("export GPTLIB_DATA=")]
    assert len(lines) == 1, "the README must show exactly one offline GPTLIB_DATA line"
    assert not lines[0].split("=", 1)[1].startswith("/"), "CI must exercise a relative path"
    assert f"\n{lines[0]}\n" in (ROOT / ".ci" / "run").read_text()


def test_readme_has_the_three_install_routes_with_their_sizes():
    readme = (ROOT / "README.md").read_text()
    cpu = [b for b in readme_bash_blocks() if "--index-url https://download.pytorch.org/whl/cpu" in b]
    assert len(cpu) == 1 and "torch==2.13.0" in cpu[0]
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text()
    for route in ["**CPU only**", "**Default** (GPU-capable)", "**Colab**"]:
        assert route in readme
    assert "192 MB" in readme and "2.7 GB" in readme  # the measured sizes, with where they come from
