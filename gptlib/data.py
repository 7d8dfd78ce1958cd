"""The training text: a UTF-8 file, or Tiny Shakespeare verified by its sha256 wherever it comes from
(``GPTLIB_DATA``, the cache, or a download renamed into place only once it checks out)."""

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from gptlib.errors import DataError, DataNotFoundError
from gptlib.files import REPOSITORY, atomic_write

TINY_SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
                        "input.txt")
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_BYTES = 1_115_394
FILENAME = "tinyshakespeare.txt"
ENV_VAR = "GPTLIB_DATA"


def repo_root() -> Path | None:
    """The checkout this package lives in (an editable install, or a clone on ``sys.path``), else None."""
    return REPOSITORY if (REPOSITORY / "pyproject.toml").is_file() else None


def default_cache_dir() -> Path:
    """``data/`` beside the package in a checkout (editable install), else ``~/.cache/gptlib``."""
    repo = repo_root()
    return repo / "data" if repo and (repo / "data").is_dir() else Path.home() / ".cache" / "gptlib"


def resolve_override(value: str) -> Path:
    """The file a ``GPTLIB_DATA`` value names: an absolute path, or the first file a relative one names."""
    path = Path(value).expanduser()
    if path.is_absolute():
        if not path.is_file():
            raise DataNotFoundError(f"{ENV_VAR} points at {path}, which is not a file; fix the path or unset "
                                    f"{ENV_VAR} to download the data into the cache")
        return path
    root, cwd = repo_root(), Path.cwd()  # at the repository root the two places are one: name it once
    places = [cwd] + ([root] if root not in (None, cwd.resolve()) else [])
    if found := [place / path for place in places if (place / path).is_file()]:
        return found[0].resolve()
    looked = " nor ".join(f"{place / path}" for place in places)
    raise DataNotFoundError(f"{ENV_VAR}={value} is a relative path, and there is no file at {looked}. A "
                            f"relative {ENV_VAR} is looked up in the working folder, then the repository "
                            f"root: fix the path, give an absolute one (export {ENV_VAR}=$PWD/{value} "
                            f"in the folder you meant), or unset {ENV_VAR} to download the data")


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str, *, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` into a temp file beside ``dest``, renamed to it only if its hash is ``sha256``."""
    from tqdm.auto import tqdm
    dest = Path(dest)
    try:
        digest = hashlib.sha256()
        with (atomic_write(dest, suffix=".part") as out,
              urllib.request.urlopen(url, timeout=timeout) as response):
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}",
                      disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise DataError(f"download of {url} broke off after {out.tell():,} of {total:,} bytes; "
                                f"try again")
            if digest.hexdigest() != sha256:  # raised inside the block: the temp file is never renamed
                raise DataError(f"the file downloaded from {url} has sha256 {digest.hexdigest()}, expected "
                                f"{sha256}; it was not saved. Check the URL, or place a good copy at {dest}")
    except http.client.HTTPException as err:  # IncompleteRead (a chunked reply cut short): not an OSError
        raise DataError(f"download of {url} broke off ({type(err).__name__}: {err}); try again, or place "
                        f"a good copy at {dest}") from err
    return dest


def tiny_shakespeare_path(*, cache_dir: Path | None = None, url: str = TINY_SHAKESPEARE_URL,
                          progress: bool = True) -> Path:
    """The path of a verified copy of Tiny Shakespeare, downloading it into the cache if needed."""
    if override := os.environ.get(ENV_VAR):
        path = resolve_override(override)
        if sha256_of(path) != TINY_SHAKESPEARE_SHA256:
            raise DataError(f"{path} (from {ENV_VAR}) is not Tiny Shakespeare: its sha256 is not "
                            f"{TINY_SHAKESPEARE_SHA256}. Point {ENV_VAR} at a good copy, or pass your own "
                            f"text file as an explicit path")
        return path
    dest = Path(cache_dir or default_cache_dir()) / FILENAME
    if dest.is_file():
        if sha256_of(dest) == TINY_SHAKESPEARE_SHA256:
            return dest
        dest.unlink()  # a cached file with the wrong checksum is not trusted: download it again
    try:
        return download(url, dest, TINY_SHAKESPEARE_SHA256, progress=progress)
    except (urllib.error.URLError, OSError) as err:
        raise DataNotFoundError(
            f"Tiny Shakespeare is not available offline and could not be downloaded "
            f"({getattr(err, 'reason', err)}). Place the file ({TINY_SHAKESPEARE_BYTES:,} bytes, sha256 "
            f"{TINY_SHAKESPEARE_SHA256}) at {dest}, or set {ENV_VAR}=/path/to/tinyshakespeare.txt (a "
            f"relative path is looked up in the working folder, then the repository root). It is at "
            f"{TINY_SHAKESPEARE_URL}") from err


def load_text(path: str | os.PathLike | None = None, **kwargs) -> str:
    """The training text: ``path`` if given (any UTF-8 text file), else verified Tiny Shakespeare."""
    path = Path(tiny_shakespeare_path(**kwargs) if path is None else path).expanduser()
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass a text file, or no path to use Tiny Shakespeare")
    if not path.exists():  # a pipe is fine: --data /dev/stdin, --data <(zcat text.gz)
        raise DataNotFoundError(f"no text file at {path}; pass an existing file, or no path to use "
                                f"Tiny Shakespeare")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    if not text:
        raise DataError(f"{path} is empty; the model needs text to learn from")
    return text
