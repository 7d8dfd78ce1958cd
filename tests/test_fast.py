"""The fast path equals the readable one: same outputs and gradients after mapping the weights.

Run: pytest tests/test_fast.py
"""

from dataclasses import replace

import pytest
import torch

from gptlib.config import GPTConfig
from gptlib.fast import (ATTENTION, CausalSelfAttention, FastDropout, FastGPT, dropout_drop_mask,
                         dropout_keep_mask, fast_from_readable, fast_to_readable, readable_from_fast,
                         readable_to_fast)
from gptlib.model import GPT

CONFIG = GPTConfig(vocab_size=11, block_size=16, n_embd=24, n_head=3, n_layer=2, dropout=0.0)


def _pair(config=CONFIG, seed=0, attention="sdpa"):
    torch.manual_seed(seed)
    readable = GPT(config)
    return readable, fast_from_readable(readable, attention)


def _batch(config=CONFIG, B=3, T=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(config.vocab_size, (B, T), generator=g)
    y = torch.randint(config.vocab_size, (B, T), generator=g)
    return x, y


def test_weight_mapping_round_trips():
    readable, fast = _pair()
    back = fast_to_readable(readable_to_fast(readable.state_dict(), CONFIG), CONFIG)
    assert back.keys() == readable.state_dict().keys()
    for name, tensor in readable.state_dict().items():
        assert torch.equal(back[name], tensor), name
    again = readable_from_fast(fast)
    for name, tensor in readable.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("train_mode", [False, True])  # dropout 0: train mode takes the SDPA path too
def test_same_logits_and_loss(train_mode, attention):
    readable, fast = _pair(attention=attention)
    readable.train(train_mode)
    fast.train(train_mode)
    x, y = _batch()
    logits_r, loss_r = readable(x, y)
    logits_f, loss_f = fast(x, y)
    assert logits_f.shape == logits_r.shape == (3, 16, CONFIG.vocab_size)
    torch.testing.assert_close(logits_f, logits_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss_f, loss_r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ATTENTION)
def test_same_gradients_after_mapping(attention):
    readable, fast = _pair(attention=attention)
    x, y = _batch()
    readable(x, y)[1].backward()
    fast(x, y)[1].backward()
    grads_r = {n: p.grad for n, p in readable.named_parameters()}
    grads_f = {n: p.grad for n, p in fast.named_parameters()}
    mapped = fast_to_readable(grads_f, CONFIG)  # qkv's gradient splits like its weight
    assert mapped.keys() == grads_r.keys()
    for name, grad in grads_r.items():
        torch.testing.assert_close(mapped[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_explicit_attention_path_equals_sdpa_and_readable():
    """The CPU training path (explicit attention, used when dropout > 0) with the dropout switched
    off by p -> 0 inside must equal SDPA's causal attention."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(CONFIG)
    x = torch.randn(2, 16, CONFIG.n_embd)
    B, T, C = x.shape
    q, k, v = attn.qkv(x).split(C, dim=2)
    q, k, v = (t.view(B, T, 3, 8).transpose(1, 2) for t in (q, k, v))
    explicit = attn.explicit_attention(q, k, v)  # dropout is 0 in CONFIG: the plain softmax branch
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-6)


def test_causal_future_tokens_do_not_change_past_logits():
    _, fast = _pair()
    fast.eval()
    x, _ = _batch(B=1)
    x2 = x.clone()
    x2[0, 10:] = (x2[0, 10:] + 1) % CONFIG.vocab_size  # change only the future
    with torch.no_grad():
        a, _ = fast(x)
        b, _ = fast(x2)
    torch.testing.assert_close(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_causal_with_dropout_training_path():
    """With dropout on, the explicit path must stay causal: a future token's gradient into a past
    position's output is zero."""
    config = GPTConfig(vocab_size=11, block_size=16, n_embd=24, n_head=3, n_layer=1, dropout=0.2)
    torch.manual_seed(0)
    fast = FastGPT(config).train()
    x, _ = _batch(config, B=1)
    emb = fast.token_embedding_table(x).detach().requires_grad_(True)
    pos = fast.position_embedding_table(torch.arange(16))
    out = fast.blocks(emb + pos)  # (1,T,C)
    out[0, 5].sum().backward()
    assert emb.grad[0, 6:].abs().sum() == 0  # tokens after 5 never influence position 5
    assert emb.grad[0, :6].abs().sum() > 0


def test_dropout_training_matches_readable_in_expectation():
    """With dropout on, the two models draw different masks; averaged over many masks, they agree."""
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.2)
    readable, fast = _pair(config)
    x, y = _batch(config, B=64, T=8)
    torch.manual_seed(3)
    with torch.no_grad():
        loss_r = torch.stack([readable(x, y)[1] for _ in range(40)]).mean()
        loss_f = torch.stack([fast(x, y)[1] for _ in range(40)]).mean()
    assert abs(loss_r.item() - loss_f.item()) < 0.02


def test_drop_mask_rate_and_seed():
    torch.manual_seed(0)
    mask = dropout_drop_mask(torch.Size((1000, 1001)), 0.2, "cpu")
    assert mask.dtype == torch.bool and mask.shape == (1000, 1001)
    assert abs(mask.float().mean().item() - 0.2) < 0.002
    torch.manual_seed(0)
    assert torch.equal(dropout_drop_mask(torch.Size((1000, 1001)), 0.2, "cpu"), mask)
    assert not dropout_drop_mask(torch.Size((100,)), 0.0, "cpu").any()
    torch.manual_seed(0)  # the keep mask is the same draw, read the other way round, as uint8 1/0
    keep = dropout_keep_mask(torch.Size((1000, 1001)), 0.2, "cpu")
    assert keep.dtype == torch.uint8 and torch.equal(keep.bool(), ~mask)


def test_fast_dropout_forward_and_backward():
    torch.manual_seed(0)
    drop = FastDropout(0.5).train()
    x = torch.ones(10_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert torch.all(y[kept] == 2.0)  # survivors scaled by 1 / (1 - p)
    assert abs(kept.float().mean().item() - 0.5) < 0.03
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes exactly where the value did
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("attention", ATTENTION)
def test_training_with_an_fp32_plan_follows_the_readable_run(attention):
    """Five AdamW steps: readable GPT (plain loop) vs FastGPT with an fp32 plan (fused AdamW)."""
    from gptlib.config import TrainConfig
    from gptlib.speed import SpeedConfig, build_model
    from gptlib.training import train

    plan = SpeedConfig(fast_model=True, fused_adamw=True, attention=attention)
    model = build_model(CONFIG, plan)
    assert isinstance(model, FastGPT) and model.blocks[0].sa.attention == attention
    assert isinstance(build_model(CONFIG, replace(plan, fast_model=False)), GPT)
    data = torch.randint(CONFIG.vocab_size, (400,), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(batch_size=4, max_iters=5, eval_interval=5, eval_iters=2, learning_rate=1e-2)
    readable, fast = _pair(attention=attention)
    h_r = train(readable, data, data, cfg, block_size=16, progress=False).history
    state = train(fast, data, data, cfg, block_size=16, progress=False, speed=plan)
    assert state.optimizer.defaults["fused"]
    torch.testing.assert_close(state.history.val_loss, h_r.val_loss, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(state.history.train_loss, h_r.train_loss, rtol=1e-4, atol=1e-5)


def test_bf16_plan_trains_like_fp32(tokenizer, data):
    """bf16 autocast changes the rounding, not the model: 40 steps on real text end at the same loss
    (within 0.05) as fp32, from the same weights and batches."""
    from gptlib.config import TrainConfig
    from gptlib.speed import SpeedConfig
    from gptlib.training import train

    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.1)
    cfg = TrainConfig(batch_size=8, max_iters=40, eval_interval=40, eval_iters=4, learning_rate=3e-3)
    losses = {}
    for dtype in (None, "bfloat16"):
        torch.manual_seed(0)
        model = FastGPT(config, "explicit")
        plan = SpeedConfig(fast_model=True, autocast_dtype=dtype, fused_adamw=True, attention="explicit")
        losses[dtype] = train(model, data, data, cfg, block_size=16, progress=False, speed=plan).history
    assert losses[None].val_loss[-1] < 2.0  # it learned (untrained: about ln(vocab_size) = 3.5)
    assert abs(losses["bfloat16"].val_loss[-1] - losses[None].val_loss[-1]) < 0.05


def _fake_probe(monkeypatch, ms: dict, bf16="avx512_bf16"):
    """Make `speed_plan("cpu")` decide from the given block timings (ms) instead of measuring."""
    from gptlib import speed

    seconds = {key: value / 1000 for key, value in ms.items()}
    monkeypatch.setattr(speed, "_probe", lambda shape: speed.CpuProbe(seconds, 512, bf16, 0.1))


def test_cpu_plan_picks_the_fastest_measured_variant(monkeypatch):
    from gptlib.speed import speed_plan

    _fake_probe(monkeypatch, {("readable", "float32", "heads"): 10.0, ("fast", "float32", "sdpa"): 8.0,
                              ("fast", "float32", "explicit"): 9.0, ("fast", "bfloat16", "sdpa"): 7.5,
                              ("fast", "bfloat16", "explicit"): 4.0})
    plan = speed_plan("cpu")
    assert (plan.fast_model, plan.autocast_dtype, plan.attention, plan.fused_adamw) == (
        True, "bfloat16", "explicit", True)
    assert "2.5x the readable" in plan.why and "avx512_bf16" in plan.why


def test_cpu_plan_keeps_fp32_unless_bf16_clearly_wins(monkeypatch):
    from gptlib.speed import speed_plan

    _fake_probe(monkeypatch, {("readable", "float32", "heads"): 10.0, ("fast", "float32", "sdpa"): 8.0,
                              ("fast", "float32", "explicit"): 7.0, ("fast", "bfloat16", "sdpa"): 7.5,
                              ("fast", "bfloat16", "explicit"): 6.5})  # 7.0 / 6.5 < the margin
    plan = speed_plan("cpu")
    assert (plan.fast_model, plan.autocast_dtype, plan.attention) == (True, None, "explicit")


def test_cpu_plan_is_never_slower_than_the_readable_path(monkeypatch):
    from gptlib.speed import speed_plan

    _fake_probe(monkeypatch, {("readable", "float32", "heads"): 5.0, ("fast", "float32", "sdpa"): 8.0,
                              ("fast", "float32", "explicit"): 9.0}, bf16="")
    plan = speed_plan("cpu")
    assert not plan.fast_model and plan.autocast_dtype is None
    assert "no bf16 instructions" in plan.why


def test_a_near_tie_keeps_the_default_plan(monkeypatch):
    """Timing noise must not flip the plan (and the numbers of a seeded run) between processes."""
    from gptlib.speed import SpeedConfig, speed_plan

    _fake_probe(monkeypatch, {("readable", "float32", "heads"): 7.6, ("fast", "float32", "sdpa"): 8.0,
                              ("fast", "float32", "explicit"): 7.5, ("fast", "bfloat16", "sdpa"): 7.0,
                              ("fast", "bfloat16", "explicit"): 7.2})
    assert speed_plan("cpu") == SpeedConfig(fast_model=True, fused_adamw=True)


def test_a_tiny_model_gets_the_default_plan_unmeasured(monkeypatch):
    from gptlib import speed

    monkeypatch.setattr(speed, "_probe", lambda shape: pytest.fail("a tiny model must not be probed"))
    plan = speed.speed_plan("cpu", CONFIG)  # 24 wide
    assert plan == speed.SpeedConfig(fast_model=True, fused_adamw=True) and "not measured" in plan.why


def test_the_real_probe_gives_a_valid_plan():
    from gptlib.speed import SpeedConfig, probe_cpu, speed_plan

    config = GPTConfig(vocab_size=11, block_size=16, n_embd=64, n_head=4, n_layer=1, dropout=0.0)
    probe = probe_cpu(config)
    assert all(seconds > 0 for seconds in probe.seconds.values())
    assert ("readable", "float32", "heads") in probe.seconds and ("fast", "float32", "sdpa") in probe.seconds
    plan = speed_plan("cpu", config)
    assert isinstance(plan, SpeedConfig) and plan.fused_adamw and "forward + backward" in plan.why
    assert speed_plan("cpu", config) == plan  # measured once per process and shape


def test_explicit_attention_with_dropout_gradient_is_exact():
    """gradcheck in float64 of the CPU's explicit attention with dropout (softmax, then the 1-byte
    mask), the mask fixed by reseeding before each call."""
    attn = CausalSelfAttention(replace(CONFIG, dropout=0.3)).train()

    def f(q, k, v):
        torch.manual_seed(0)
        return attn.explicit_attention(q, k, v)

    q, k, v = (torch.randn(1, 3, 5, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(f, (q, k, v))


def test_dropout_gradient_is_exact():
    """gradcheck of the cheap dropout in float64, the mask fixed by reseeding before each call."""
    from gptlib.fast import _Dropout

    def f(x):
        torch.manual_seed(0)
        return _Dropout.apply(x, 0.3, 1 / 0.7)

    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("attention", ATTENTION)
def test_bf16_autocast_attention_stays_close_to_fp32(attention):
    """Both attentions under bf16 autocast give the fp32 output to bf16 precision (~1e-2)."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(CONFIG, attention).eval()
    x = torch.randn(2, 16, CONFIG.n_embd)
    want = attn(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attn(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)
