"""The GPU path, exercised on the CPU: the CUDA plan by compute capability (faked), bf16 and fp16
autocast with a GradScaler through the same plan code (``--dtype``), exact resume with the scaler's
state, and a training loop that does not wait for the device at every step.

Run: pytest tests/test_gpu_path.py
"""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gptlib.checkpoint import load_checkpoint, resume_training_state, save_training_state
from gptlib.cli import build_parser, main, run_from_args
from gptlib.config import GPTConfig, TrainConfig
from gptlib.errors import ConfigError, TrainingDivergedError
from gptlib.model import GPT
from gptlib.run import Run, describe_plan, train_run
from gptlib.speed import READABLE, SpeedConfig, build_model, cuda_plan, speed_plan, with_precision
from gptlib.tokenizer import CharTokenizer
from gptlib.training import train

from helpers import BlowsUp

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 40
VOCAB = CharTokenizer.from_text(TEXT)
TINY = GPTConfig(vocab_size=VOCAB.vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.0)
DATA = torch.tensor(VOCAB.encode(TEXT))
TRAIN, VAL = DATA[:int(0.9 * len(DATA))], DATA[int(0.9 * len(DATA)):]
CONFIG = TrainConfig(batch_size=2, max_iters=10, eval_interval=10, eval_iters=1, learning_rate=1e-3)

FP16 = SpeedConfig(fast_model=True, autocast_dtype="float16", fused_adamw=True)
BF16 = SpeedConfig(fast_model=True, autocast_dtype="bfloat16", fused_adamw=True)
FP32 = SpeedConfig(fast_model=True, fused_adamw=True)  # the fast path in fp32


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


# --- the CUDA plan by compute capability --------------------------------------------------------

@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (8, 9), (9, 0), (10, 0)])
def test_ampere_or_newer_trains_in_bf16_with_tf32(capability):
    plan = cuda_plan(capability)
    assert plan.autocast_dtype == "bfloat16" and plan.tf32 and plan.fused_adamw and plan.fast_model
    assert plan.why.startswith(f"compute capability {capability[0]}.{capability[1]} (Ampere or newer)")
    assert not plan.grad_scaler and not plan.compile


@pytest.mark.parametrize("capability", [(7, 0), (7, 5)])  # V100, T4
def test_volta_and_turing_train_in_fp16_with_a_grad_scaler(capability):
    plan = cuda_plan(capability)
    assert plan.autocast_dtype == "float16" and plan.grad_scaler and plan.fused_adamw
    assert not plan.tf32 and not plan.compile


def test_gpus_without_tensor_cores_train_in_fp32():
    plan = cuda_plan((6, 1))
    assert plan.precision == "float32" and not plan.tf32 and plan.fused_adamw


