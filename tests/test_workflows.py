"""The GitHub workflows mirror .ci/run: the README's own commands, torch's CPU build, and the book
deployed to GitHub Pages with the actions GitHub documents. They cannot run here; this checks that
they parse and say what they should.

Run: pytest tests/test_workflows.py
"""

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def readme_commands() -> dict[str, str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return {
        "cpu": next(b for b in blocks if "download.pytorch.org/whl/cpu" in b),
        "test": next(b for b in blocks if b.startswith("python3 -m venv") and b.endswith("pytest --nbval")),
        "build": next(b for b in blocks if b.startswith("python3 -m venv") and "jupyter-book build" in b),
    }


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads a bare `on` as True
    return workflow


def runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_tests_workflow_runs_the_readme_test_command_on_push_and_pull_request():
    workflow = load("tests.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    (job,) = workflow["jobs"].values()
    commands = readme_commands()
    assert runs(job)[:2] == [commands["cpu"], commands["test"]]  # CPU torch first, then the README's
    assert any("scripts/colab_check.py" in r for r in runs(job))
    assert uses(job)[:2] == ["actions/checkout", "actions/setup-python"]


def test_book_workflow_builds_and_deploys_to_pages_on_push_to_main():
    workflow = load("book.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"]["pages"] == "write" and workflow["permissions"]["id-token"] == "write"
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    commands = readme_commands()
    assert runs(build) == [commands["cpu"], commands["build"]]
    assert uses(build) == ["actions/checkout", "actions/setup-python", "actions/upload-pages-artifact"]
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"  # where `jupyter-book build book` writes, as .ci/run tests
    assert "_build/html/index.html" in (ROOT / ".ci" / "run").read_text()
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert uses(deploy) == ["actions/deploy-pages"]


def test_workflows_mirror_ci_run():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = readme_commands()
    assert commands["test"] in ci and "python scripts/colab_check.py" in ci
