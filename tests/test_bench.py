"""``python -m gptlib bench`` runs, prints its table and writes the JSON keys it promises (no speeds asserted).

Run: pytest tests/test_bench.py
"""

import json

import pytest

from gptlib.bench import flops_per_token, format_report, get_path
from gptlib.cli import main
from gptlib.config import GPTConfig
from gptlib.model import GPT, count_parameters

KEYS = ["train.readable_tok_s", "train.fast_tok_s", "train.speedup", "train.fast_mfu", "train.readable_mfu",
        "sample.naive_tok_s", "sample.cached_tok_s", "sample.speedup"]


def test_flops_per_token_is_nanogpts_formula():
    config = GPTConfig(vocab_size=65, block_size=32, n_embd=48, n_head=4, n_layer=3)
    model = GPT(config)
    embeddings = model.token_embedding_table.weight.numel() + model.position_embedding_table.weight.numel()
    n = count_parameters(model) - embeddings  # parameters used in matmuls (and LayerNorms)
    assert flops_per_token(config) == 6 * n + 12 * config.n_layer * config.block_size * config.n_embd


def test_bench_smoke_writes_the_promised_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--preset", "smoke", "--rounds", "1", "--new-tokens", "12", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "KV cache" in printed and "MFU" in printed
    results = json.loads(out.read_text())
    for key in KEYS:
        value = get_path(results, key)
        assert isinstance(value, float) and value > 0, key
    assert results["train"]["speedup"] == pytest.approx(results["train"]["fast_tok_s"] / results["train"]["readable_tok_s"])
    assert results["sample"]["new_tokens"] == 12
    assert format_report(results).splitlines()[0].startswith("gptlib bench")


def test_time_to_loss_reports_the_step_it_reached_the_target(tmp_path):
    out = tmp_path / "ttl.json"
    code = main(["bench", "--preset", "smoke", "--no-train", "--no-sample", "--time-to-loss",
                 "--ttl-preset", "smoke", "--target", "10", "--json", str(out)])
    assert code == 0
    r = json.loads(out.read_text())["time_to_loss"]
    assert r["reached"] and r["step"] == 10 and r["val_loss"] <= 10  # smoke evaluates every 10 steps
    assert r["seconds"] > 0


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--new-tokens", "0"], ["--preset", "nope"],
                                  ["--batch-size", "-1"]])
def test_bad_options_are_one_line_errors(argv, capsys):
    assert main(["bench", "--no-sample", "--no-train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
