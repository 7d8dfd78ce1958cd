"""The fast path's GPU levers, checked on the CPU where they can be: batches drawn by a generator
where the data lives (`draw_batch`), the CPU's batch stream untouched, and the device's own fused
dropout (the branch a GPU takes) agreeing in distribution with the CPU's 16-bit masks. On a machine
with CUDA the same checks also run there.

Run: pytest tests/test_gpu_levers.py
"""

import pytest
import torch

import gptlib.fast
from gptlib.batches import draw_batch, get_batch
from gptlib.checkpoint import load_checkpoint, resume_training_state, save_training_state
from gptlib.config import GPTConfig, TrainConfig
from gptlib.errors import CheckpointError
from gptlib.fast import CausalSelfAttention, FastDropout
from gptlib.model import GPT
from gptlib.training import make_generators, train

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA GPU on this machine"))]


@pytest.fixture
def gpu_branch(monkeypatch):
    """FastGPT's parts take the branch a GPU takes (the device's fused dropout), on CPU tensors."""
    monkeypatch.setattr(gptlib.fast, "cpu_kernels", lambda x: False)


# --- batches drawn where the data lives ----------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_drawn_on_the_device_is_a_valid_batch(device):
    data = torch.arange(1000, device=device) * 7 % 101  # distinct neighbours: each chunk is findable
    gen = torch.Generator(device=device).manual_seed(3)
    x, y = draw_batch(data, 16, 8, gen)
    assert x.shape == y.shape == (16, 8) and x.device.type == y.device.type == device
    assert x.is_contiguous() and y.is_contiguous() and x.dtype == data.dtype
    for row_x, row_y in zip(x.cpu(), y.cpu()):
        # the start s of this chunk: x = data[s:s+8], y = data[s+1:s+9], s + 8 < len(data)
        starts = [s for s in range(len(data) - 8) if torch.equal(data[s:s + 8].cpu(), row_x)]
        assert starts and torch.equal(data[starts[0] + 1:starts[0] + 9].cpu(), row_y)
    again = draw_batch(data, 16, 8, torch.Generator(device=device).manual_seed(3))
    assert torch.equal(again[0], x)  # the seed reproduces it


def test_draws_cover_every_start_and_no_more():
    data = torch.arange(20)
    gen = torch.Generator().manual_seed(0)
    firsts = torch.cat([draw_batch(data, 64, 5, gen)[0][:, 0] for _ in range(20)])
    assert set(firsts.tolist()) == set(range(15))  # starts 0..14: the last chunk's target is data[19]


def test_a_cpu_generator_draws_the_cpu_stream_as_before():
    """A CPU generator keeps the batches the book's CPU results were made with: randint on the CPU,
    then one gather (the formula, written out again here)."""
    data = torch.randint(65, (5000,), generator=torch.Generator().manual_seed(1))
    x, y = get_batch(data, 8, 16, torch.Generator().manual_seed(1337))
    ix = torch.randint(len(data) - 16, (8,), generator=torch.Generator().manual_seed(1337))
    assert torch.equal(x, torch.stack([data[i:i + 16] for i in ix]))
    assert torch.equal(y, torch.stack([data[i + 1:i + 17] for i in ix]))


@pytest.mark.parametrize("device", ["cpu", "mps", "meta"])
def test_generators_are_on_the_cpu_except_for_cuda(device):
    assert all(g.device.type == "cpu" for g in make_generators(0, device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_a_cuda_run_draws_on_the_gpu_and_resumes_there(tmp_path):
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.1)
    cfg = TrainConfig(batch_size=4, max_iters=4, eval_interval=2, eval_iters=1)
    data = torch.randint(11, (400,), generator=torch.Generator().manual_seed(0))
    state = train(GPT(config), data[:300], data[300:], cfg, block_size=8, device="cuda", progress=False)
    assert state.batch_generator.device.type == "cuda" == state.eval_generator.device.type
    from gptlib.tokenizer import CharTokenizer
    save_training_state(tmp_path / "last.pt", state, CharTokenizer(list("abcdefghijk")), config)
    resumed = resume_training_state(tmp_path / "last.pt", GPT(config), "cuda")
    assert torch.equal(resumed.batch_generator.get_state(), state.batch_generator.get_state())


def test_a_run_drawn_on_a_gpu_resumes_only_on_one(tmp_path):
    """Its batch stream lives on the GPU: resumed on a CPU it could not continue; it says so."""
    from gptlib.tokenizer import CharTokenizer
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.0)
    cfg = TrainConfig(batch_size=4, max_iters=2, eval_interval=2, eval_iters=1)
    data = torch.randint(11, (400,), generator=torch.Generator().manual_seed(0))
    state = train(GPT(config), data[:300], data[300:], cfg, block_size=8, progress=False)
    path = save_training_state(tmp_path / "last.pt", state, CharTokenizer(list("abcdefghijk")), config)
    ckpt = load_checkpoint(path)
    assert ckpt.extra["rng"]["batch_device"] == "cpu"
    ckpt.extra["rng"]["batch_device"] = "cuda"  # as a CUDA run saves it
    with pytest.raises(CheckpointError, match="drew its batches on cuda.*resume it on a cuda device"):
        resume_training_state(ckpt, GPT(config), "cpu")


# --- the device's own dropout: same distribution, same semantics --------------------------------

def dropout_stats(x: torch.Tensor, p: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The keep mask, the survivors' scale and the gradient of sum(dropout(x))."""
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    out = FastDropout(p).train()(x)
    out.sum().backward()
    kept = out != 0
    return kept, out[kept] / x.detach()[kept], x.grad


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_the_gpu_dropout_branch_keeps_as_many_and_scales_as_the_cpu_one(p, monkeypatch):
    x = torch.rand(256, 256) + 0.5  # no zeros of its own
    n = x.numel()
    for branch in ("cpu", "gpu"):
        if branch == "gpu":
            monkeypatch.setattr(gptlib.fast, "cpu_kernels", lambda t: False)
        kept, ratio, grad = dropout_stats(x, p, seed=0)
        assert abs(kept.float().mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5, branch  # 5 sigma
        torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / (1 - p)))  # survivors x 1/(1-p)
        # backward drops the same elements and scales the rest alike
        torch.testing.assert_close(grad, kept.float() / (1 - p))


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_attention_dropout_on_the_gpu_branch_is_unbiased_like_the_cpu_one(attention, gpu_branch):
    """Inverted dropout on the attention weights leaves the expected output unchanged: the mean of
    many training-mode outputs approaches the eval-mode output on the branch a GPU takes (SDPA's
    dropout_p, or softmax then F.dropout), as on the CPU's."""
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.3)
    torch.manual_seed(0)
    sa = CausalSelfAttention(config, attention)
    sa.resid_dropout = torch.nn.Identity()  # the attention weights' dropout alone
    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        expected = sa.eval()(x)
        sa.train()
        mean = torch.stack([sa(x) for _ in range(3000)]).mean(0)
        one = sa(x)
    assert not torch.allclose(one, expected, atol=1e-3)  # dropout really ran
    torch.testing.assert_close(mean, expected, atol=0.03, rtol=0)
