"""The model for the browser: a readable `GPT`'s weights in one small binary file that
the book's JavaScript GPT (``gpt.js``, the page "Your GPT in the browser") reads; the caller chooses
where it goes (chapter 7 writes the book's into the book's static files).

The file::

    b"GPTB"           4 bytes, the magic
    version           uint32, little-endian (1)
    header length     uint32, little-endian: N bytes of UTF-8 JSON follow, padded with spaces to 8
    header            {"format": "gptlib-browser", "version": 1, "config": asdict(GPTConfig),
                       "vocab": the characters in id order, "dtype": "float16" or "int8",
                       "tensors": [{"name", "shape", "dtype", "offset", "scale"}, ...],
                       "source": {"step", "val_loss", "origin"} (those given)}
    tensors           raw, little-endian, each at ``offset`` bytes past the header, 8-byte aligned

Tensors keep the names of ``GPT.state_dict()`` (``blocks.0.sa.heads.1.query.weight``...), so the
JavaScript reads the same names as `gptlib.model`. Matrices are stored in ``dtype``; vectors (biases,
LayerNorm) stay float32, which costs a few kB. An int8 matrix is ``round(w / scale)`` with one scale
per tensor (max |w| / 127, rounded to float32); de-quantised it is ``q * scale`` in float32, in
Python and in JavaScript alike, so both read the same float32 weights.

Beside the file goes a small JSON "sidecar" (same name, ``.json``): its sha256, size, the measured
export error and where the weights came from, so the book can cite them.
"""

import hashlib
import json
import os
import struct
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from gptlib.checkpoint import load_weights
from gptlib.config import GPTConfig
from gptlib.errors import CheckpointError, ConfigError
from gptlib.fast import FastGPT, readable_from_fast
from gptlib.files import atomic_write, results_folder
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer

