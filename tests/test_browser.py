"""The model in the page: `gptlib.export` writes a file, `book/_static/gpt.js` runs it under Node, and
both must compute what torch computes on the same (de-quantised) weights.

Run: pytest tests/test_browser.py    (the JavaScript tests skip, saying why, where `node` is absent)
"""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from gptlib.attention_maps import attention_maps
from gptlib.config import GPTConfig
from gptlib.errors import CheckpointError, ConfigError
from gptlib.export import export_for_browser, load_browser_export, sidecar_path

# The model file the book ships (chapter 7 writes it; the library names no book folder).
BOOK_MODEL_PATH = Path(__file__).resolve().parent.parent / "book" / "_static" / "gpt-model.bin"
from gptlib.fast import fast_from_readable
from gptlib.kvcache import generate_cached
from gptlib.model import GPT
from gptlib.presets import get_preset
from gptlib.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
RUNNER = ROOT / "tests" / "gpt_node.js"
MAX_BYTES = 2 * 1024 * 1024  # the most a file shipped with the book may weigh (issue 14)
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (`node` is not on PATH): "
                                "the JavaScript model cannot be run; install Node to run these tests")


def _model(tokenizer, block_size=16, seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_embd=32, n_head=4,
                       n_layer=2, dropout=0.0)
    model = GPT(config)
    with torch.no_grad():  # larger weights than the init: logits far from ties, sharp attention
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    return model.eval()


