"""The model for the browser: a readable `GPT`'s weights in one small file that ``gpt.js`` reads.

b"GPTB", version (1) and header length N (little-endian uint32); N bytes of JSON (config, vocab, dtype,
source, each tensor's name, shape, dtype, offset, scale) padded to 8 bytes; the tensors of ``state_dict()``,
8-byte aligned. Matrices in float16 or int8 (``q * scale``, a float32 scale per tensor), vectors in float32.
A JSON sidecar (``.json``) gives the file's sha256, size, measured export error and origin."""

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
from gptlib.files import atomic_write, results_folder
from gptlib.model import GPT, count_parameters
from gptlib.tokenizer import CharTokenizer

MAGIC = b"GPTB"
FORMAT = "gptlib-browser"
VERSION = 1
DTYPES = ("float16", "int8")
ERROR_PROMPTS = 4  # random sequences of block_size tokens (seed 0) on which the export error is measured
_PREFIX = struct.Struct("<4sII")  # magic, version, header length
_NUMPY = {"float16": np.dtype("<f2"), "int8": np.dtype("i1"), "float32": np.dtype("<f4")}  # little-endian
BOOK_PRESET = "cpu"  # the preset the book's page is made for: its model fits the page in float16
EXPORT_NAME = "gpt-model.bin"


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the sidecar JSON of the model file ``path`` goes: ``gpt-model.bin`` -> ``gpt-model.json``."""
    return Path(path).with_suffix(".json")


def _encode(w: torch.Tensor, dtype: str) -> tuple[bytes, str, float]:
    """One tensor -> (raw bytes, stored dtype, scale). Vectors stay float32; matrices go to ``dtype``."""
    w = w.detach().to("cpu", torch.float32).contiguous()
    if w.dim() < 2 or dtype == "float16":
        stored = "float16" if w.dim() > 1 else "float32"
        return w.numpy().astype(_NUMPY[stored]).tobytes(), stored, 1.0
    # int8: one symmetric scale per tensor; float32 so that q * scale rounds the same in JS and torch
    scale = float(np.float32(w.abs().max().item() / 127.0)) or 1.0
    q = torch.round(w / scale).clamp_(-127, 127).to(torch.int8)
    return q.numpy().tobytes(), "int8", scale


def _export_bytes(model: GPT, tokenizer: CharTokenizer, dtype: str, source: dict) -> bytes:
    entries, blobs, offset = [], [], 0
    for name, w in model.state_dict().items():
        raw, stored, scale = _encode(w, dtype)
        entries.append({"name": name, "shape": [*w.shape], "dtype": stored, "offset": offset, "scale": scale})
        blobs.append(raw + b"\0" * (-len(raw) % 8))  # the next tensor starts 8-byte aligned
        offset += len(blobs[-1])
    header = {"format": FORMAT, "version": VERSION, "config": asdict(model.config),
              "vocab": list(tokenizer.chars), "dtype": dtype, "tensors": entries, "source": source}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(_PREFIX.size + len(text)) % 8)  # the tensors start 8-byte aligned
    return _PREFIX.pack(MAGIC, VERSION, len(text)) + text + b"".join(blobs)


def _parse(data: bytes, where: str = "the file") -> tuple[dict, dict[str, torch.Tensor]]:
    """File bytes -> (header, float32 state dict), with a `CheckpointError` for a file that is not one."""
    if data[:4] != MAGIC:
        raise CheckpointError(f"{where} is not a browser model file (no {MAGIC!r} marker); write one "
                              f"with gptlib.export.export_for_browser")
    try:
        _, version, n = _PREFIX.unpack_from(data)
        if version != VERSION:
            raise CheckpointError(f"{where} is browser format version {version}; this gptlib reads {VERSION}")
        start = _PREFIX.size + n
        header, state = json.loads(data[_PREFIX.size:start].decode("utf-8")), {}
        for e in header["tensors"]:
            dtype = _NUMPY[e["dtype"]]
            size = int(np.prod(e["shape"], dtype=np.int64)) * dtype.itemsize
            raw = data[start + e["offset"]:start + e["offset"] + size]
            if len(raw) != size:
                raise CheckpointError(f"{where} is truncated: tensor {e['name']} needs {size} bytes")
            w = torch.from_numpy(np.frombuffer(raw, dtype=dtype).astype(np.float32)).reshape(e["shape"])
            state[e["name"]] = w * torch.tensor(e["scale"], dtype=torch.float32)  # float32 x float32 as in JS
        return header, state
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, struct.error) as err:  # incl. JSON and UTF-8 errors
        raise CheckpointError(f"{where} is damaged: {type(err).__name__}: {err}") from None


def load_browser_export(path: str | os.PathLike) -> tuple[GPT, CharTokenizer]:
    """The `GPT` (eval mode, CPU) and `CharTokenizer` of a browser model file, de-quantised as gpt.js does."""
    header, state = _parse(Path(path).read_bytes(), str(path))
    model, tokenizer = GPT(GPTConfig(**header["config"])), CharTokenizer(header["vocab"])
    load_weights(model, state, tokenizer)
    return model.eval(), tokenizer


@torch.no_grad()
def export_error(model: GPT, rebuilt: GPT, n_prompts: int = ERROR_PROMPTS) -> float:
    """Max |logit difference| of ``model`` and ``rebuilt`` on ``n_prompts`` random block-long sequences."""
    idx = torch.randint(model.config.vocab_size, (n_prompts, model.config.block_size),
                        generator=torch.Generator().manual_seed(0))  # (n,T)
    return (rebuilt(idx)[0] - model(idx)[0]).abs().max().item()  # (n,T,V) logits


def browser_export_path(run_out: str | os.PathLike, preset: str, book: str | os.PathLike) -> Path:
    """Where chapter 7 writes a run's browser export: beside the run's checkpoints; over the book's own
    model (``book/_static``) only for the page's preset when ``GPTLIB_RESULTS`` is ``book/results``."""
    over_book = preset == BOOK_PRESET and results_folder().resolve() == (Path(book) / "results").resolve()
    return (Path(book) / "_static" if over_book else Path(run_out)) / EXPORT_NAME


