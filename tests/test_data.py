"""The data layer: download against a loopback HTTP server, checksum, cache, override.

Run: pytest tests/test_data.py
"""

import hashlib
import os
import http.server
import threading
from pathlib import Path

import pytest

from gptlib import data as gdata
from gptlib.errors import DataError, DataNotFoundError

BODY = b"To be, or not to be, that is the question.\n" * 500
GOOD_SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server():
    """A loopback HTTP server: /good serves BODY, /truncated promises more bytes than it sends."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/good":
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)
            elif self.path == "/truncated":
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY[:1000])  # then the connection closes
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_good_file_is_cached(server, tmp_path):
    dest = gdata.download(f"{server}/good", tmp_path / "t.txt", GOOD_SHA, progress=False)
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]  # no temp file left behind


def test_checksum_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    with pytest.raises(DataError, match="sha256"):
        gdata.download(f"{server}/good", tmp_path / "t.txt", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_broken_download_leaves_no_file(server, tmp_path):
    with pytest.raises((DataError, OSError)):
        gdata.download(f"{server}/truncated", tmp_path / "t.txt", GOOD_SHA, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_offline_without_override_names_the_file_to_place(monkeypatch, tmp_path):
    monkeypatch.delenv(gdata.ENV_VAR, raising=False)
    with pytest.raises(DataNotFoundError) as info:
        gdata.tiny_shakespeare_path(cache_dir=tmp_path, url="http://127.0.0.1:9/nothing-listens-here",
                                    progress=False)
    message = str(info.value)
    assert str(tmp_path / gdata.FILENAME) in message and gdata.ENV_VAR in message
    assert list(tmp_path.iterdir()) == []


def test_cached_file_with_wrong_checksum_is_not_trusted(monkeypatch, tmp_path):
    monkeypatch.delenv(gdata.ENV_VAR, raising=False)
    (tmp_path / gdata.FILENAME).write_text("not shakespeare")
    with pytest.raises(DataNotFoundError):  # it tries to download a fresh copy (and fails offline)
        gdata.tiny_shakespeare_path(cache_dir=tmp_path, url="http://127.0.0.1:9/x", progress=False)
    assert not (tmp_path / gdata.FILENAME).exists()


def test_env_override_must_be_tiny_shakespeare(monkeypatch, tmp_path):
    fake = tmp_path / "fake.txt"
    fake.write_text("hello")
    monkeypatch.setenv(gdata.ENV_VAR, str(fake))
    with pytest.raises(DataError, match="not Tiny Shakespeare"):
        gdata.tiny_shakespeare_path()
    monkeypatch.setenv(gdata.ENV_VAR, str(tmp_path / "missing.txt"))
    with pytest.raises(DataNotFoundError, match="not a file"):
        gdata.tiny_shakespeare_path()


def test_explicit_path_reads_any_text(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("my own corpus\n", encoding="utf-8")
    assert gdata.load_text(p) == "my own corpus\n"
    with pytest.raises(DataNotFoundError):
        gdata.load_text(tmp_path / "nope.txt")


def test_real_data_when_available():
    """With the offline copy (as in CI) the verified text has the published size."""
    try:
        path = gdata.tiny_shakespeare_path(progress=False)
    except DataNotFoundError:
        pytest.skip("Tiny Shakespeare is not available offline here")
    assert Path(path).stat().st_size == gdata.TINY_SHAKESPEARE_BYTES


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    """mkstemp makes private files; a written file gets the mode a new file would have."""
    from gptlib.files import atomic_write

    with atomic_write(tmp_path / "f.txt") as f:
        f.write(b"hello")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


# A relative GPTLIB_DATA: the working folder first, then the repository root, nothing else.


@pytest.fixture
def two_folders(monkeypatch, tmp_path):
    """A stand-in repository root and another working folder (as a notebook's kernel has in book/)."""
    repo, elsewhere = tmp_path / "repo", tmp_path / "repo" / "book"
    elsewhere.mkdir(parents=True)
    monkeypatch.setattr(gdata, "repo_root", lambda: repo)
    monkeypatch.chdir(elsewhere)
    return repo, elsewhere


def test_relative_override_is_found_from_another_folder_via_the_repository_root(two_folders):
    repo, elsewhere = two_folders
    (repo / "copy.txt").write_text("a copy")
    assert gdata.resolve_override("copy.txt") == (repo / "copy.txt").resolve()
    # the path a user types at the root, with ../, still works in book/
    (repo.parent / "shared").mkdir()
    (repo.parent / "shared" / "t.txt").write_text("beside the checkout")
    assert gdata.resolve_override("../shared/t.txt") == (repo.parent / "shared" / "t.txt").resolve()


def test_relative_override_prefers_the_working_folder(two_folders):
    repo, elsewhere = two_folders
    (repo / "copy.txt").write_text("the root's")
    (elsewhere / "copy.txt").write_text("the working folder's")
    assert gdata.resolve_override("copy.txt").read_text() == "the working folder's"


def test_relative_override_that_is_nowhere_names_both_places_and_the_rule(two_folders):
    repo, elsewhere = two_folders
    with pytest.raises(DataNotFoundError) as info:
        gdata.resolve_override("nope.txt")
    message = str(info.value)
    assert str(elsewhere / "nope.txt") in message and str(repo / "nope.txt") in message
    assert "working folder, then the repository root" in message and "absolute" in message


def test_relative_override_that_is_nowhere_names_the_root_once_when_it_is_the_working_folder(
        monkeypatch, tmp_path):
    monkeypatch.setattr(gdata, "repo_root", lambda: tmp_path.resolve())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError) as info:
        gdata.resolve_override("nope.txt")
    assert str(info.value).count("nope.txt") == 3  # the value, the one place looked, the export line
    assert " nor " not in str(info.value)


def test_absolute_override_is_used_as_it_is(two_folders, tmp_path):
    (tmp_path / "abs.txt").write_text("x")
    assert gdata.resolve_override(str(tmp_path / "abs.txt")) == tmp_path / "abs.txt"
    with pytest.raises(DataNotFoundError, match="not a file"):
        gdata.resolve_override(str(tmp_path / "missing.txt"))


def test_the_real_copy_through_a_relative_override_from_book_and_from_elsewhere(monkeypatch, tmp_path):
    """The README's offline line, as CI types it: a path relative to the repository root, used by
    a notebook's kernel in book/ and by a command in an unrelated folder."""
    try:
        real = gdata.tiny_shakespeare_path(progress=False)
    except DataNotFoundError:
        pytest.skip("Tiny Shakespeare is not available offline here")
    root = gdata.repo_root()
    if root is None:
        pytest.skip("gptlib is not running from a checkout")
    relative = os.path.relpath(real, root)
    monkeypatch.setenv(gdata.ENV_VAR, relative)
    for folder in [root / "book", tmp_path]:
        monkeypatch.chdir(folder)
        assert gdata.tiny_shakespeare_path(progress=False).samefile(real)
