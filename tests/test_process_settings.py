"""A run leaves the process as it found it: TF32 (both of torch's APIs), the float32 matmul precision,
the number of threads and autocast are, after `train_run`, what they were before it, also when the
run stops with an error or Ctrl-C. A notebook kernel outlives every run it starts.

The CUDA plan's TF32 switch is faked on the CPU: these flags can be set and read without a GPU.

Run: pytest tests/test_process_settings.py
"""

import pytest
import torch

from gptlib import bench
from gptlib.config import GPTConfig, TrainConfig
from gptlib.model import GPT
from gptlib.run import Corpus, Run, load_corpus, train_run
from gptlib.speed import SpeedConfig, backend_flags, process_settings
from gptlib.training import make_optimizer

# What `cuda_plan` gives an Ampere-or-newer GPU (TF32, bf16 autocast, fused AdamW), run on the CPU.
CUDA_LIKE = SpeedConfig(fast_model=True, autocast_dtype="bfloat16", tf32=True, fused_adamw=True)
TINY = GPTConfig(block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.1)
CONFIG = TrainConfig(batch_size=4, max_iters=6, eval_interval=3, eval_iters=1)


@pytest.fixture
def corpus(tmp_path, text) -> Corpus:
    path = tmp_path / "text.txt"
    path.write_text(text)
    return load_corpus(path)


@pytest.fixture
def untouched():
    """Whatever a test changes in the process settings is put back after it (the fixture's own
    restoring, so one failing test cannot change the next test's starting point)."""
    before = process_settings()
    with backend_flags(None):
        yield before


def run_cuda_like(corpus, callbacks=()):
    run = Run(model=TINY, train=CONFIG, speed=CUDA_LIKE, device="cpu")
    return train_run(run, corpus=corpus, callbacks=callbacks, progress=False, log=lambda _: None)


def test_the_settings_are_readable_and_tf32_is_off_by_default(untouched):
    names = set(untouched)
    assert {"cuda.matmul.allow_tf32", "cudnn.allow_tf32", "float32_matmul_precision", "num_threads",
            "autocast.cpu", "autocast.cuda"} <= names
    assert untouched["cuda.matmul.allow_tf32"] is False  # torch's default, and the readable maths


def test_a_cuda_like_run_turns_tf32_on_for_its_steps_only(corpus, untouched):
    seen = []
    run_cuda_like(corpus, callbacks=[lambda state: seen.append(process_settings())])
    assert seen and all(s["cuda.matmul.allow_tf32"] and s["cudnn.allow_tf32"] for s in seen)  # on, inside
    assert process_settings() == untouched  # off again after


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_run_stopped_mid_way_leaves_the_settings_as_they_were(corpus, untouched, stop):
    """Ctrl-C (KeyboardInterrupt, a run without --out re-raises it) and an error at the first
    evaluation, after a callback changed every setting: all of them are back."""
    threads = torch.get_num_threads()

    def meddle(state):
        torch.set_num_threads(threads + 1)
        torch.set_float32_matmul_precision("medium")
        torch.set_autocast_enabled("cpu", True)  # as a `with torch.autocast` left open would
        raise stop("stopped at step 3")

    with pytest.raises(stop, match="stopped at step 3"):
        run_cuda_like(corpus, callbacks=[meddle])
    assert process_settings() == untouched


@pytest.mark.parametrize("set_before", ["legacy", "new_api", "medium"])
def test_settings_a_user_made_before_the_run_are_kept(corpus, untouched, set_before):
    """Whatever the notebook set before, through either of torch's TF32 APIs, is what it has after."""
    if set_before == "legacy":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = False
    elif set_before == "medium":
        torch.set_float32_matmul_precision("medium")
    else:
        if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            pytest.skip("this torch has no fp32_precision API (torch < 2.9)")
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    before = process_settings()
    run_cuda_like(corpus)
    assert process_settings() == before


def test_the_bench_step_leaves_tf32_as_it_found_it(untouched):
    torch.manual_seed(0)
    model = GPT(TINY)
    x = torch.randint(TINY.vocab_size, (2, TINY.block_size))
    bench._train_step(model, make_optimizer(model, CONFIG), x, x, CUDA_LIKE, torch.device("cpu"))
    assert process_settings() == untouched
