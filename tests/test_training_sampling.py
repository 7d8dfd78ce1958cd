"""Training and sampling: the loss falls, one batch can be overfitted, same seed same numbers,
estimate_loss restores the mode, and generate crops, is greedy at temperature 0 and checks its input.

Run: pytest tests/test_training_sampling.py
"""

import math
from dataclasses import replace

import pytest
import torch

from gptlib.batches import get_batch, train_val_split
from gptlib.config import TrainConfig
from gptlib.model import GPT
from gptlib.errors import ConfigError
from gptlib.sampling import generate, sample_next, sample_text
from gptlib.training import estimate_loss, get_lr, make_optimizer, train

FAST = TrainConfig(batch_size=8, max_iters=60, eval_interval=20, eval_iters=4, learning_rate=3e-3)


def run(tiny_config, data, config=FAST, seed=0):
    torch.manual_seed(seed)
    model = GPT(replace(tiny_config, dropout=0.1))
    train_data, val_data = train_val_split(data)
    state = train(model, train_data, val_data, config, block_size=tiny_config.block_size, progress=False)
    return model, state


def test_loss_falls_and_history_is_recorded(tiny_config, data):
    _, state = run(tiny_config, data)
    h = state.history
    assert h.step == [20, 40, 60] and len(h.lr) == len(h.elapsed) == 3
    assert h.train_loss[-1] < h.train_loss[0] < math.log(tiny_config.vocab_size) + 0.1
    assert h.val_loss[-1] < math.log(tiny_config.vocab_size)


def test_same_seed_same_losses(tiny_config, data):
    _, a = run(tiny_config, data)
    _, b = run(tiny_config, data)
    assert a.history.train_loss == b.history.train_loss and a.history.val_loss == b.history.val_loss


def test_overfit_one_batch(tiny_config, data):
    """A correct model and loss can memorise a single batch (llm.c's correctness check)."""
    torch.manual_seed(0)
    model = GPT(tiny_config)
    x, y = get_batch(data, 4, tiny_config.block_size, torch.Generator().manual_seed(0))
    opt = make_optimizer(model, replace(FAST, learning_rate=1e-2))
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_estimate_loss_restores_training_mode(tiny_config, data):
    model = GPT(tiny_config)
    model.train()
    out = estimate_loss(model, {"val": data}, 2, 8, 3, torch.Generator().manual_seed(0), "cpu")
    assert model.training and set(out) == {"val"}
    model.eval()
    estimate_loss(model, {"val": data}, 2, 8, 3, torch.Generator().manual_seed(0), "cpu")
    assert not model.training


