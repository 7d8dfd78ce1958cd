"""The ablation ladder: each rung model's contract and causality, the counterfactual variants, the
whole-split loss, training a rung over several seeds, the results file's update rules (a learner's
file starts from the book's and never writes it), and the committed ladder itself.

Run: pytest tests/test_ladder.py
"""

import json
import math
import os
import statistics
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from gptlib.bigram import BigramLanguageModel
from gptlib.config import GPTConfig
from gptlib.ladder import (COUNTERFACTUALS, LADDER, LADDER_SEEDS, RUNGS, LayerNormLM, MultiHeadConcatLM,
                           MultiHeadFeedForwardLM, MultiHeadLM, NoPositionsLM, PostNormBlock, PostNormLM,
                           ResidualLM, SingleHeadLM, UnscaledHead, UnscaledLM, ladder_table, load_ladder,
                           record_rung, rung_entry, split_loss, train_rung)
from gptlib.model import GPT
from gptlib.presets import choose, get_preset
from gptlib.run import Run, load_corpus, train_run

# The book's own ladder file: the chapters pass this path in; the library knows no book folder.
BOOK_LADDER = Path(__file__).resolve().parent.parent / "book" / "results" / "ladder.json"


# Where a test trains, named: on the CPU, and on CUDA too where this machine has it.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA GPU on this machine"))]
RUNG_CLASSES = [SingleHeadLM, MultiHeadLM, MultiHeadFeedForwardLM, ResidualLM, LayerNormLM]
VARIANT_CLASSES = [UnscaledLM, NoPositionsLM, MultiHeadConcatLM, PostNormLM]


@pytest.fixture
def config():
    return GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=4, n_layer=2, dropout=0.0)


@pytest.mark.parametrize("cls", RUNG_CLASSES + VARIANT_CLASSES, ids=lambda c: c.__name__)
def test_rung_shapes_and_loss(cls, config):
    torch.manual_seed(0)
    model = cls(config)
    idx = torch.randint(config.vocab_size, (3, config.block_size))
    logits, loss = model(idx)
    assert logits.shape == (3, config.block_size, config.vocab_size) and loss is None
    logits, loss = model(idx, idx)
    assert loss.shape == () and torch.isfinite(loss)
    assert model.block_size == config.block_size


@pytest.mark.parametrize("cls", RUNG_CLASSES + VARIANT_CLASSES, ids=lambda c: c.__name__)
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


@pytest.mark.parametrize("cls", RUNG_CLASSES + VARIANT_CLASSES, ids=lambda c: c.__name__)
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


def test_unscaled_variant_is_the_gpt_rung_without_the_scale(config):
    torch.manual_seed(0)
    rung, unscaled = LayerNormLM(config), UnscaledLM(config)
    assert all(isinstance(h, UnscaledHead) for b in unscaled.blocks for h in b.sa.heads)
    unscaled.load_state_dict(rung.state_dict())  # same parameters, same names
    x = torch.randn(2, config.block_size, config.n_embd)
    head, plain = unscaled.blocks[0].sa.heads[0], rung.blocks[0].sa.heads[0]
    # the same scores before the softmax, times sqrt(hs): compare log-weights on the visible part
    scaled_scores = plain.query(x) @ plain.key(x).transpose(-2, -1) * config.head_size ** -0.5
    visible = torch.tril(torch.ones(config.block_size, config.block_size)) == 1
    expected = torch.where(visible, scaled_scores * config.head_size ** 0.5, float("-inf")).softmax(-1)
    torch.testing.assert_close(head.attention_weights(x), expected)


def test_concat_variant_is_the_multi_head_rung_without_the_projection(config):
    torch.manual_seed(0)
    rung, concat = MultiHeadLM(config), MultiHeadConcatLM(config)
    missing = set(rung.state_dict()) - set(concat.state_dict())
    assert missing == {"sa_heads.proj.weight", "sa_heads.proj.bias"}
    concat.load_state_dict({k: v for k, v in rung.state_dict().items() if k not in missing})
    x = torch.randn(2, config.block_size, config.n_embd)
    heads = torch.cat([h(x) for h in rung.sa_heads.heads], dim=-1)  # the rung's heads, no proj
    torch.testing.assert_close(concat.sa_heads(x), heads)


def test_the_table_drops_the_budget_column_when_the_rungs_share_one():
    rung = {"label": "+ feed-forward, N(0, 0.02) init", "budget": "ladder", "params": 16961,
            "seeds": [{}, {}, {}], "train_loss": 2.1, "val_loss": 2.2, "val_std": 0.01, "wall_s": 99.9}
    one = ladder_table({"rungs": [rung, rung]}).splitlines()
    assert "budget" not in one[0] and max(map(len, one)) <= 88  # fits the book's page
    two = ladder_table({"rungs": [rung, {**rung, "budget": "cpu"}]}).splitlines()
    assert "budget" in two[0] and "cpu" in two[2]


