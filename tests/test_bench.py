"""``python -m gptlib bench`` runs, prints its table and writes the JSON keys it promises (no speeds asserted).

Run: pytest tests/test_bench.py
"""

import functools
import json
import math

import pytest
import torch

from gptlib.bench import flops_per_token, format_report, spread
from gptlib.cli import main
from gptlib.config import GPTConfig
from gptlib.ladder import split_loss
from gptlib.model import GPT, count_parameters

KEYS = ["train.readable_tok_s", "train.fast_tok_s", "train.speedup", "train.fast_mfu", "train.readable_mfu",
        "train.speedup_rounds.median", "train.readable_ms_spread.q1", "train.fast_ms_spread.max",
        "sample.naive_tok_s", "sample.cached_tok_s", "sample.speedup", "sample.speedup_rounds.min",
        "machine.load_average_start", "machine.load_average_end", "peaks.float32"]


def test_flops_per_token_is_nanogpts_formula():
    config = GPTConfig(vocab_size=65, block_size=32, n_embd=48, n_head=4, n_layer=3)
    model = GPT(config)
    embeddings = model.token_embedding_table.weight.numel() + model.position_embedding_table.weight.numel()
    n = count_parameters(model) - embeddings  # parameters used in matmuls (and LayerNorms)
    assert flops_per_token(config) == 6 * n + 12 * config.n_layer * config.block_size * config.n_embd


@pytest.fixture
def small_peak(monkeypatch):
    """The matmul peak on 256x256 matrices, not 2048x2048 (seconds on a busy machine)."""
    from gptlib import bench

    real = bench.matmul_peak
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype: real(device, dtype, size=256))