def test_warmup_then_cosine_decay():
    config = TrainConfig(max_iters=100, warmup_iters=10, learning_rate=1.0, min_lr=0.1, decay_lr=True)
    lrs = [get_lr(s, config) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # non-increasing after warm-up
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_diverging_loss_stops_with_a_clear_error(tiny_config, data):
    with pytest.raises(RuntimeError, match="learning_rate"):
        run(tiny_config, data, replace(FAST, learning_rate=1e9))


def test_generate_crops_and_is_reproducible(tiny_config):
    torch.manual_seed(0)
    model = GPT(tiny_config)
    idx = torch.zeros((2, 1), dtype=torch.long)
    n = 3 * tiny_config.block_size  # far past block_size: the context must be cropped
    a = generate(model, idx, n, generator=torch.Generator().manual_seed(1))
    b = generate(model, idx, n, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 1 + n) and torch.equal(a, b)


def test_temperature_zero_is_greedy(tiny_config):
    torch.manual_seed(0)
    model = GPT(tiny_config).eval()
    idx = torch.tensor([[1, 2, 3]])
    out = generate(model, idx, 5, temperature=0)
    for t in range(3, 8):  # every new token is the argmax given what came before
        logits, _ = model(out[:, :t])
        assert out[0, t] == logits[0, -1].argmax()
    assert torch.equal(out, generate(model, idx, 5, temperature=1.0, top_k=1,
                                     generator=torch.Generator().manual_seed(9)))


def test_generate_restores_training_mode(tiny_config):
    model = GPT(tiny_config).train()
    generate(model, torch.zeros((1, 1), dtype=torch.long), 2)
    assert model.training


SAMPLING_ERRORS = [
    (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0, got -1"),
    (dict(max_new_tokens=2.0), "max_new_tokens must be an integer >= 0, got 2.0"),
    (dict(temperature=-0.5), "temperature must be a finite number >= 0 (0 = greedy), got -0.5"),
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0 (0 = greedy), got nan"),
    (dict(top_k=0), "top_k must be an integer >= 1 (or None for no limit), got 0"),
    (dict(top_k=10_000), "top_k (10000) cannot exceed the vocabulary size ({V})"),
]


@pytest.mark.parametrize("kwargs, message", SAMPLING_ERRORS)
def test_generate_checks_each_argument_with_one_message(tiny_config, kwargs, message):
    model = GPT(tiny_config)
    with pytest.raises(ConfigError) as error:
        generate(model, torch.zeros((1, 1), dtype=torch.long), **(dict(max_new_tokens=3) | kwargs))
    assert str(error.value) == message.format(V=tiny_config.vocab_size)


@pytest.mark.parametrize("kwargs, message", SAMPLING_ERRORS + [
    (dict(prompt=""), "the prompt is empty: give at least one character for the model to continue "
                      "(a newline will do)"),
    (dict(seed=-1), "seed must be an integer from 0 to 2**63 - 1, got -1"),
    (dict(seed=2**63), f"seed must be an integer from 0 to 2**63 - 1, got {2**63}"),
])
def test_sample_text_checks_each_argument_once_before_any_token(tiny_config, tokenizer, kwargs, message):
    """The text entry: every argument checked where it enters, with one message, before a token is
    drawn (``on_token`` never called)."""
    args = dict(prompt="a", max_new_tokens=3) | kwargs
    seen = []
    with pytest.raises(ConfigError) as error:
        sample_text(GPT(tiny_config), tokenizer, on_token=seen.append, **args)
    assert str(error.value) == message.format(V=tokenizer.vocab_size) and seen == []


def test_the_largest_seed_samples_and_repeats(tiny_config, tokenizer):
    model = GPT(tiny_config)
    text = sample_text(model, tokenizer, "a", 5, seed=2**63 - 1)
    assert len(text) == 6 and text == sample_text(model, tokenizer, "a", 5, seed=2**63 - 1)


@pytest.fixture
def flush_to_zero():
    """Subnormal floats flushed to zero, as a GPU computes (torch.set_flush_denormal, put back after)."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals to zero (no SSE3 / ARM FTZ)")
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_every_positive_temperature_samples_under_flush_to_zero(flush_to_zero, dtype):
    """1e-39 is subnormal in fp32 (0 once flushed: 0 / 0 was NaN). From the tiniest temperature to the
    largest, a token is drawn; a tiny one picks the best logit, a huge one is uniform, not NaN."""
    logits = torch.tensor([[1.0, 30.0, 29.0, -5.0]], dtype=dtype)
    for temperature in (5e-324, 1e-300, 1e-46, 1e-45, 1e-39, 1.1e-38, 1.2e-38, 2e-38, 1e-30, 1e-3):
        picked = sample_next(logits, temperature, generator=torch.Generator().manual_seed(0))
        assert picked.item() == 1, temperature
    counts = torch.zeros(4)
    gen = torch.Generator().manual_seed(0)
    for temperature in (1e30, 1e38, 1e39, 1e300):  # beyond fp32's range: every token equally likely
        for _ in range(100):
            counts[sample_next(logits, temperature, generator=gen).item()] += 1
    assert (counts > 50).all(), counts


def test_a_temperature_near_the_smallest_normal_float_still_samples(flush_to_zero):
    """Just above fp32's smallest normal number, sampling is sampling: a tie between the two best
    logits is broken by the generator, not always towards the first (as greedy would)."""
    logits = torch.tensor([[30.0, 30.0, 0.0]])
    gen = torch.Generator().manual_seed(0)
    picked = {sample_next(logits, 2e-38, generator=gen).item() for _ in range(40)}
    assert picked == {0, 1}
