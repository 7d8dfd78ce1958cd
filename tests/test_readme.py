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