def _node(request: dict) -> dict:
    """Run tests/gpt_node.js on ``request`` (see that file) and return its answer."""
    done = subprocess.run([NODE, str(RUNNER)], input=json.dumps(request), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(params=["float16", "int8"])
def exported(request, tmp_path, tokenizer):
    """A tiny model exported in each dtype: (path, the sidecar's numbers, the model, the tokenizer)."""
    model = _model(tokenizer)
    path = tmp_path / "gpt-model.bin"
    info = export_for_browser(model, tokenizer, path, dtype=request.param, step=12, val_loss=2.5)
    return path, info, model, tokenizer


# --- the file, in Python ---

def test_round_trip_rebuilds_the_model_within_the_measured_error(exported):
    path, info, model, tokenizer = exported
    rebuilt, tok = load_browser_export(path)
    assert tok == tokenizer and rebuilt.config == model.config
    idx = torch.randint(tokenizer.vocab_size, (4, model.config.block_size),
                        generator=torch.Generator().manual_seed(0))  # the contexts the export measures on
    with torch.no_grad():
        diff = (rebuilt(idx)[0] - model(idx)[0]).abs().max().item()
    assert diff == info["max_abs_logit_error"]
    assert 0 < diff < (0.05 if info["dtype"] == "float16" else 0.5)  # rounded, but not lost
    for name, w in model.state_dict().items():  # vectors are stored exactly; matrices rounded
        if w.dim() < 2:
            assert torch.equal(rebuilt.state_dict()[name], w), name


def test_sidecar_cites_the_file(exported):
    path, info, model, _ = exported
    data = path.read_bytes()
    assert json.loads(sidecar_path(path).read_text()) == info
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["bytes"] == len(data)
    assert info["step"] == 12 and info["val_loss"] == 2.5
    assert info["parameters"] == sum(p.numel() for p in model.parameters())


def test_export_takes_a_fast_model_and_leaves_it_alone(tmp_path, tokenizer):
    model = _model(tokenizer)
    fast = fast_from_readable(model).train()
    a = export_for_browser(model, tokenizer, tmp_path / "a.bin")
    b = export_for_browser(fast, tokenizer, tmp_path / "b.bin")
    assert a["sha256"] == b["sha256"]  # the same weights, under the readable model's names
    assert fast.training and next(fast.parameters()).device.type == "cpu"


def test_the_cpu_preset_fits_the_books_budget_in_float16_not_in_float32(tmp_path):
    config = get_preset("cpu").with_vocab(65).model  # the model chapter 7 trains on a CPU
    tokenizer = CharTokenizer([chr(32 + i) for i in range(65)])
    info = export_for_browser(GPT(config), tokenizer, tmp_path / "m.bin")
    assert info["bytes"] <= MAX_BYTES
    assert 4 * info["parameters"] > MAX_BYTES  # float32 would not fit: why the book stores float16


@pytest.mark.parametrize("damage", ["magic", "truncated", "header"])
def test_a_damaged_file_is_a_clear_error(exported, damage):
    path = exported[0]
    data = bytearray(path.read_bytes())
    if damage == "magic":
        data[:4] = b"PK\x03\x04"
    elif damage == "truncated":
        data = data[:len(data) // 2]
    else:
        data[12:14] = b"\xff\xfe"  # the JSON header no longer decodes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_browser_export(path)


def test_bad_arguments_are_clear_errors(tmp_path, tokenizer):
    model = _model(tokenizer)
    with pytest.raises(ConfigError, match="dtype"):
        export_for_browser(model, tokenizer, tmp_path / "m.bin", dtype="bfloat16")
    with pytest.raises(ConfigError, match="vocab_size"):
        export_for_browser(model, CharTokenizer("abc"), tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


# --- the file the book ships ---

def test_the_books_model_file_matches_its_sidecar_and_budget():
    if not BOOK_MODEL_PATH.exists():
        pytest.skip(f"{BOOK_MODEL_PATH} is not there yet: chapter 7 writes it (cpu preset)")
    data = BOOK_MODEL_PATH.read_bytes()
    info = json.loads(sidecar_path(BOOK_MODEL_PATH).read_text())
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["bytes"] == len(data)
    model, tokenizer = load_browser_export(BOOK_MODEL_PATH)
    assert info["config"] == vars(model.config) and info["dtype"] == "float16"
    for f in (ROOT / "book" / "_static").rglob("*"):
        assert f.stat().st_size <= MAX_BYTES, f"{f} is over the book's 2 MB budget"


# --- the JavaScript, against torch ---

@needs_node
def test_javascript_reads_the_same_weights_bit_for_bit(exported):
    path, _, _, _ = exported
    rebuilt, _ = load_browser_export(path)
    answer = _node({"model": str(path), "weights": True})
    state = rebuilt.state_dict()
    assert set(answer["weights"]) == set(state)
    for name, w in state.items():
        assert torch.equal(torch.tensor(answer["weights"][name]).reshape(w.shape), w), name


@needs_node
def test_javascript_logits_and_attention_equal_torch(exported):
    path, _, _, tokenizer = exported
    rebuilt, _ = load_browser_export(path)
    prompts = ["First Citizen:", "All:\nSpeak.", "r"]  # up to block_size 16
    ids = [tokenizer.encode(p) for p in prompts]
    answer = _node({"model": str(path), "prompts": ids})
    for prompt, got in zip(ids, answer["forward"]):
        idx = torch.tensor([prompt])
        with torch.no_grad():
            logits, _ = rebuilt(idx)  # (1,T,V)
        js = torch.tensor(got["logits"])  # (T,V)
        assert (js - logits[0]).abs().max().item() <= 1e-4
        maps = attention_maps(rebuilt, idx)[:, :, -1, :]  # (L,nh,T): the last position's weights
        assert (torch.tensor(got["attention"]) - maps).abs().max().item() <= 1e-5


@needs_node
@pytest.mark.parametrize("prompt_len", [3, 16, 20])  # a prompt that fits, fills, or overflows the block
def test_javascript_greedy_generation_equals_the_kv_cache_rule(exported, prompt_len):
    path, _, _, tokenizer = exported
    rebuilt, _ = load_browser_export(path)
    prompt = tokenizer.encode(("First Citizen:\nBefore we proceed")[:prompt_len])
    n = 50  # past block_size 16 several times: several re-prefills
    answer = _node({"model": str(path), "generate": [
        {"prompt": prompt, "options": {"maxNewTokens": n, "temperature": 0}},
        {"prompt": prompt, "options": {"maxNewTokens": n, "temperature": 0.7, "topK": 1, "seed": 5}},
    ]})
    expected = generate_cached(rebuilt, torch.tensor([prompt]), n, temperature=0)[0, len(prompt):].tolist()
    greedy, top1 = answer["generate"]
    assert greedy["ids"] == expected
    assert top1["ids"] == expected  # top-k 1 leaves one token to draw, whatever the seed
    # the context each step read: it grows to block_size, then restarts from the last block_size // 2
    lengths, length = [], min(prompt_len, 16)
    for _ in range(n):
        lengths.append(length)
        length = length + 1 if length < 16 else 8
    assert [len(c) for c in greedy["contexts"]] == lengths
    assert greedy["contexts"][-1] == (prompt + expected)[-lengths[-1] - 1:-1]


@needs_node
def test_javascript_sampling_is_seeded_and_follows_top_k(exported):
    path, _, _, tokenizer = exported
    prompt = tokenizer.encode("All:\n")
    options = {"maxNewTokens": 40, "temperature": 1.0, "topK": 3}
    runs = [{"prompt": prompt, "options": {**options, "seed": seed}} for seed in (1, 1, 2)]
    runs += [{"prompt": prompt, "options": {**options, "maxNewTokens": 1, "seed": s}} for s in range(30)]
    answer = _node({"model": str(path), "prompts": [prompt], "generate": runs})
    same, again, other, *firsts = [g["ids"] for g in answer["generate"]]
    assert same == again and same != other
    top3 = torch.tensor(answer["forward"][0]["logits"][-1]).topk(3).indices.tolist()
    assert {f[0] for f in firsts} <= set(top3) and len({f[0] for f in firsts}) > 1


@needs_node
def test_javascript_rejects_bad_input_with_a_message(exported):
    path = exported[0]
    answer = _node({"model": str(path), "errors": [
        {"text": "Café", "options": {}}, {"text": "", "options": {}},
        {"text": "All", "options": {"temperature": -1}}, {"text": "All", "options": {"topK": 0}},
        {"text": "All", "options": {"maxNewTokens": 2.5}}, {"text": "All", "options": {"seed": 0.5}},
        {"text": "All", "options": {"maxNewTokens": 3}},
    ]})
    *errors, ok = answer["errors"]
    assert "'é'" in errors[0] or '"é"' in errors[0]
    assert "empty" in errors[1] and "temperature" in errors[2] and "top-k" in errors[3]
    assert "length" in errors[4] and "seed" in errors[5]
    assert ok is None