def export_for_browser(model: nn.Module, tokenizer: CharTokenizer, path: str | os.PathLike,
                       dtype: str = "float16", step: int | None = None, val_loss: float | None = None,
                       origin: str | None = None) -> dict:
    """Write ``model`` (a `GPT` or `FastGPT`) and ``tokenizer`` to ``path`` for ``gpt.js`` in ``dtype``
    (`DTYPES`), and the sidecar beside it; returns the sidecar dict. The page shows step, val_loss, origin."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(tokenizer, CharTokenizer):
        raise ConfigError(f"the page reads characters: pass a CharTokenizer, not {type(tokenizer).__name__}")
    if not isinstance(model, GPT):  # a FastGPT is one, and its state_dict is in the readable layout
        raise ConfigError(f"export_for_browser needs a gptlib GPT (or FastGPT), got {type(model).__name__}")
    copy = GPT(model.config)  # on the CPU, in float32
    copy.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()})
    model = copy.eval()
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} characters but the model's "
                          f"vocab_size is {model.config.vocab_size}; export the model's own tokenizer")
    source = {k: cast(v) for k, v, cast in (("step", step, int), ("val_loss", val_loss, float),
                                            ("origin", origin, str)) if v is not None}
    data = _export_bytes(model, tokenizer, dtype, source)
    rebuilt = GPT(model.config)
    rebuilt.load_state_dict(_parse(data)[1])
    info = {"file": Path(path).name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "dtype": dtype, "parameters": count_parameters(model),
            "config": asdict(model.config), "max_abs_logit_error": export_error(model, rebuilt.eval()),
            "error_measured_on": f"{ERROR_PROMPTS} random sequences of {model.config.block_size} tokens "
                                 f"(seed 0): the float32 model vs the model rebuilt from the file", **source}
    for target, content in (path, data), (sidecar_path(path), (json.dumps(info, indent=1) + "\n").encode()):
        with atomic_write(target) as f:
            f.write(content)
    return info
