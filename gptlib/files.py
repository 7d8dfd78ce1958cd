"""Atomic file writes, the one way gptlib writes a file that matters (data, checkpoints, results),
and the checks that an output path can be written *before* the work that fills it."""

import argparse
import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gptlib.errors import OutputPathError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` (temp file beside it, fsync, rename) if the block ends
    without an error; a link, a device or a pipe (``--json /dev/stdout``) is written through instead."""
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes it private; give it a new file's usual mode
        os.replace(tmp_name, path)
        with contextlib.suppress(OSError):  # make the rename durable (not possible everywhere: Windows)
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _written_in_place(path: Path) -> bool:  # renaming over a link or a device would replace it
    return path.is_symlink() or (path.exists() and not path.is_file() and not path.is_dir())


def path_arg(text: str) -> Path:
    """The command line's ``type`` for a path: ``~`` expanded, an empty one (the current folder) refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty; name a file or folder")
    return Path(text).expanduser()


def make_folder(path: str | os.PathLike, what: str, hint: str) -> list[Path]:
    """Create folder ``path`` (and parents), check that a file can be written in it and return the folders
    it created, outermost first; else an `OutputPathError` naming ``what``, the path, why and ``hint``."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise OutputPathError(f"{what} {path} exists and is not a folder; {hint}")
        if path.is_symlink() and not path.exists():
            raise OutputPathError(f"{what} {path} is a link to {os.readlink(path)}, which does not exist; "
                                  f"{hint}")
        missing = [p for p in [path, *path.parents] if not p.exists()][::-1]  # outermost first
        if missing and not missing[0].parent.is_dir():  # the deepest existing parent is a file
            raise OutputPathError(f"{what} {path} cannot be created: {missing[0].parent} is a file, not a "
                                  f"folder; {hint}")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # no permission, a read-only disk, a name longer than the file system allows
        if isinstance(err, OutputPathError):
            raise
        raise OutputPathError(f"{what} {path} cannot be created ({err.strerror or err}); {hint}") from None
    try:
        tempfile.TemporaryFile(dir=path).close()  # what a save does first: create a file there
    except OSError as err:  # ENOENT in a folder that exists: /proc, /sys, which take no new files
        reason = "it takes no new files" if err.errno == errno.ENOENT else err.strerror or str(err)
        raise OutputPathError(f"{what} {path} cannot be written ({reason}); {hint}") from None
    return [p for p in missing if p.is_dir()]


def check_writable_file(path: str | os.PathLike, what: str, hint: str) -> None:
    """Check, before the work that produces it, that `atomic_write` can write ``path``."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder, not a file; {hint}")
    if not _written_in_place(path):
        make_folder(path.parent, f"{what} {path}: the folder", hint)
    elif not os.access(path, os.W_OK):  # /dev/null, /dev/stdout, a pipe, a link to a file
        raise OutputPathError(f"{what} {path} cannot be written (permission denied); {hint}")


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (as `make_folder` returns them) innermost first, while they are empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone): keep it, and every folder around it
            return


REPOSITORY = Path(__file__).resolve().parent.parent  # the same from book/, Colab's /content, a shell


def _folder_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return REPOSITORY / Path(value).expanduser() if value else default  # an absolute path stays as it is


def runs_folder() -> Path:
    """Where training runs go: ``$GPTLIB_RUNS`` (relative to the repository), else ``runs/`` there."""
    return _folder_from_env("GPTLIB_RUNS", REPOSITORY / "runs")


def results_folder() -> Path:
    """Where the chapters record results: ``$GPTLIB_RESULTS`` (``book/results``), else `runs_folder`."""
    return _folder_from_env("GPTLIB_RESULTS", runs_folder())
