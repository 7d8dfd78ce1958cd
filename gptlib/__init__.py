"""gptlib: the GPT that the book "GPT from Scratch" builds, one module per chapter's concept.

In book order:

- `gptlib.data` (ch. 1): download and verify Tiny Shakespeare
- `gptlib.tokenizer` (ch. 1): `CharTokenizer`
- `gptlib.batches` (ch. 1): `train_val_split`, `get_batch`
- `gptlib.bigram` (ch. 2): `BigramLanguageModel`
- `gptlib.training` (ch. 2): `estimate_loss`, `train`
- `gptlib.sampling` (ch. 2): `generate`, `sample_text`
- `gptlib.attention` (ch. 3): `Head`, `MultiHeadAttention`
- `gptlib.model` (ch. 4-5): `FeedForward`, `Block`, `GPT`
- `gptlib.fast` (ch. 6): `CausalSelfAttention`, `FastGPT`, the weight mapping to and from `GPT`
- `gptlib.speed` (ch. 6): `SpeedConfig`, `speed_plan`, `build_model`
- `gptlib.kvcache` (ch. 6): `KVCache`, `generate_cached`
- `gptlib.bench` (ch. 6): ``python -m gptlib bench``
- `gptlib.attention_maps` (ch. 7): `attention_maps`, every head's weights for a prompt
- `gptlib.run` (ch. 7): `Run`, `train_run`, `load_corpus`: one training run, from the data to the checkpoints
- `gptlib.widgets` (ch. 7): `sampler_widget`
- `gptlib.export` (ch. 7-8): `export_for_browser`, the model file the book's JavaScript GPT runs
- `gptlib.distributed` ("Training on more than one GPU"): torchrun and DDP, `from_env`, `split_batch`
- `gptlib.config`, `gptlib.presets`: `GPTConfig`, `TrainConfig`, the named presets
- `gptlib.checkpoint`, `gptlib.device`, `gptlib.errors`, `gptlib.cli`
"""

from gptlib.attention import Head, MultiHeadAttention
from gptlib.attention_maps import attention_maps
from gptlib.batches import get_batch, train_val_split
from gptlib.bigram import BigramLanguageModel
from gptlib.checkpoint import load_checkpoint, save_checkpoint
from gptlib.config import GPTConfig, TrainConfig
from gptlib.data import load_text
from gptlib.device import pick_device
from gptlib.errors import GPTLibError
from gptlib.fast import CausalSelfAttention, FastGPT, fast_to_readable, readable_to_fast
from gptlib.kvcache import KVCache, generate_cached
from gptlib.model import GPT, Block, FeedForward, count_parameters
from gptlib.presets import PRESETS, Preset, auto_preset, choose, get_preset
from gptlib.run import Corpus, Run, RunResult, load_corpus, train_run
from gptlib.sampling import generate, iter_generate, sample_text
from gptlib.speed import READABLE, SpeedConfig, build_model, speed_plan
from gptlib.tokenizer import CharTokenizer
from gptlib.training import History, TrainState, estimate_loss, train
from gptlib.widgets import sampler_widget

__version__ = "0.1.0"

__all__ = [
    "BigramLanguageModel", "Block", "CausalSelfAttention", "CharTokenizer", "Corpus", "FastGPT", "FeedForward",
    "GPT", "GPTConfig", "GPTLibError", "Head", "History", "KVCache", "MultiHeadAttention", "PRESETS", "Preset",
    "READABLE", "Run", "RunResult", "SpeedConfig", "TrainConfig", "TrainState", "attention_maps",
    "auto_preset", "build_model", "choose", "count_parameters", "estimate_loss", "fast_to_readable",
    "generate", "generate_cached", "get_batch", "get_preset", "iter_generate", "load_checkpoint",
    "load_corpus", "load_text", "pick_device", "readable_to_fast", "sample_text", "sampler_widget",
    "save_checkpoint", "speed_plan", "train", "train_run", "train_val_split",
]
