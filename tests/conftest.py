"""Fixtures shared by the unit tests: the text (small and real), a tokenizer, tiny configs."""

import os

import pytest
import torch

from gptlib.config import GPTConfig
from gptlib.data import ENV_VAR
from gptlib.tokenizer import CharTokenizer

# A few lines of real text, so the tests need neither the network nor the data file.
TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
) * 20


@pytest.fixture(autouse=True)
def one_thread():
    """Run torch on one thread: these tiny models are fastest that way, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def text() -> str:
    return TEXT


@pytest.fixture
def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_text(TEXT)


@pytest.fixture
def data(tokenizer) -> torch.Tensor:
    return torch.tensor(tokenizer.encode(TEXT), dtype=torch.long)


@pytest.fixture
def tiny_config(tokenizer) -> GPTConfig:
    return GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.0)


@pytest.fixture(scope="module")
def data_args(tmp_path_factory) -> list[str]:
    """The command line's data arguments: none where $GPTLIB_DATA names Tiny Shakespeare (as in CI),
    else ``--data`` with a small text of our own."""
    if os.environ.get(ENV_VAR):
        return []
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("Speak, speak. You are all resolved rather to die than to famish?\n" * 300)
    return ["--data", str(path)]
