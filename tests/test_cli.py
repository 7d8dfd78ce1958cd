"""The command line end to end: train the smoke preset, then sample from its checkpoint.

Run: pytest tests/test_cli.py
"""

import os
import re
import subprocess
import sys

import pytest

from gptlib.data import ENV_VAR


def gptlib_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gptlib", *args], capture_output=True, text=True,
                          cwd=cwd, env=os.environ.copy(), timeout=300)


@pytest.fixture
def corpus(tmp_path):
    """Tiny Shakespeare when available offline, else a small text of our own (--data)."""
    if os.environ.get(ENV_VAR):
        return []
    path = tmp_path / "corpus.txt"
    path.write_text("Speak, speak. You are all resolved rather to die than to famish?\n" * 300)
    return ["--data", str(path)]


def test_train_then_sample(tmp_path, corpus):
    out = tmp_path / "run"
    result = gptlib_cli("train", "--preset", "smoke", "--out", str(out), "--max-iters", "30",
                        "--sample-tokens", "40", "--device", "cpu", *corpus, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "val loss" in result.stdout
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()

    sample = gptlib_cli("sample", "--checkpoint", str(out / "best.pt"), "--prompt", "Speak",
                        "--max-new-tokens", "25", "--seed", "7", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("Speak") and len(sample.stdout.rstrip("\n")) == len("Speak") + 25
    again = gptlib_cli("sample", "--checkpoint", str(out / "best.pt"), "--prompt", "Speak",
                       "--max-new-tokens", "25", "--seed", "7", cwd=tmp_path)
    assert again.stdout == sample.stdout  # same seed, same text


def test_user_error_is_one_line_and_exit_2(tmp_path):
    result = gptlib_cli("train", "--preset", "huge", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown preset 'huge'" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_mistake_is_one_line(capsys):
    from gptlib.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--max-iters", "many"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-iters" in err and "--help" in err


def test_a_new_run_never_replaces_an_existing_one(tmp_path, capsys):
    from gptlib.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"someone's run")
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err and (out / "last.pt").read_bytes() == b"someone's run"


def test_train_help_explains_every_config_override(capsys):
    """Each per-field option (--eval-iters, --beta2, ...) carries its field's comment from gptlib/config.py."""
    from dataclasses import fields

    from gptlib.cli import main
    from gptlib.config import GPTConfig, TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    options = text[text.index("GPTConfig overrides"):]  # past the usage line
    assert "--eval-iters INT batches averaged per loss estimate" in options
    for f in [*fields(GPTConfig), *fields(TrainConfig)]:
        if f.name != "vocab_size":
            flag = "--" + f.name.replace("_", "-")
            m = re.search(re.escape(flag) + r"(?:, --no-[\w-]+)?(?: [A-Z]+)? (\S+)", options)
            assert m and not m[1].startswith("--"), f"{flag} has no help text"