def test_no_positions_variant_has_no_position_table(config):
    model = NoPositionsLM(config)
    assert not hasattr(model, "position_embedding_table")
    # without positions, a token's first-position output does not depend on where the sequence sits
    idx = torch.randint(config.vocab_size, (1, config.block_size))
    torch.testing.assert_close(model(idx[:, :1])[0][:, 0], model(idx[:, :3])[0][:, 0])


def test_post_norm_variant_moves_the_layernorms_after_the_additions(config):
    """The same parameters as the GPT rung under the same names; each block computes
    ln1(x + sa(x)), then ln2(x + ffwd(x)), and its output is normalised (mean 0, std 1 per token)."""
    torch.manual_seed(0)
    rung, post = LayerNormLM(config), PostNormLM(config)
    assert all(isinstance(b, PostNormBlock) for b in post.blocks)
    post.load_state_dict(rung.state_dict())  # same parameters, same names
    block = post.blocks[0]
    x = torch.randn(2, config.block_size, config.n_embd)
    h = block.ln1(x + block.sa(x))
    torch.testing.assert_close(block(x), block.ln2(h + block.ffwd(h)))
    out = block(x)  # fresh LayerNorms: gain 1, bias 0
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, config.block_size), atol=1e-5, rtol=0)
    idx = torch.randint(config.vocab_size, (2, config.block_size))
    assert not torch.allclose(post(idx)[0], rung(idx)[0])  # the same weights, another model


def test_ladder_table_fits_the_page():
    """As wide as its contents, so chapter 5's two tables fit 88 characters: the ladder's rungs (two
    budgets) and the counterfactuals beside their rungs (one budget: no budget column)."""
    ladder = [{**_rung(name), "label": label, "params": 816_705} for name, label in RUNGS.items()]
    ladder[-1]["budget"] = "cpu"
    lines = ladder_table({"rungs": ladder}).splitlines()
    assert max(map(len, lines)) <= 88 and "budget" in lines[0] and "cpu" in lines[-1]
    compared = [{**_rung(name), "label": label, "params": 42_369} for name, label in COUNTERFACTUALS.items()]
    lines = ladder_table({"rungs": compared}).splitlines()
    assert max(map(len, lines)) <= 88 and "budget" not in lines[0]
    assert [line.split()[0] for line in lines[1:]] == [label.split()[0] for label in COUNTERFACTUALS.values()]


def test_split_loss_scores_every_target_once(config):
    torch.manual_seed(0)
    model = LayerNormLM(config)
    data = torch.randint(config.vocab_size, (8 * 5 + 3,))
    x = data[:40].view(5, 8)
    y = data[1:41].view(5, 8)
    expected = F.cross_entropy(model.eval()(x)[0].flatten(0, 1), y.flatten()).item()
    model.train()
    assert split_loss(model, data, 8, batch_size=2) == pytest.approx(expected, rel=1e-5)
    assert model.training  # put back in the mode it was in
    assert split_loss(model, data, 8) == split_loss(model, data, 8)  # no random sampling
    # chunks: that many chunks spread over the split (here the first and the last)
    two = F.cross_entropy(model.eval()(x[[0, 4]])[0].flatten(0, 1), y[[0, 4]].flatten()).item()
    assert split_loss(model, data, 8, chunks=2) == pytest.approx(two, rel=1e-5)


def test_train_rung_over_seeds(tmp_path, text):
    path = tmp_path / "text.txt"
    path.write_text(text)
    corpus = load_corpus(path)
    smoke = get_preset("smoke")
    rung, model = train_rung("layernorm", LayerNormLM, smoke, corpus, seeds=(1, 2), progress=False)
    assert isinstance(model, LayerNormLM)  # the first seed's trained model
    assert split_loss(model, corpus.val_data, smoke.model.block_size) == rung["seeds"][0]["val_loss"]
    assert [r["seed"] for r in rung["seeds"]] == [1, 2]
    vals = [r["val_loss"] for r in rung["seeds"]]
    assert vals[0] != vals[1]  # another seed, another run
    assert rung["val_loss"] == pytest.approx(statistics.fmean(vals))
    assert rung["val_std"] == pytest.approx(statistics.stdev(vals))
    assert rung["kind"] == "rung" and rung["budget"] == "smoke" and rung["label"] == RUNGS["layernorm"]
    assert len(rung["history"]["step"]) > 0
    again, _ = train_rung("layernorm", LayerNormLM, smoke, corpus, seeds=(1,), progress=False)
    assert again["seeds"][0]["val_loss"] == vals[0] and again["val_std"] is None  # same seed, same run
    other, _ = train_rung("gpt_no_positions", NoPositionsLM, smoke, corpus, progress=False)
    assert other["kind"] == "counterfactual" and other["seeds"][0]["seed"] == smoke.train.seed
    table = ladder_table({"rungs": [rung, other]}).splitlines()
    assert f"{rung['val_std']:.4f}" in table[1] and math.isfinite(other["val_loss"])


