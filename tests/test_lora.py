"""LoRA and fine-tuning from a checkpoint (chapter 9): fresh adapters leave the model equal, merged
equals unmerged, only the adapters train, a LoRA run resumes exactly, and the command line's bad
input is one line.

Run: pytest tests/test_lora.py
"""

import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from gptlib import finetune
from gptlib.checkpoint import load_checkpoint
from gptlib.cli import main
from gptlib.config import GPTConfig, TrainConfig
from gptlib.errors import CheckpointError, ConfigError, TrainingInterrupted
from gptlib.fast import FastGPT
from gptlib.lora import LoRAConfig, LoRALinear, add_lora, count_trainable, merge_lora
from gptlib.model import GPT
from gptlib.run import Run, train_run
from gptlib.speed import SpeedConfig
from gptlib.training import make_generators, train

CONFIG = GPTConfig(vocab_size=30, block_size=8, n_embd=16, n_head=2, n_layer=2, dropout=0.0)
FAST = SpeedConfig(fast_model=True, fused_adamw=True)
TINY_TRAIN = TrainConfig(batch_size=4, max_iters=20, eval_interval=5, eval_iters=2, learning_rate=3e-3)


def _idx(seed=0):
    return torch.randint(0, CONFIG.vocab_size, (3, CONFIG.block_size),
                         generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", [GPT, FastGPT])
def test_fresh_adapters_leave_the_model_exactly_equal(cls):
    torch.manual_seed(0)
    model = cls(CONFIG).eval()
    before = model(_idx())[0]
    add_lora(model, LoRAConfig(rank=2))
    assert torch.equal(model(_idx())[0], before)
    adapters = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert adapters and all(torch.count_nonzero(m.lora_B) == 0 for m in adapters)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.split(".")[-1] in ("lora_A", "lora_B") for name in trainable)
    assert "lm_head.weight" not in trainable and "token_embedding_table.weight" not in trainable


@pytest.mark.parametrize("cls", [GPT, FastGPT])
def test_merged_equals_unmerged_and_is_a_plain_model(cls):
    torch.manual_seed(0)
    model = add_lora(cls(CONFIG).eval(), LoRAConfig(rank=4, alpha=8))
    for m in model.modules():
        if isinstance(m, LoRALinear):
            torch.nn.init.normal_(m.lora_B)  # as if trained: a real update
    merged = merge_lora(model)
    assert not torch.equal(model(_idx())[0], cls(CONFIG).eval()(_idx())[0])
    torch.testing.assert_close(merged(_idx())[0], model(_idx())[0], rtol=1e-5, atol=1e-5)
    plain = GPT(CONFIG).eval()  # the state_dict the sampler, the widget and the export read
    plain.load_state_dict(merged.state_dict())
    torch.testing.assert_close(plain(_idx())[0], model(_idx())[0], rtol=1e-5, atol=1e-5)
    assert any(isinstance(m, LoRALinear) for m in model.modules())  # the original keeps its adapters


def test_only_adapters_get_gradients_and_the_rest_stays_bit_identical(data):
    config = replace(CONFIG, vocab_size=int(data.max()) + 1)
    torch.manual_seed(0)
    model = add_lora(FastGPT(config), LoRAConfig(rank=2))
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora" not in k}
    x = data[:32].view(4, 8)
    model(x, data[1:33].view(4, 8))[1].backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {name for name, p in model.named_parameters() if "lora_" in name}
    model.zero_grad()
    n = int(0.9 * len(data))
    train(model, data[:n], data[n:], TINY_TRAIN, block_size=8, progress=False)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
    assert any(not torch.equal(m.lora_B, torch.zeros_like(m.lora_B))
               for m in model.modules() if isinstance(m, LoRALinear))
    assert count_trainable(model) == sum(p.numel() for n_, p in model.named_parameters() if "lora_" in n_)


def test_lora_config_checks_its_input():
    for bad in [dict(rank=0), dict(rank=-1), dict(rank=2.0), dict(rank=True), dict(alpha=0),
                dict(alpha=-1.0), dict(alpha=float("nan")), dict(alpha=float("inf"))]:
        with pytest.raises(ConfigError):
            LoRAConfig(**bad)
    with pytest.raises(ConfigError, match="`init_from`"):
        Run(model=CONFIG, train=TINY_TRAIN, lora=LoRAConfig())


@pytest.fixture
def pretrained(tmp_path, text):
    """A tiny model trained briefly on ``text``: its best.pt."""
    data = tmp_path / "text.txt"
    data.write_text(text)
    run = Run(model=CONFIG, train=TINY_TRAIN, speed=FAST, data=data, out=tmp_path / "pre", device="cpu")
    return train_run(run, progress=False, log=lambda _: None).best_path