MAGIC = b"GPTB"
FORMAT = "gptlib-browser"
VERSION = 1
DTYPES = ("float16", "int8")
ERROR_PROMPTS = 4  # random sequences of block_size tokens (seed 0) on which the export error is measured
_PREFIX = struct.Struct("<4sII")  # magic, version, header length
_NUMPY = {"float16": np.float16, "int8": np.int8, "float32": np.float32}


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the sidecar JSON of the model file ``path`` goes: ``gpt-model.bin`` -> ``gpt-model.json``."""
    return Path(path).with_suffix(".json")


def _encode(w: torch.Tensor, dtype: str) -> tuple[bytes, str, float]:
    """One tensor -> (raw bytes, stored dtype, scale). Vectors stay float32; matrices go to ``dtype``."""
    w = w.detach().to("cpu", torch.float32).contiguous()
    if w.dim() < 2:
        return w.numpy().astype("<f4").tobytes(), "float32", 1.0
    if dtype == "float16":
        return w.numpy().astype("<f2").tobytes(), "float16", 1.0
    # int8: one symmetric scale per tensor; float32 so that q * scale rounds the same in JS and torch
    scale = float(np.float32(w.abs().max().item() / 127.0)) or 1.0
    q = torch.round(w / scale).clamp_(-127, 127).to(torch.int8)
    return q.numpy().tobytes(), "int8", scale


def _decode(raw: bytes, entry: dict) -> torch.Tensor:
    """Raw bytes of one table entry -> the float32 tensor the JavaScript computes with."""
    values = np.frombuffer(raw, dtype=np.dtype(_NUMPY[entry["dtype"]]).newbyteorder("<"))
    w = torch.from_numpy(values.astype(np.float32)).reshape(entry["shape"])
    if entry["dtype"] == "int8":
        w = w * torch.tensor(entry["scale"], dtype=torch.float32)  # float32 * float32, as in JS
    return w


def _readable_copy(model: nn.Module) -> GPT:
    """A copy of ``model`` as the readable `GPT` on the CPU, in eval mode (the caller's model stays
    where it is); a `FastGPT` gets its weights mapped back to the names the file keeps."""
    if isinstance(model, FastGPT):
        model = readable_from_fast(model)
    if not isinstance(model, GPT):
        raise ConfigError(f"export_for_browser needs a gptlib GPT (or FastGPT), got {type(model).__name__}")
    copy = GPT(model.config)
    copy.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()})
    return copy.eval()


def _export_bytes(model: GPT, tokenizer: CharTokenizer, dtype: str, source: dict) -> bytes:
    """The whole file, as bytes."""
    entries, blobs, offset = [], [], 0
    for name, w in model.state_dict().items():
        raw, stored, scale = _encode(w, dtype)
        entries.append({"name": name, "shape": list(w.shape), "dtype": stored, "offset": offset,
                        "scale": scale})
        pad = -len(raw) % 8  # the next tensor starts 8-byte aligned
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    header = {"format": FORMAT, "version": VERSION, "config": asdict(model.config),
              "vocab": list(tokenizer.chars), "dtype": dtype, "tensors": entries, "source": source}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(_PREFIX.size + len(text)) % 8)  # the tensors start 8-byte aligned
    return _PREFIX.pack(MAGIC, VERSION, len(text)) + text + b"".join(blobs)


def _parse(data: bytes, where: str = "the file") -> tuple[dict, dict[str, torch.Tensor]]:
    """File bytes -> (header, float32 state dict), with a `CheckpointError` for a file that is not one."""
    if len(data) < _PREFIX.size:
        raise CheckpointError(f"{where} is too short to be a browser model file ({len(data)} bytes)")
    magic, version, n = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"{where} is not a browser model file (no {MAGIC!r} marker); write one "
                              f"with gptlib.export.export_for_browser")
    if version != VERSION:
        raise CheckpointError(f"{where} is browser format version {version}; this gptlib reads {VERSION}")
    start = _PREFIX.size + n
    try:
        header = json.loads(data[_PREFIX.size:start].decode("utf-8"))
        state = {}
        for e in header["tensors"]:
            size = int(np.prod(e["shape"], dtype=np.int64)) * np.dtype(_NUMPY[e["dtype"]]).itemsize
            raw = data[start + e["offset"]:start + e["offset"] + size]
            if len(raw) != size:
                raise CheckpointError(f"{where} is truncated: tensor {e['name']} needs {size} bytes")
            state[e["name"]] = _decode(raw, e)
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{where} is damaged: {type(err).__name__}: {err}") from None
    return header, state


def load_browser_export(path: str | os.PathLike) -> tuple[GPT, CharTokenizer]:
    """The `GPT` (eval mode, CPU) and `CharTokenizer` rebuilt from a browser model file: the
    de-quantised float32 weights that ``gpt.js`` computes with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no browser model file at {path}; write one with "
                                f"gptlib.export.export_for_browser")
    header, state = _parse(path.read_bytes(), str(path))
    try:
        config = GPTConfig(**header["config"])
        tokenizer = CharTokenizer(header["vocab"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged: {err}") from None
    model = GPT(config)
    load_weights(model, state, tokenizer)
    return model.eval(), tokenizer


@torch.no_grad()
def export_error(model: GPT, rebuilt: GPT, n_prompts: int = ERROR_PROMPTS) -> float:
    """Max |logit difference| between ``model`` and ``rebuilt`` on ``n_prompts`` random sequences of
    ``block_size`` tokens (seed 0); both on the CPU in eval mode (no dropout)."""
    config = model.config
    idx = torch.randint(config.vocab_size, (n_prompts, config.block_size),
                        generator=torch.Generator().manual_seed(0))  # (n,T)
    reference, _ = model(idx)  # (n,T,V)
    logits, _ = rebuilt(idx)  # (n,T,V)
    return (logits - reference).abs().max().item()


BOOK_PRESET = "cpu"  # the preset the book's page is made for: its model fits the page in float16
EXPORT_NAME = "gpt-model.bin"


def browser_export_path(run_out: str | os.PathLike, preset: str, book: str | os.PathLike) -> Path:
    """Where chapter 7 writes a run's browser export: beside the run's checkpoints, or, when a
    maintainer asks for the book's own results (``GPTLIB_RESULTS`` is ``book``'s ``results``) and the
    run is the preset the page is made for, over the model the book's page samples (``book``'s
    ``_static``). A reader's run never writes into the book."""
    book = Path(book)
    if preset == BOOK_PRESET and results_folder().resolve() == (book / "results").resolve():
        return book / "_static" / EXPORT_NAME
    return Path(run_out) / EXPORT_NAME


def export_for_browser(model: nn.Module, tokenizer: CharTokenizer, path: str | os.PathLike,
                       dtype: str = "float16", step: int | None = None, val_loss: float | None = None,
                       origin: str | None = None) -> dict:
    """Write ``model`` (a `GPT` or `FastGPT`) and ``tokenizer`` to ``path`` for ``gpt.js``, and a
    sidecar JSON beside it; return what the sidecar says: sha256, bytes, the export error...

    ``dtype`` "float16" (the book's choice: 2 bytes a weight, logits within a few 1e-3 on the
    `cpu` preset's model) or "int8" (1 byte a weight, an error about 60x larger there).
    ``step`` and ``val_loss`` say which checkpoint this is, and ``origin`` which run made it
    (e.g. chapter 7's notebook); the page shows all three.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(tokenizer, CharTokenizer):
        raise ConfigError(f"the browser sampler reads characters: export_for_browser needs a "
                          f"CharTokenizer, got {type(tokenizer).__name__}")
    model = _readable_copy(model)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} characters but the model's "
                          f"vocab_size is {model.config.vocab_size}; export the model's own tokenizer")
    source = {k: cast(v) for k, v, cast in (("step", step, int), ("val_loss", val_loss, float),
                                            ("origin", origin, str)) if v is not None}
    data = _export_bytes(model, tokenizer, dtype, source)
    header, state = _parse(data)
    rebuilt = GPT(model.config)
    rebuilt.load_state_dict(state)
    info = {
        "file": Path(path).name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "dtype": dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": header["config"],
        "max_abs_logit_error": export_error(model, rebuilt.eval()),  # both float32 on the CPU
        "error_measured_on": f"{ERROR_PROMPTS} random sequences of {model.config.block_size} tokens "
                             f"(seed 0): the float32 model vs the model rebuilt from the file",
        **source,
    }
    with atomic_write(path) as f:
        f.write(data)
    with atomic_write(sidecar_path(path)) as f:
        f.write((json.dumps(info, indent=1) + "\n").encode("utf-8"))
    return info
