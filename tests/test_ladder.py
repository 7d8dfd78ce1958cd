"""The ablation ladder: each rung model's contract and causality, the results file's update rules,
and the committed ladder itself (every rung, validation loss strictly falling up the ladder).

Run: pytest tests/test_ladder.py
"""

import json
import os

import pytest
import torch

from gptlib.bigram import BigramLanguageModel
from gptlib.config import GPTConfig
from pathlib import Path

from gptlib.ladder import (LADDER, RUNGS, LayerNormLM, MultiHeadFeedForwardLM, MultiHeadLM, ResidualLM,
                           SingleHeadLM, ladder_table, load_ladder, record_rung)
from gptlib.model import GPT
from gptlib.presets import choose, get_preset

# The book's own ladder file: the chapters pass this path in; the library knows no book folder.
BOOK_LADDER = Path(__file__).resolve().parent.parent / "book" / "results" / "ladder.json"


RUNG_CLASSES = [SingleHeadLM, MultiHeadLM, MultiHeadFeedForwardLM, ResidualLM, LayerNormLM]


@pytest.fixture
def config():
    return GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=4, n_layer=2, dropout=0.0)


@pytest.mark.parametrize("cls", RUNG_CLASSES, ids=lambda c: c.__name__)
def test_rung_shapes_and_loss(cls, config):
    torch.manual_seed(0)
    model = cls(config)
    idx = torch.randint(config.vocab_size, (3, config.block_size))
    logits, loss = model(idx)
    assert logits.shape == (3, config.block_size, config.vocab_size) and loss is None
    logits, loss = model(idx, idx)
    assert loss.shape == () and torch.isfinite(loss)
    assert model.block_size == config.block_size


@pytest.mark.parametrize("cls", RUNG_CLASSES, ids=lambda c: c.__name__)
def test_rung_overfits_one_batch(cls, config):
    torch.manual_seed(0)
    model = cls(config)
    idx = torch.randint(config.vocab_size, (4, config.block_size + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(x, y)[1].item()
    for _ in range(25):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.7 * first


@pytest.mark.parametrize("cls", RUNG_CLASSES, ids=lambda c: c.__name__)
def test_rung_is_causal(cls, config):
    torch.manual_seed(0)
    model = cls(config).eval()
    idx = torch.randint(config.vocab_size, (2, config.block_size))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % config.vocab_size  # change the future from t=5 on
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # earlier positions never see it
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_rungs_grow(config):
    params = [sum(p.numel() for p in cls(config).parameters()) for cls in RUNG_CLASSES]
    assert params == sorted(set(params))  # each rung adds parts: strictly more parameters


def test_layernorm_rung_is_the_gpt_with_default_init(config):
    torch.manual_seed(0)
    rung, gpt = LayerNormLM(config), GPT(config)
    assert rung.token_embedding_table.weight.std() > 0.5  # PyTorch's N(0, 1), not gptlib's 0.02
    assert gpt.token_embedding_table.weight.std() < 0.05
    assert rung.state_dict().keys() == gpt.state_dict().keys()
    gpt.load_state_dict(rung.state_dict())
    idx = torch.randint(config.vocab_size, (2, config.block_size))
    torch.testing.assert_close(gpt(idx)[0], rung(idx)[0])  # the same function


def test_budgets_follow_the_preset_env(monkeypatch):
    """The chapters choose their budgets with `choose`, the one place that reads GPTLIB_PRESET."""
    monkeypatch.setenv("GPTLIB_PRESET", "smoke")
    assert choose(LADDER).name == "smoke" and choose(get_preset("cpu")).name == "smoke"
    monkeypatch.delenv("GPTLIB_PRESET")
    assert choose(LADDER) is LADDER and choose(get_preset("cpu")).name == "cpu"


def _rung(name, val=2.0):
    return {"name": name, "label": name, "val_loss": val, "train_loss": val, "params": 1, "wall_s": 0.1,
            "device": "cpu", "budget": "ladder",
            "history": {"step": [1], "train_loss": [val], "val_loss": [val], "lr": [1e-3], "elapsed": [0.1]}}


def test_record_rung_order_replace_and_append(tmp_path):
    path = tmp_path / "results" / "ladder.json"
    assert load_ladder(path)["rungs"] == []
    record_rung(_rung("residual"), path)
    record_rung(_rung("bigram"), path)
    record_rung(_rung("lecture GPU"), path)  # not one of the book's rungs: goes to the end
    record_rung(_rung("single_head"), path)
    assert [r["name"] for r in load_ladder(path)["rungs"]] == ["bigram", "single_head", "residual", "lecture GPU"]
    record_rung(_rung("bigram", 2.5), path)  # same name: replaced in place
    ladder = load_ladder(path)
    assert [r["name"] for r in ladder["rungs"]] == ["bigram", "single_head", "residual", "lecture GPU"]
    assert ladder["rungs"][0]["val_loss"] == 2.5
    assert ladder["budget"]["name"] == LADDER.name and ladder["budget"]["train"]["max_iters"] == LADDER.train.max_iters
    assert os.listdir(path.parent) == ["ladder.json"]  # no temporary file left behind
    assert "bigram" in ladder_table(ladder)


def test_record_rung_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ladder.json"
    record_rung(_rung("bigram"), path)
    before = path.read_text()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dumps", fail)
    with pytest.raises(OSError):
        record_rung(_rung("single_head"), path)
    assert path.read_text() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["ladder.json"]


@pytest.mark.skipif(not BOOK_LADDER.exists(), reason="the ladder has not been run yet")
def test_committed_ladder_has_every_rung_in_order():
    ladder = load_ladder(BOOK_LADDER)
    book_rungs = [r for r in ladder["rungs"] if r["name"] in RUNGS]
    assert [r["name"] for r in book_rungs] == list(RUNGS)
    vals = [r["val_loss"] for r in book_rungs]
    assert all(a > b for a, b in zip(vals, vals[1:])), f"val loss must fall up the ladder: {vals}"
    assert all(r["budget"] == LADDER.name for r in book_rungs[:-1]) and book_rungs[-1]["budget"] == "cpu"
    for r in book_rungs:
        h = r["history"]
        assert len(h["step"]) == len(h["val_loss"]) == len(h["train_loss"]) > 0
        assert h["val_loss"][-1] == r["val_loss"]


def test_bigram_is_the_first_rung():
    assert list(RUNGS)[0] == "bigram"
    assert BigramLanguageModel(5).block_size == 1


def test_a_new_ladder_file_starts_from_the_one_given(tmp_path):
    """A learner's ladder starts as a copy of the book's; the book's file is never written."""
    book = tmp_path / "book_ladder.json"
    record_rung(_rung("bigram", 2.5), book)
    before = book.read_text()
    mine = tmp_path / "runs" / "ladder.json"
    ladder = record_rung(_rung("single_head", 2.4), mine, start_from=book)
    assert [r["name"] for r in ladder["rungs"]] == ["bigram", "single_head"]
    assert book.read_text() == before
    record_rung(_rung("multi_head", 2.3), mine, start_from=book)  # exists now: start_from is unused
    assert [r["name"] for r in load_ladder(mine)["rungs"]] == ["bigram", "single_head", "multi_head"]