def _finetune_run(tmp_path, pretrained, out, lora=LoRAConfig(rank=2)):
    speaker = tmp_path / "speaker.txt"
    speaker.write_text("All:\nSpeak, speak. Resolved, resolved.\n\n" * 30)
    return Run(model=CONFIG, train=TINY_TRAIN, speed=FAST, data=speaker, out=tmp_path / out,
               device="cpu", init_from=pretrained, lora=lora)


def test_a_lora_run_starts_from_the_checkpoint_and_resumes_exactly(tmp_path, pretrained):
    quiet = dict(progress=False, log=lambda _: None)
    whole = train_run(_finetune_run(tmp_path, pretrained, "a"), **quiet)

    def stop_at_10(state):
        if state.step == 10:
            raise KeyboardInterrupt

    run = _finetune_run(tmp_path, pretrained, "b")
    with pytest.raises(TrainingInterrupted):
        train_run(run, callbacks=[stop_at_10], **quiet)
    resumed = train_run(run, resume=True, **quiet)
    assert resumed.history.to_dict()["val_loss"] == whole.history.to_dict()["val_loss"]
    assert resumed.history.to_dict()["train_loss"] == whole.history.to_dict()["train_loss"]
    # best.pt: plain weights of the base model's shape, what `sample` reads as it is
    best = load_checkpoint(whole.best_path)
    assert not any("lora" in k for k in best.model_state)
    best.build_model()
    base = load_checkpoint(pretrained)
    assert best.tokenizer == base.tokenizer
    frozen = [k for k in best.model_state if "blocks" not in k]  # the embeddings, LayerNorm, lm_head
    assert all(torch.equal(best.model_state[k], base.model_state[k]) for k in frozen)
    last = load_checkpoint(whole.last_path)
    assert last.extra["lora"] == {"rank": 2, "alpha": 16.0} and last.resumable
    with pytest.raises(CheckpointError, match="sample its best.pt"):  # what `sample last.pt` says
        last.build_model()
    with pytest.raises(ConfigError, match="resume it as it was"):
        train_run(replace(run, lora=LoRAConfig(rank=4)), resume=True, **quiet)


def test_a_fine_tuning_model_starts_as_the_checkpoint(pretrained):
    """What train_run builds from ``init_from`` (weights loaded, fresh adapters) is the checkpoint's model."""
    base = load_checkpoint(pretrained)
    config = base.model_config
    idx = _idx() % config.vocab_size
    full = finetune.prepare(FastGPT(config), base, None).eval()
    torch.testing.assert_close(full(idx)[0], base.build_model()(idx)[0])  # readable vs fast kernels
    lora = finetune.prepare(FastGPT(config), base, LoRAConfig(rank=2)).eval()
    assert torch.equal(lora(idx)[0], full(idx)[0])


def _cli_error(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_init_from_bad_input_is_one_line(tmp_path, pretrained, capsys):
    ok = tmp_path / "ok.txt"
    ok.write_text("All:\nSpeak.\n\n" * 50)
    train = ["train", "--preset", "smoke", "--device", "cpu", "--sample-tokens", "0", "--out",
             str(tmp_path / "ft")]
    assert "no checkpoint at" in _cli_error(capsys, *train, "--init-from", str(tmp_path / "none.pt"),
                                            "--data", str(ok))
    for rank in ("0", "-2"):
        assert "LoRA rank" in _cli_error(capsys, *train, "--init-from", str(pretrained), "--data", str(ok),
                                         "--lora-rank", rank)
    assert not (tmp_path / "ft").exists()
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("Zoë: ¿qué?\n" * 50)
    result = subprocess.run([sys.executable, "-m", "gptlib", *train, "--init-from", str(pretrained),
                             "--data", str(wrong), "--lora-rank", "2"], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "'ë' (U+00EB)" in result.stderr and "'Z'" in result.stderr
    assert not (tmp_path / "ft").exists()  # nothing left behind


def test_a_fine_tuning_run_keeps_the_checkpoints_shape_and_tokenizer(tmp_path, pretrained):
    run = _finetune_run(tmp_path, pretrained, "s")
    with pytest.raises(ConfigError, match=r"n_embd \(checkpoint 16, asked 32\)"):
        train_run(replace(run, model=replace(CONFIG, n_embd=32)), progress=False, log=lambda _: None)
    with pytest.raises(ConfigError, match="tokenizer"):
        replace(run, tokenizer="bpe")
    assert not (tmp_path / "s").exists()
