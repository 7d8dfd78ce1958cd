"""The README: its test command is the one CI runs; its first screen links the published book and\nColab and shows a real sample; one numbering in the README, the intro's road map and the sidebar.

Run: pytest tests/test_readme.py
"""

import html
import re
from pathlib import Path

import nbformat
import yaml

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


# --- the first screen, the published book, one numbering ---

def config_repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return config["url"].rstrip("/"), config.get("branch", "main")


def pages_url(repository_url: str) -> str:
    """The GitHub Pages address of a repository (.github/workflows/book.yml deploys the book there)."""
    owner, name = repository_url.removeprefix("https://github.com/").split("/")
    return f"https://{owner}.github.io/{name}/"


def test_readme_is_short_and_its_deep_sections_are_one_link_away():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15 * 1024, f"README.md is {len(readme.encode()):,} bytes; keep it <= 15 KB"
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs, "the README's deep sections live in docs/"
    for doc in docs:
        assert f"](docs/{doc.name})" in readme, f"docs/{doc.name} is not linked from the README"
    for target in re.findall(r"\]\(((?:docs|book)/[^)#\s]+)", readme) + re.findall(r'src="(book/[^"]+)"', readme):
        assert (ROOT / target).exists(), f"the README links to {target}, which does not exist"


def test_readme_links_the_published_book_and_colab_from_the_configured_repository():
    readme = (ROOT / "README.md").read_text()
    url, branch = config_repository()
    assert readme.count(pages_url(url)) == 1, f"the README must link the published book, {pages_url(url)}, once"
    assert re.findall(r"https://[\w-]+\.github\.io/[^\s)]*", readme) == [pages_url(url)]
    colab = f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{branch}/book/"
    assert f"]({colab}01_data.ipynb)" in readme
    head = readme[: readme.index("## Two commands")]  # the first screen: the links, a sample, the picture
    assert pages_url(url) in head and colab in head and "```text\n" in head
    assert 'src="book/images/browser-sampler.png"' in head
    assert (ROOT / "book" / "images" / "browser-sampler.png").stat().st_size < 200_000


def test_readme_sample_is_the_one_chapter_7_saved():
    """The sample on the README's first screen is a real one: the start of what chapter 7's sampler
    panel saved. After chapter 7 is re-executed, copy the new sample's first lines into the README."""
    sample = re.search(r"```text\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S).group(1)
    nb = nbformat.read(ROOT / "book" / "07_train_gpt.ipynb", as_version=4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    saved = [html.unescape(re.sub(r"<[^>]+>", "", str(m["state"].get("value", "")))) for m in state.values()
             if m["model_name"] == "HTMLModel" and str(m["state"].get("value", "")).startswith("<pre")]
    assert len(sample.splitlines()) >= 5 and saved and saved[0].startswith(sample), (
        "the README's sample is not the start of chapter 7's saved sample: copy its first lines")


def toc_files() -> list[list[str]]:
    """The table of contents' parts, each a list of page names (files without their suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [[entry["file"] for entry in part["chapters"]] for part in toc["parts"]]


def page_title(name: str) -> str:
    """A page's H1: a notebook's first markdown line, or a page's first line."""
    path = ROOT / "book" / name
    if path.with_suffix(".ipynb").exists():
        first = nbformat.read(path.with_suffix(".ipynb"), as_version=4).cells[0].source
    else:
        first = path.with_suffix(".md").read_text()
    return first.splitlines()[0].removeprefix("# ").strip()


def test_the_toc_numbers_the_chapters_and_names_the_pages_after_them():
    chapters, after = toc_files()
    assert chapters == sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    for number, name in enumerate(chapters, 1):
        assert page_title(name).startswith(f"{number}. "), f"{name}: its title must start '{number}. '"
    assert after == ["browser", "multi_gpu", "next"]
    for name in after:
        assert not re.match(r"\d", page_title(name)), f"{name}.md is a page after the chapters: no number"


def test_the_intros_road_map_names_every_page_of_the_toc_in_order():
    intro = (ROOT / "book" / "intro.md").read_text()
    road_map = intro[intro.index("## The road map"): intro.index("\n## ", intro.index("## The road map") + 5)]
    chapters, after = toc_files()
    links = re.findall(r"^\s*(\d+\.|-) \[\*\*(.+?)\*\*\]\(([\w.]+)\)", road_map, flags=re.M)
    assert [Path(f).stem for _, _, f in links] == chapters + after, "the road map must name every page"
    for (marker, title, file), name in zip(links, chapters + after):
        if name in chapters:
            assert marker == f"{chapters.index(name) + 1}." and page_title(name) == f"{marker} {title}"
        else:
            assert marker == "-" and page_title(name) == title  # a page after the chapters has no number


def test_readme_and_intro_use_the_books_numbering():
    chapters, after = toc_files()
    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"(\d+)\. \[([^\]]+)\]\(book/(\w+)\.ipynb\)", readme)
    assert [(int(n), f) for n, _, f in listed] == list(enumerate(chapters, 1))
    assert all(f"{n}. {t}" == page_title(f) for n, t, f in listed)
    for name in after:
        assert f"[{page_title(name)}](book/{name}.md)" in readme
    for text, where in [(readme, "README.md"), ((ROOT / "book" / "intro.md").read_text(), "intro.md")]:
        for name in after:  # never "ch. 8 'Your GPT in the browser'" or "8. Where to go next"
            title = re.escape(page_title(name))
            assert not re.search(r"(?:ch\.|chapter|\d\.)\s*[\"*\[]*" + title, text, flags=re.I), (where, name)
        assert "final chapter" not in text and "last chapter" not in text, f"{where}: name the chapter by number"