@pytest.mark.parametrize("device", DEVICES)
def test_a_run_trained_elsewhere_is_scored_like_the_rungs(tmp_path, text, device):
    """Chapter 7's entry: with the model, whole-split losses as `train_rung` computes them; without,
    the run's own estimate at the evaluation asked for. A model trained on a GPU is scored there."""
    path = tmp_path / "text.txt"
    path.write_text(text)
    corpus = load_corpus(path)
    smoke = get_preset("smoke")
    result = train_run(Run.from_preset(smoke, device=device), corpus=corpus, progress=False,
                       log=lambda _: None)
    block_size = smoke.model.block_size
    entry = rung_entry("mine", result, model=result.model)
    assert entry["val_loss"] == split_loss(result.model, corpus.val_data, block_size)
    chunks = (len(corpus.val_data) - 1) // block_size
    assert entry["train_loss"] == split_loss(result.model, corpus.train_data, block_size, chunks=chunks)
    assert entry["evaluated_on"].startswith("whole val split") and entry["kind"] == "model"
    estimate = rung_entry("mine", result, at=0)
    assert estimate["val_loss"] == result.history.val_loss[0]
    assert estimate["seeds"][0]["seed"] == smoke.train.seed


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


def test_a_learners_file_starts_from_the_books_and_never_writes_it(tmp_path):
    book = tmp_path / "book" / "ladder.json"
    record_rung(_rung("bigram", 2.5), book)
    record_rung(_rung("residual", 2.1), book)
    before = book.read_text()
    mine = tmp_path / "runs" / "ladder.json"
    assert load_ladder(mine, fallback=book)["rungs"][1]["val_loss"] == 2.1  # the book's, until I run
    assert load_ladder(mine)["rungs"] == []
    ladder = record_rung(_rung("bigram", 2.4), mine, start_from=book)
    assert [(r["name"], r["val_loss"]) for r in ladder["rungs"]] == [("bigram", 2.4), ("residual", 2.1)]
    assert book.read_text() == before  # the book's results are never rewritten
    record_rung(_rung("gpt_dropout"), mine, start_from=book)
    record_rung(_rung("lecture GPU"), mine, start_from=book)
    record_rung(_rung("gpt_init"), mine, start_from=book)
    names = [r["name"] for r in load_ladder(mine, fallback=book)["rungs"]]
    assert names == ["bigram", "residual", "gpt_init", "gpt_dropout", "lecture GPU"]


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
def test_committed_ladder_has_every_rung_with_its_seeds():
    ladder = load_ladder(BOOK_LADDER)
    book_rungs = [r for r in ladder["rungs"] if r["name"] in RUNGS]
    assert [r["name"] for r in book_rungs] == list(RUNGS)
    assert all(r["budget"] == LADDER.name for r in book_rungs[:-1]) and book_rungs[-1]["budget"] == "cpu"
    for r in book_rungs:
        seeds = r["seeds"]
        assert [s["seed"] for s in seeds] == list(LADDER_SEEDS), r["name"]
        vals = [s["val_loss"] for s in seeds]
        assert r["val_loss"] == pytest.approx(statistics.fmean(vals))
        assert r["val_std"] == pytest.approx(statistics.stdev(vals))
        h = r["history"]
        assert len(h["step"]) == len(h["val_loss"]) == len(h["train_loss"]) > 0
    vals = [r["val_loss"] for r in book_rungs]
    assert vals[0] == max(vals) and vals[-1] == min(vals)  # the bigram worst, the scaled-up GPT best
    counterfactuals = [r["name"] for r in ladder["rungs"] if r["name"] in COUNTERFACTUALS]
    assert counterfactuals == list(COUNTERFACTUALS)


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


def test_a_smoke_rung_never_enters_a_ladder_of_real_runs(tmp_path):
    """The tests' seconds-long budget goes to ladder-smoke.json, which starts empty, not from the book."""
    book = tmp_path / "book.json"
    record_rung(_rung("bigram", 2.5), book)
    mine = tmp_path / "runs" / "ladder.json"
    smoke = {**_rung("single_head", 3.9), "budget": "smoke"}
    record_rung(smoke, mine, start_from=book)
    assert not mine.exists()
    assert [r["name"] for r in load_ladder(mine.with_name("ladder-smoke.json"))["rungs"]] == ["single_head"]


def test_the_default_ladder_file_is_in_the_results_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTLIB_RESULTS", str(tmp_path / "mine"))
    record_rung(_rung("bigram", 2.5))
    assert load_ladder(tmp_path / "mine" / "ladder.json")["rungs"][0]["name"] == "bigram"



@pytest.mark.parametrize("device", DEVICES)
def test_a_model_is_scored_on_its_own_device(device, config):
    """`split_loss` and `split_scores` (and so the bench's time to a loss) send the batches where the
    model lives (a model trained on a GPU is scored there), and score it as on the CPU."""
    torch.manual_seed(0)
    model = GPT(config)
    data = torch.randint(config.vocab_size, (300,))
    on_cpu = split_loss(model, data, config.block_size)
    model.to(device)
    assert split_loss(model, data, config.block_size) == pytest.approx(on_cpu, rel=1e-4)
