"""Checkpoints and exact resume: N steps straight equal N/2 steps, save, resume into fresh objects, N/2 more.

Dropout is on, so the result depends on torch's global random state as well as on the batch
generator: an exact match means every random state was saved and restored.

Run: pytest tests/test_checkpoint.py
"""

import math
from dataclasses import asdict

import pytest
import torch

from gptlib.batches import train_val_split
from gptlib.checkpoint import (atomic_save, load_checkpoint, remove_stale_temp_files, resume_training_state,
                               save_checkpoint, save_training_state)
from gptlib.config import GPTConfig, TrainConfig
from gptlib.errors import CheckpointError
from gptlib.model import GPT
from gptlib.training import History, TrainState, make_generators, make_optimizer, train

# Warm-up, cosine decay, weight decay and clipping all on, so the resumed schedule is checked too.
CONFIG = TrainConfig(batch_size=4, max_iters=24, eval_interval=6, eval_iters=2, learning_rate=1e-2,
                     min_lr=1e-3, warmup_iters=4, decay_lr=True, weight_decay=0.1, grad_clip=1.0, seed=3)



@pytest.fixture
def setup(tokenizer, data):
    """A tiny GPT config with dropout, and the train/val split of the shared test text."""
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1,
                       dropout=0.2)
    return config, *train_val_split(data)