def test_speed_plan_asks_the_capability_not_is_bf16_supported(monkeypatch):
    """A T4 says yes to is_bf16_supported() (bf16 emulated); its plan is still fp16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert speed_plan("cuda") == cuda_plan((7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert speed_plan("cuda") == cuda_plan((9, 0))


def test_without_a_gpu_cuda_describes_a_recent_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert speed_plan("cuda") == cuda_plan((8, 0))


# --- precision: part of the plan, selectable ----------------------------------------------------

def test_with_precision():
    assert with_precision(FP32, "bfloat16").autocast_dtype == "bfloat16"
    assert with_precision(BF16, "float32").autocast_dtype is None
    assert with_precision(FP32, "float16").grad_scaler
    # the name is checked once, where it enters: the `Run` (with_precision trusts it)
    with pytest.raises(ConfigError, match="unknown dtype 'float64'"):
        Run(model=TINY, train=CONFIG, dtype="float64")


def test_an_unknown_attention_is_one_message():
    """The attention name's one check: `SpeedConfig` (every plan, and FastGPT's, is one)."""
    with pytest.raises(ConfigError, match=r"^attention must be one of sdpa, explicit, got 'flash'$"):
        SpeedConfig(attention="flash")
    with pytest.raises(ConfigError, match="attention must be one of"):
        replace(FP32, attention="")


def test_the_run_plan_applies_dtype_and_compile():
    run = Run(model=TINY, train=CONFIG, dtype="float16", compile=True)
    plan = run.plan("cpu")
    # the CPU plan for this model's shape (measured, see gptlib.speed.probe_cpu), then dtype and compile
    assert plan == replace(speed_plan("cpu", TINY), autocast_dtype="float16", compile=True)
    assert describe_plan(plan) == (f"fast path (FastGPT, {plan.attention} attention), float16 autocast "
                                   f"+ GradScaler, fused AdamW, torch.compile")
    assert Run(model=TINY, train=CONFIG, speed=READABLE, dtype="bfloat16").plan("cpu") == \
        replace(READABLE, autocast_dtype="bfloat16")


def test_an_unknown_dtype_is_one_line_and_exit_2(capsys):
    assert main(["train", "--preset", "smoke", "--dtype", "float64"]) == 2  # checked once, by `Run`
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dtype" in err and "float64" in err and "float16" in err


def smoke_args(corpus, out, *extra):
    return ["train", "--preset", "smoke", "--data", str(corpus), "--out", str(out), "--device", "cpu",
            "--sample-tokens", "0", "--dropout", "0.1", "--grad-clip", "1.0", *extra]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_train_in_low_precision_then_resume_exactly(dtype, corpus, tmp_path, capsys):
    """``train --dtype`` prints its plan, saves it, and a run stopped half-way and resumed from
    last.pt ends bit for bit where the straight run ends (dropout on, so the random states count)."""
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert main(smoke_args(corpus, straight, "--dtype", dtype)) == 0
    scaler = " + GradScaler" if dtype == "float16" else ""
    assert (f"speed plan: fast path (FastGPT, sdpa attention), {dtype} autocast{scaler}, fused AdamW"
            in capsys.readouterr().out)

    def stop_at_10(state):
        state.stop = state.step == 10

    run = run_from_args(build_parser().parse_args(smoke_args(corpus, halves, "--dtype", dtype)))
    train_run(run, callbacks=[stop_at_10], progress=False, log=lambda _: None)  # the same run, stopped
    assert load_checkpoint(halves / "last.pt").step == 10
    # --resume without --dtype: the saved plan's precision continues. On the CPU, as the first half
    # ran: bit for bit is promised on the same device (a GPU's kernels need not be deterministic).
    assert main(["train", "--resume", "--out", str(halves), "--data", str(corpus), "--device", "cpu",
                 "--sample-tokens", "0"]) == 0
    assert f"{dtype} autocast{scaler}" in capsys.readouterr().out

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(halves / "last.pt")
    assert a.step == b.step == 20 and a.extra["speed"]["autocast_dtype"] == dtype
    assert a.extra["history"]["val_loss"] == b.extra["history"]["val_loss"]  # exact floats
    assert a.extra["history"]["train_loss"] == b.extra["history"]["train_loss"]
    for name, tensor in a.model_state.items():
        assert torch.equal(tensor, b.model_state[name]), name
    assert ("scaler" in a.extra) == (dtype == "float16")
    assert a.extra.get("scaler") == b.extra.get("scaler")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_resume_on_a_gpu_continues_the_run(corpus, tmp_path):
    """On a GPU, bit for bit is not promised (some kernels are not deterministic, e.g. attention's
    backward): a resumed run continues at the same step with the same plan, random states and scale,
    and its losses agree with the straight run's to well within what a step changes."""
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    args = lambda out: [a if a != "cpu" else "cuda" for a in smoke_args(corpus, out, "--dtype", "float16")]
    assert main(args(straight)) == 0
    run = run_from_args(build_parser().parse_args(args(halves)))
    train_run(run, callbacks=[lambda state: setattr(state, "stop", state.step == 10)], progress=False,
              log=lambda _: None)
    assert main(["train", "--resume", "--out", str(halves), "--data", str(corpus), "--device", "cuda",
                 "--sample-tokens", "0"]) == 0
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(halves / "last.pt")
    assert a.step == b.step == 20 and b.extra["speed"] == a.extra["speed"]
    assert a.extra["history"]["val_loss"] == pytest.approx(b.extra["history"]["val_loss"], abs=2e-2)
    assert "scaler" in b.extra


def test_resume_keeps_the_saved_precision(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(smoke_args(corpus, out, "--dtype", "float16", "--max-iters", "10")) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--data", str(corpus), "--dtype", "bfloat16"]) == 2
    assert "the precision (saved float16, asked bfloat16)" in capsys.readouterr().err


# --- fp16 and the GradScaler --------------------------------------------------------------------

def tiny_run(plan, config=CONFIG, model=None, state=None):
    torch.manual_seed(0)
    model = model if model is not None else GPT(TINY)
    return train(model, TRAIN, VAL, config, block_size=TINY.block_size, progress=False, speed=plan, state=state)


def test_a_grad_scaler_guards_fp16_only():
    fp16, bf16, fp32 = tiny_run(FP16), tiny_run(BF16), tiny_run(FP32)
    assert isinstance(fp16.scaler, torch.amp.GradScaler) and fp16.scaler.is_enabled()
    assert bf16.scaler is None and fp32.scaler is None
    # autocast really ran: three precisions, three different losses
    assert len({fp16.history.val_loss[-1], bf16.history.val_loss[-1], fp32.history.val_loss[-1]}) == 3


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_saved_and_restored(tmp_path):
    """With a loss scale so large that the fp16 gradients overflow, the scaler skips every step and
    halves its scale each time; that scale is saved in last.pt and comes back on resume."""
    torch.manual_seed(0)
    model = GPT(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = tiny_run(FP16, replace(CONFIG, max_iters=1, eval_interval=1), model=model)
    after_first = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(before[k], after_first[k]) for k in before)  # step 0 (scale 2**16) applied
    first.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)
    state = tiny_run(FP16, replace(CONFIG, max_iters=5, eval_interval=5), model=model, state=first)
    assert state.step == 5 and state.scaler.get_scale() == 2.0 ** 96  # 4 overflows, 4 halvings
    assert all(torch.equal(after_first[k], v) for k, v in model.state_dict().items())  # none applied
    save_training_state(tmp_path / "last.pt", state, VOCAB, TINY)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["extra"]["scaler"]["scale"] == 2.0 ** 96
    resumed = resume_training_state(tmp_path / "last.pt", GPT(TINY))
    assert resumed.scaler.get_scale() == 2.0 ** 96
    assert resumed.scaler.state_dict() == state.scaler.state_dict()


