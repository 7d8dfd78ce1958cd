"""Execute every chapter the way Colab runs it: from an empty working folder outside the
repository, with the repository on ``sys.path`` but not installed, under ipywidgets 8 and 7.7.

On Colab a notebook's working folder is ``/content``, nothing of the book is there, and the setup
cell clones the repository and puts it first on ``sys.path`` (no ``pip install``). Colab ships
ipywidgets 7.7. A chapter that reads or writes a path relative to the working folder, or needs
gptlib installed, or an ipywidgets 8 API, works locally (kernels in ``book/``, ``pip install -e .``)
and breaks there. This script recreates those conditions on this machine:

- a kernel whose Python sees the packages of the environment running this script but not its
  installed gptlib: a throw-away virtual environment whose ``.pth`` file lists this environment's
  site-packages folder as a plain path (so the editable install's hook is never run), checked
  before anything runs;
- ``sys.path.insert(0, <repository root>)`` when the kernel starts, as the setup cell does on
  Colab (no ``PYTHONPATH``, so a subprocess would not see gptlib either, as on Colab);
- the working folder: a new empty temporary folder per notebook, which must still be empty
  afterwards (a chapter writes its files under the repository, never the working folder);
- for ``--ipywidgets 7.7``: ipywidgets 7.7 (and the widgetsnbextension, jupyterlab_widgets and
  ipython_genutils it needs) installed into that virtual environment, ahead of this one's 8.x.

The chapters run with ``GPTLIB_PRESET=smoke`` (seconds each), as under the tests. ``GPTLIB_DATA``
passes through; a relative one is found from the repository root (see ``gptlib/data.py``).

Run (from anywhere, in the environment of requirements.txt):
    python scripts/colab_check.py                                  # ipywidgets 8 and 7.7
    python scripts/colab_check.py --ipywidgets 7.7 book/07_train_gpt.ipynb
"""

import argparse
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
# What pip installs for the 7.7 run (no dependency resolution: everything else is this environment's).
IPYWIDGETS_7 = ["ipywidgets==7.7.*", "widgetsnbextension==3.6.*", "jupyterlab_widgets==1.1.*",
                "ipython_genutils==0.2.*"]
KERNEL = "colab-way"
# The kernel's first act, before ipykernel starts: what the setup cell does on Colab.
LAUNCH = ("import sys; sys.path.insert(0, {root!r}); "
          "from ipykernel import kernelapp; kernelapp.launch_new_instance()")


def make_env(folder: Path, ipywidgets: str) -> Path:
    """A virtual environment at ``folder`` that reuses this one's packages, without its gptlib."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    if ipywidgets == "7.7":
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                        *IPYWIDGETS_7], check=True)
    # A plain path line: site-packages goes on sys.path, but the .pth files inside it (the editable
    # install's import hook among them) are not run.
    (site / "_reuse_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def probe(python: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python`` in an empty folder, without PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=cwd, env=env)


def check_env(python: Path, ipywidgets: str) -> None:
    """gptlib must not be importable without the setup cell's sys.path, and ipywidgets must be the one asked."""
    bare = probe(python, "import gptlib; print(gptlib.__file__)")
    if bare.returncode == 0:
        sys.exit(f"gptlib is importable without the repository on sys.path ({bare.stdout.strip()}): "
                 f"it is installed in {python}'s base interpreter; this check needs it not installed")
    seen = probe(python, LAUNCH.split("; from")[0].format(root=str(ROOT))
                 + "; import gptlib, ipywidgets; print(gptlib.__file__); print(ipywidgets.__version__)")
    if seen.returncode != 0:
        sys.exit(f"the kernel's Python cannot import gptlib and ipywidgets:\n{seen.stderr}")
    where, version = seen.stdout.split()
    assert Path(where).resolve().is_relative_to(ROOT), where
    assert version.startswith(ipywidgets), f"asked for ipywidgets {ipywidgets}, got {version}"
    print(f"kernel: {python} | gptlib from {Path(where).parent} (sys.path, not installed) | "
          f"ipywidgets {version}", flush=True)


def add_kernelspec(jupyter_path: Path, python: Path) -> None:
    spec = jupyter_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [str(python), "-c", LAUNCH.format(root=str(ROOT)), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))


def run_notebook(path: Path, timeout: int) -> str | None:
    """Execute ``path`` in a fresh empty working folder; None if all went well, else what went wrong."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="content-") as cwd:
        client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": cwd}})
        try:
            client.execute()
        except CellExecutionError as err:
            message = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # no terminal colours
            return f"{message.splitlines()[-1][:500]}\n(in the cell: {message[:300]!r}...)"
        except Exception as err:  # a kernel that died, a timeout
            return f"{type(err).__name__}: {err}"[:800]
        left = sorted(str(p.relative_to(cwd)) for p in Path(cwd).rglob("*"))
        if left:
            return f"wrote into the working folder (use ROOT or BOOK from the setup cell): {left[:10]}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter")
    parser.add_argument("--ipywidgets", action="append", choices=["8", "7.7"],
                        help="run under this major version (repeat for both; default: 8 and 7.7)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or NOTEBOOKS
    os.environ.setdefault("GPTLIB_PRESET", "smoke")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.pop("PYTHONPATH", None)  # the kernel finds gptlib the Colab way only
    passed, failed = 0, []
    for version in args.ipywidgets or ["8", "7.7"]:
        with tempfile.TemporaryDirectory(prefix="colab-way-") as tmp:
            python = make_env(Path(tmp) / "venv", version)
            check_env(python, version)
            add_kernelspec(Path(tmp) / "jupyter", python)
            os.environ["JUPYTER_PATH"] = str(Path(tmp) / "jupyter")
            # The chapters' runs and results (checkpoints, smoke rungs) go to the temporary folder,
            # as under the tests: never into the clone's runs/ or book/ (.ci/run checks it).
            os.environ["GPTLIB_RUNS"] = str(Path(tmp) / "runs")
            os.environ["GPTLIB_RESULTS"] = str(Path(tmp) / "results")
            for path in notebooks:
                started = time.perf_counter()
                problem = run_notebook(path, args.timeout)
                took = time.perf_counter() - started
                status = "FAIL" if problem else "ok  "
                print(f"{status} ipywidgets {version:<3} {path.name:<28} {took:5.0f} s", flush=True)
                if problem:
                    print("     " + problem.replace("\n", "\n     "), flush=True)
                    failed.append(f"{path.name} (ipywidgets {version})")
                else:
                    passed += 1
    if failed:
        print("failed:", ", ".join(failed))
    print(f"colab way: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