def test_bench_smoke_writes_the_promised_json(tmp_path, capsys, small_peak):
    out = tmp_path / "bench.json"
    code = main(["bench", "--preset", "smoke", "--rounds", "3", "--sample-rounds", "2", "--new-tokens", "12",
                 "--json", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "speed-up" in captured.out and "KV cache" in captured.out and "MFU" in captured.out
    assert "why:" in captured.out  # the plan says what it measured
    assert "readable vs fast" in captured.err and "naive vs KV cache" in captured.err  # a bar per phase
    results = json.loads(out.read_text())
    for key in KEYS:  # "train.speedup" is results["train"]["speedup"]
        value = functools.reduce(dict.__getitem__, key.split("."), results)
        assert isinstance(value, (int, float)) and value >= 0, key
    t = results["train"]
    assert t["speedup"] == pytest.approx(t["fast_tok_s"] / t["readable_tok_s"])
    assert t["rounds"] == 3 and t["readable_ms_spread"]["n"] == 3 and t["speedup_rounds"]["n"] == 3
    s = t["fast_ms_spread"]
    assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    assert s["median"] == pytest.approx(t["fast_ms_per_iter"])
    sample = results["sample"]
    assert sample["new_tokens"] == 12 and sample["rounds"] == 2
    best = sample["plan_sampler"]  # the fp32 cache, or the plan's 16-bit one beside it
    assert best == ("cached" if results["plan"]["autocast_dtype"] is None
                    else f"cached_{results['plan']['autocast_dtype']}")
    assert sample["speedup"] == pytest.approx(sample[f"{best}_tok_s"] / sample["naive_tok_s"])
    assert sample["cache_speedup"] == pytest.approx(sample["cached_tok_s"] / sample["naive_tok_s"])
    assert results["plan"]["why"]
    assert format_report(results).splitlines()[0].startswith("gptlib bench")


def test_no_progress_means_a_quiet_stderr(capsys):
    assert main(["bench", "--preset", "smoke", "--no-train", "--sample-rounds", "1", "--new-tokens", "5",
                 "--time-to-loss", "--ttl-preset", "smoke", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_spread_of_a_few_numbers():
    s = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["min"], s["q1"], s["median"], s["q3"], s["max"], s["n"]) == (1.0, 2.0, 3.0, 4.0, 5.0, 5)
    assert spread([7.0])["q1"] == spread([7.0])["q3"] == 7.0


def test_the_whole_split_loss_of_a_uniform_model_is_log_vocab():
    """`split_loss`, which `time_to_loss` scores with, on a model whose every logit is 0."""
    config = GPTConfig(vocab_size=13, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.0)
    model = GPT(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()  # every logit 0: the uniform distribution
    data = torch.randint(13, (100,), generator=torch.Generator().manual_seed(0))
    assert split_loss(model, data, 8, device="cpu") == pytest.approx(math.log(13), rel=1e-6)


def test_time_to_loss_reports_the_step_it_reached_the_target(tmp_path):
    out = tmp_path / "ttl.json"
    code = main(["bench", "--preset", "smoke", "--no-train", "--no-sample", "--time-to-loss",
                 "--ttl-preset", "smoke", "--target", "10", "--json", str(out)])
    assert code == 0
    r = json.loads(out.read_text())["time_to_loss"]
    assert r["reached"] and r["step"] == 10  # smoke evaluates every 10 steps
    assert r["val_loss_full"] <= 10 and r["val_split_tokens"] > 100_000  # judged on the whole val split
    assert r["checks"] == [{"step": 10, "val_loss_estimate": r["val_loss"], "val_loss_full": r["val_loss_full"],
                            "seconds": r["seconds"], "check_seconds": r["checks"][0]["check_seconds"]}]
    assert 0 < r["seconds"] <= r["seconds_with_checks"]


def test_time_to_loss_is_judged_on_the_whole_split_not_the_estimate():
    """The estimate reaches the target at every evaluation, the whole split (a score passed in) never
    does: not reached, and the report says how far it got on the whole split."""
    from dataclasses import asdict

    from gptlib.bench import time_to_loss
    from gptlib.presets import get_preset
    from gptlib.run import load_corpus
    from gptlib.speed import speed_plan

    device = torch.device("cpu")
    plan = speed_plan(device, get_preset("smoke").model)
    r = time_to_loss("smoke", 10, device, plan, load_corpus(), score=lambda *args, **kwargs: 11.0)
    assert not r["reached"] and r["seconds"] is None and r["val_loss_full"] is None
    assert [c["step"] for c in r["checks"]] == [10, 20] and all(c["val_loss_estimate"] <= 10 for c in r["checks"])
    assert r["final_step"] == 20 and r["final_val_loss_full"] == 11.0
    machine = {"date": "d", "device": "cpu", "cpu": "c", "threads": 1, "torch": "t"}
    report = format_report({"preset": "smoke", "machine": machine, "plan": asdict(plan),
                            "time_to_loss": {**r, "ttl_plan": asdict(plan)}})
    assert "did NOT reach val <= 10 on the whole val split" in report and ": 11.0000 after 20 steps" in report


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--new-tokens", "0"], ["--preset", "nope"],
                                  ["--batch-size", "-1"]])
def test_bad_options_are_one_line_errors(argv, capsys):
    assert main(["bench", "--no-sample", "--no-train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_sampling_times_the_plans_16_bit_cache_beside_the_fp32_one():
    from gptlib.bench import bench_sampling

    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.0)
    s = bench_sampling(config, torch.device("cpu"), new_tokens=5, rounds=1, dtype="bfloat16")
    assert s["plan_sampler"] == "cached_bfloat16" and s["cached_bfloat16_tok_s"] > 0
    assert s["speedup"] == pytest.approx(s["cached_bfloat16_tok_s"] / s["naive_tok_s"])
    assert s["cached_tok_s"] > 0  # the fp32 cache is still timed, for its own speed-up


def test_freed_memory_is_kept_on_linux_and_said():
    """`keep_freed_memory` applies once per process on Linux with glibc, and the bench records it."""
    import platform
    import sys

    from gptlib.speed import keep_freed_memory

    applies = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is applies and keep_freed_memory() is applies  # cached, the same
    results = {"preset": "smoke", "plan": {}, "machine": {
        "date": "d", "device": "cpu", "cpu": "c", "threads": 1, "torch": "t", "keep_freed_memory": applies}}
    assert ("freed memory kept for reuse" in format_report(results)) is applies


@pytest.mark.parametrize("name", ["bench_cpu.json", "bench_gpu.json"])
def test_the_committed_bench_results_make_a_report(name):
    """The book's bench files, as the bench wrote them (bench_gpu.json: a run on an H200), read back
    into the report the bench prints."""
    from pathlib import Path

    results = json.loads((Path(__file__).resolve().parent.parent / "book" / "results" / name).read_text())
    report = format_report(results)
    assert f"on {results['machine']['device']}" in report and "speed-up" in report and "MFU" in report
    if name == "bench_gpu.json":
        assert "NVIDIA H200" in report and results["train"]["fast_mfu"] > 0
