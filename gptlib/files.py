"""Atomic file writes, the one way gptlib writes a file that matters (data, checkpoints, results),
and the checks that an output path can be written *before* the work that fills it.

The bytes go to a temp file beside the target, are fsynced, and the temp file is renamed over the
target. A reader sees the old file or the new one, never half of one; an error or a kill mid-write
leaves the old file as it was (a kill can leave a hidden ``.NAME.<random>SUFFIX`` that nothing reads).
A link, a device or a pipe (``--json /dev/stdout``) is written through instead, not atomically.

`make_folder` and `check_writable_file` try what the later write will do (create the folders, write a
file there), so a bad output path fails in a second with a message that names the path and the reason,
not after an hour of training or benchmarking.
"""

import argparse
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from gptlib.errors import OutputPathError


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Yield a binary file; when the block ends without an error it replaces ``path``, else nothing does.

    A link, or a device or pipe (``/dev/null``, ``/dev/stdout``, a named pipe), is written through,
    in place and not atomically: renaming over it would replace the link, or the device itself (as
    root, ``/dev/null``).
    """
    path = Path(path)
    if _written_in_place(path):
        with open(path, "wb") as f:
            yield f
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes it private; give it a new file's usual mode
        os.replace(tmp_name, path)
        _fsync_dir(path.parent)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _written_in_place(path: Path) -> bool:
    """Whether `atomic_write` writes through ``path`` instead of renaming a new file over it."""
    return path.is_symlink() or (path.exists() and not path.is_file() and not path.is_dir())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (not possible on every platform, e.g. Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def path_arg(text: str) -> Path:
    """The command line's ``type`` for a path: ``~`` expanded, an empty string refused (as a path it
    would mean the current folder, which nobody typing ``--out ''`` means)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty; name a file or folder")
    return Path(text).expanduser()


def make_folder(path: str | os.PathLike, what: str, hint: str) -> list[Path]:
    """Create folder ``path`` (and missing parents) and check that a file can be written in it.

    Returns the folders it created, outermost first (so a caller can remove them again). Any problem
    is an `OutputPathError` that names ``what`` (e.g. "the output folder"), the path and the reason,
    and ends with ``hint`` (what to do instead).
    """
    path = Path(path)
    try:
        return _make_folder(path, what, hint)
    except OutputPathError:
        raise
    except OSError as err:  # no permission, a read-only disk, a name longer than the file system allows
        raise OutputPathError(f"{what} {path} cannot be created ({_reason(err)}); {hint}") from None


def _make_folder(path: Path, what: str, hint: str) -> list[Path]:
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} exists and is not a folder; {hint}")
    if path.is_symlink() and not path.exists():
        raise OutputPathError(f"{what} {path} is a link to {os.readlink(path)}, which does not exist; {hint}")
    missing = [p for p in [path, *path.parents] if not p.exists()][::-1]  # outermost first
    blocker = next((p for p in path.parents if p.exists()), None)  # the deepest existing parent
    if missing and blocker is not None and not blocker.is_dir():
        raise OutputPathError(f"{what} {path} cannot be created: {blocker} is a file, not a folder; {hint}")
    path.mkdir(parents=True, exist_ok=True)  # an OSError here: "cannot be created", in `make_folder`
    try:
        with tempfile.TemporaryFile(dir=path):  # what a save does first: create a file there
            pass
    except OSError as err:  # ENOENT in a folder that exists: /proc, /sys, which take no new files
        reason = "it takes no new files" if err.errno == errno.ENOENT else _reason(err)
        raise OutputPathError(f"{what} {path} cannot be written ({reason}); {hint}") from None
    return [p for p in missing if p.is_dir()]


def check_writable_file(path: str | os.PathLike, what: str, hint: str) -> None:
    """Check, before the work that produces it, that `atomic_write` can write ``path``: it is not a
    folder, and its folder can be created and written (see `make_folder`); or it is a device or pipe
    that may be written (``/dev/stdout``)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder, not a file; {hint}")
    if path.is_symlink() and not path.exists():
        raise OutputPathError(f"{what} {path} is a link to {os.readlink(path)}, which does not exist; {hint}")
    if _written_in_place(path):  # /dev/null, /dev/stdout, a pipe, a link to a file
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{what} {path} cannot be written (permission denied); {hint}")
        return
    make_folder(path.parent, f"{what} {path}: the folder", hint)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (outermost first, as `make_folder` returns them) innermost first, each only
    if it is empty: what a failed start leaves behind, and nothing else."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone): keep it, and every folder around it
            return


def _reason(err: OSError) -> str:
    return err.strerror or str(err)  # "Permission denied", "Read-only file system"...


# Where a reader's runs and results go. The repository is the folder that holds the package, so the
# answer is the same from book/, from /content on Colab and from the command line.
REPOSITORY = Path(__file__).resolve().parent.parent


def _folder_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPOSITORY / path


def runs_folder() -> Path:
    """Where a reader's training runs go: ``$GPTLIB_RUNS`` (absolute, or relative to the repository),
    else ``runs/`` in the repository, a folder git ignores. The tests point it at a scratch folder."""
    return _folder_from_env("GPTLIB_RUNS", REPOSITORY / "runs")


def results_folder() -> Path:
    """Where the chapters record results (the ladder, the browser export): ``$GPTLIB_RESULTS`` when a
    maintainer asks for the book's own (``GPTLIB_RESULTS=book/results``), else `runs_folder`."""
    return _folder_from_env("GPTLIB_RESULTS", runs_folder())