# --- no wait for the device at every step -------------------------------------------------------

@pytest.mark.parametrize("plan", [FP32, FP16, BF16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_divergence_is_caught_on_the_device_and_no_later_step_is_applied(plan, bad):
    """With fused AdamW the loss is checked at the evaluation (step 10), not at every step; the error
    still names step 3, and the weights are exactly those after steps 0-2."""
    plan = replace(plan, fast_model=False)  # the plan's precision and optimiser, on BlowsUp
    torch.manual_seed(0)  # both models start from the same weights, whichever test ran before
    blown = BlowsUp(TINY, bad, at=4)
    with pytest.raises(TrainingDivergedError, match=f"loss became {bad} at step 3; training stopped"):
        tiny_run(plan, model=blown)
    torch.manual_seed(0)
    good = BlowsUp(TINY, bad, at=99)
    tiny_run(plan, config=replace(CONFIG, max_iters=3, eval_interval=3), model=good)
    for name, tensor in good.state_dict().items():
        assert torch.equal(tensor, blown.state_dict()[name]), name


SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def count_syncs(monkeypatch):
    """Count the tensor methods that make the CPU wait for the device (``loss.item()``, ``if t:``...)."""
    counts = {"n": 0}
    for name in SYNCS:
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, **kwargs):
            counts["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return counts


def syncs_in_a_run(counts, plan, steps):
    config = replace(CONFIG, max_iters=steps, eval_interval=steps, grad_clip=1.0)  # one evaluation
    torch.manual_seed(0)
    model = build_model(TINY, plan)
    counts["n"] = 0
    train(model, TRAIN, VAL, config, block_size=TINY.block_size, progress=True, speed=plan)
    return counts["n"]


@pytest.mark.parametrize("plan", [FP32, FP16, BF16], ids=["fp32", "fp16", "bf16"])
def test_the_training_loop_does_not_wait_for_the_device_per_step(plan, count_syncs):
    """8 steps and 24 steps, each with one evaluation at the end, read the device equally often:
    nothing in a step waits for it (clipping, the GradScaler and the progress bar included)."""
    few, many = syncs_in_a_run(count_syncs, plan, 8), syncs_in_a_run(count_syncs, plan, 24)
    assert few == many and few <= 8


def test_the_sync_counter_sees_a_per_step_wait(count_syncs):
    """The counter's control: with the plain AdamW loop (the readable path) the guard checks the loss
    at every step (and torch's loop reads each parameter's step count), and the counter sees it."""
    few, many = syncs_in_a_run(count_syncs, READABLE, 8), syncs_in_a_run(count_syncs, READABLE, 24)
    assert many - few >= 16


# --- the prepared GPU script --------------------------------------------------------------------

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_run.sh"


def test_the_gpu_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_gpu_script_stops_at_setup_without_a_gpu(tmp_path):
    """Without a GPU it says so and stops before any step (``--dry-run`` is the way to try it here)."""
    result = subprocess.run(["bash", str(SCRIPT), "bench"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable})
    assert result.returncode != 0
    assert "no CUDA GPU here" in result.stdout + result.stderr and "== bench" not in result.stdout
    assert "no CUDA GPU here" in (tmp_path / "gpu_run.log").read_text()


def test_the_gpu_script_dry_runs_a_step_and_reports_it(tmp_path):
    """``--dry-run recipe`` on the CPU (smoke preset): the step runs under its time cap, and the
    README under $OUT says what ran, with its status; the results file is there."""
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", "recipe"], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr
    readme = (tmp_path / "README.md").read_text()
    assert "| setup | ok |" in readme and "| recipe | ok |" in readme and "device cpu, preset smoke" in readme
    runs = json.loads((tmp_path / "recipes.json").read_text())["runs"]
    assert runs["steps30"]["last_step"] == 30 and runs["steps30"]["val_whole_split_best"] > 0


def test_the_gpu_script_refuses_an_unknown_step(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", "lecture"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "OUT": str(tmp_path)})
    assert result.returncode == 2 and "unknown step 'lecture'" in result.stderr