def fresh_model(config: GPTConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(config)


def train_from_scratch(setup, **kwargs) -> TrainState:
    """Train a fresh seed-0 model of ``setup`` with CONFIG (kwargs go to `train`, e.g. callbacks)."""
    config, train_data, val_data = setup
    return train(fresh_model(config, 0), train_data, val_data, CONFIG, block_size=config.block_size,
                 progress=False, **kwargs)


def stop_at(step: int):
    """A callback that ends training after the evaluation at ``step``."""
    def callback(state):
        if state.step == step:
            state.stop = True
    return callback


def losses(state) -> tuple[list, list]:
    return state.history.train_loss, state.history.val_loss


def test_resume_is_exact(tmp_path, setup, tokenizer):
    config, train_data, val_data = setup
    straight = train_from_scratch(setup)

    first = train_from_scratch(setup, callbacks=[stop_at(12)])
    assert first.step == 12
    path = save_training_state(tmp_path / "last.pt", first, tokenizer, config)
    torch.rand(1000)  # draw from the global RNG, as anything between save and resume might
    del first

    model = fresh_model(config, 99)  # different initial weights: resuming must overwrite them all
    state = resume_training_state(path, model)
    assert state.step == 12 and state.config == CONFIG
    resumed = train(model, train_data, val_data, CONFIG, block_size=config.block_size, state=state,
                    progress=False)

    assert resumed.history.step == straight.history.step == [6, 12, 18, 24]
    assert losses(resumed) == losses(straight)  # exact floats, not approx
    assert resumed.history.lr == straight.history.lr
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_without_the_rng_states_differs(tmp_path, setup, tokenizer):
    """The control: with dropout on, restoring weights and optimizer alone is not enough."""
    config, train_data, val_data = setup
    straight = train_from_scratch(setup)
    first = train_from_scratch(setup, callbacks=[stop_at(12)])
    path = save_training_state(tmp_path / "last.pt", first, tokenizer, config)
    model = fresh_model(config, 0)
    state = resume_training_state(path, model)
    torch.manual_seed(12345)  # the global RNG (dropout) no longer where it was at the save
    resumed = train(model, train_data, val_data, CONFIG, block_size=config.block_size, state=state,
                    progress=False)
    assert resumed.history.val_loss[:2] == straight.history.val_loss[:2]  # before the resume: same
    assert resumed.history.train_loss[2:] != straight.history.train_loss[2:]


def test_checkpoint_holds_the_documented_entries(tmp_path, setup, tokenizer):
    config = setup[0]
    state = train_from_scratch(setup, callbacks=[stop_at(6)])
    save_training_state(tmp_path / "last.pt", state, tokenizer, config, extra={"note": "mine"})
    # weights_only=True: everything in it is plain data that loads without running code.
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    assert payload["format"] == "gptlib-checkpoint" and payload["step"] == 6
    assert payload["model_config"] == asdict(config) and payload["train_config"] == asdict(CONFIG)
    assert payload["vocab"] == tokenizer.chars
    extra = payload["extra"]
    assert extra["note"] == "mine"
    assert extra["best_val_loss"] == min(extra["history"]["val_loss"])
    assert set(extra["rng"]) == {"torch", "cuda", "batch", "eval", "batch_device"}
    assert torch.equal(extra["rng"]["batch"], state.batch_generator.get_state())
    assert len(extra["optimizer"]["state"]) == len(list(state.model.parameters()))

    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.resumable and ckpt.tokenizer == tokenizer and ckpt.train_config == CONFIG


def test_weights_only_checkpoint_is_not_resumable(tmp_path, setup, tokenizer):
    config, _, _ = setup
    model = fresh_model(config, 0)
    save_checkpoint(tmp_path / "best.pt", model, tokenizer, config, CONFIG, step=5)
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert not ckpt.resumable
    with pytest.raises(CheckpointError, match="weights only"):
        resume_training_state(ckpt, fresh_model(config, 0))
    # "can it be resumed" is checked in one place, the reader, with one message naming the file
    message = f"{tmp_path / 'best.pt'} holds weights only, not a training state, so it cannot be resumed"
    for read in (lambda: load_checkpoint(tmp_path / "best.pt", resumable=True),
                 lambda: resume_training_state(tmp_path / "best.pt", fresh_model(config, 0))):
        with pytest.raises(CheckpointError) as info:
            read()
        assert str(info.value) == message
    rebuilt = ckpt.build_model()
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(a, b)


class Unpicklable:
    """An object whose save fails half-way through writing the file."""

    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_atomic_save_keeps_the_old_file_when_the_save_fails(tmp_path):
    path = atomic_save({"version": 1}, tmp_path / "c.pt")
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"version": 2, "weights": torch.ones(1000), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # the temp file was removed


def test_stale_temp_files_are_removed_and_only_those(tmp_path):
    atomic_save({"x": 1}, tmp_path / "last.pt")
    stale = [tmp_path / ".last.pt.abc123_x.tmp", tmp_path / ".best.pt.zz.tmp"]
    keep = [tmp_path / "notes.tmp", tmp_path / ".last.pt.backup", tmp_path / "last.pt"]
    for p in stale + keep[:2]:
        p.write_bytes(b"half a checkpoint")
    assert remove_stale_temp_files(tmp_path / "last.pt") == [stale[0]]
    assert remove_stale_temp_files(tmp_path / "best.pt") == [stale[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)
    assert remove_stale_temp_files(tmp_path / "missing" / "last.pt") == []


def test_best_val_loss_of_an_empty_history_round_trips(tmp_path, setup, tokenizer):
    """A state saved before any evaluation (best val loss inf) still saves and resumes."""
    config, train_data, val_data = setup
    model = fresh_model(config, 0)
    state = TrainState(model, make_optimizer(model, CONFIG), CONFIG, 0, History(), *make_generators(CONFIG.seed))
    save_training_state(tmp_path / "s.pt", state, tokenizer, config)
    assert math.isinf(load_checkpoint(tmp_path / "s.pt").extra["best_val_loss"])
    resumed = resume_training_state(tmp_path / "s.pt", fresh_model(config, 1))
    assert resumed.step == 0 and len(resumed.history) == 0


@pytest.mark.parametrize("damage", ["generator state", "optimizer of another model"])
def test_damaged_training_state_is_a_checkpoint_error(tmp_path, setup, tokenizer, damage):
    config = setup[0]
    state = train_from_scratch(setup, callbacks=[stop_at(6)])
    save_training_state(tmp_path / "last.pt", state, tokenizer, config)
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    if damage == "generator state":
        payload["extra"]["rng"]["batch"] = "not a generator state"
    else:
        payload["extra"]["optimizer"]["param_groups"][0]["params"].pop()  # one parameter short
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match="training state is damaged"):
        resume_training_state(tmp_path / "damaged.pt", fresh_model(config, 0))


def test_an_interrupt_mid_save_stays_an_interrupt(tmp_path, monkeypatch):
    """Ctrl-C while torch writes the zip: its writer, closing, raises a RuntimeError ("unexpected pos")
    that hides the interrupt (a traceback in CI). The interrupt must come out, and the file that was
    there stays as it was (the CLI then prints its one line, exit 130)."""
    path = tmp_path / "last.pt"
    atomic_save({"step": 1}, path)

    def save_interrupted(obj, f):  # what torch.save does when Ctrl-C lands mid-write
        f.write(b"PK partial")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", save_interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
