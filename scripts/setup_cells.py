"""Every chapter's Colab badge and setup cell, written from one template and one URL.

The repository URL lives in one place, ``repository.url`` in ``_config.yml`` (the book's launch
buttons read it there). Each notebook carries it twice: in the *Open in Colab* badge of its first
cell (the book's own picture, book/images/colab-badge.svg, so that it shows offline), and in its first code cell (the setup cell), which clones the repository on Colab. This script
writes both from ``_config.yml`` and the template below, changing nothing else in a notebook (its
outputs stay as they are). ``tests/test_setup_cells.py`` fails when a notebook differs from what it
would write.

Run (from anywhere): python scripts/setup_cells.py            # rewrite the notebooks
                     python scripts/setup_cells.py --check    # only report, exit 1 if any differs
"""

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))

# The setup cell. On Colab the working folder is /content and nothing of the book is there: clone
# the repository beside it and put it on sys.path (not pip install: importable at once, no restart).
# Then every file the chapter reads or writes is found from ROOT or BOOK, never the working folder.
SETUP_CELL = '''\
# Setup. On Colab: fetch the book's code, so that `import gptlib` works.
# Locally: nothing to do.
import subprocess
import sys
from pathlib import Path

# The repository: the same URL as repository.url in _config.yml.
REPO_URL = "{url}"
if "google.colab" in sys.modules:
    clone = Path("/content") / REPO_URL.rstrip("/").rsplit("/", 1)[-1]
    if not clone.is_dir():
        git = subprocess.run(["git", "clone", "--depth=1", REPO_URL, str(clone)],
                             capture_output=True, text=True)
        if git.returncode != 0:
            raise RuntimeError(
                f"could not clone {{REPO_URL}}: {{git.stderr.strip()}}\\n"
                "Check that the runtime is online and that the URL is right (a fork "
                "sets its own in _config.yml, then runs scripts/setup_cells.py), and "
                "run this cell again.")
    if str(clone) not in sys.path:
        sys.path.insert(0, str(clone))  # importable at once, no kernel restart
import gptlib

ROOT = Path(gptlib.__file__).resolve().parent.parent  # the repository, wherever it is
BOOK = ROOT / "book"  # the book's files: found from here, not the working folder
print("gptlib", gptlib.__version__, "is ready")'''

BADGE_URL = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+")
# The badge: the book's own picture (book/images/colab-badge.svg), so that the page shows it offline,
# linking to the chapter on Colab. The first cell of a notebook holds it.
BADGE = re.compile(r"\[!\[Open [Ii]n Colab\]\([^)\s]+\)\]\(" + BADGE_URL.pattern + r"\)")
BADGE_IMAGE = "images/colab-badge.svg"

# The setup cell is machinery, not lesson: folded away on the HTML page (Jupyter Book's hide-input
# shows a "show code" toggle), still an ordinary cell that runs first in Jupyter and on Colab.
SETUP_TAG = "hide-input"


def repository() -> tuple[str, str]:
    """``repository.url`` and ``repository.branch`` from ``_config.yml``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return config["url"].rstrip("/"), config.get("branch", "main")


def colab_url(url: str, branch: str, notebook: Path) -> str:
    """The Colab address that opens ``notebook`` from the GitHub repository at ``url``."""
    owner_repo = url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/book/{notebook.name}"


def badge(url: str, branch: str, notebook: Path) -> str:
    """The badge markdown of ``notebook``: the local picture, linking to the chapter on Colab."""
    return f"[![Open in Colab]({BADGE_IMAGE})]({colab_url(url, branch, notebook)})"


def expected_setup_cell(url: str) -> str:
    return SETUP_CELL.format(url=url)


def rewrite(notebook: Path, url: str, branch: str) -> bool:
    """Write the badge and setup cell of ``notebook``; True if anything changed."""
    nb = nbformat.read(notebook, as_version=4)
    first = nb.cells[0]
    if first.cell_type != "markdown" or not BADGE.search(first.source):
        raise SystemExit(f"{notebook.name}: the first cell must be markdown with an Open in Colab badge")
    setup = next(c for c in nb.cells if c.cell_type == "code")
    source = BADGE.sub(lambda _: badge(url, branch, notebook), first.source)
    cell = expected_setup_cell(url)
    tags = setup.metadata.get("tags", [])
    changed = source != first.source or cell != setup.source or SETUP_TAG not in tags
    first.source, setup.source = source, cell
    setup.metadata["tags"] = [*tags, SETUP_TAG] if SETUP_TAG not in tags else tags
    if changed:
        nbformat.write(nb, notebook)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook differs")
    args = parser.parse_args(argv)
    url, branch = repository()
    stale = []
    for notebook in NOTEBOOKS:
        if args.check:
            nb = nbformat.read(notebook, as_version=4)
            setup = next(c for c in nb.cells if c.cell_type == "code")
            if (badge(url, branch, notebook) not in nb.cells[0].source
                    or setup.source != expected_setup_cell(url)
                    or SETUP_TAG not in setup.metadata.get("tags", [])):
                stale.append(notebook.name)
        elif rewrite(notebook, url, branch):
            print("rewrote", notebook.relative_to(ROOT))
    if stale:
        print("differ from _config.yml and the template:", ", ".join(stale))
        print("run: python scripts/setup_cells.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
