"""gptlib: the GPT that the book "GPT from Scratch" builds, one module per concept, which the chapters
build inline, check against it, then import (docs/layout.md: the modules in book order)."""

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
    "BigramLanguageModel", "Block", "CausalSelfAttention", "CharTokenizer", "Corpus", "FastGPT",
    "FeedForward", "GPT", "GPTConfig", "GPTLibError", "Head", "History", "KVCache", "MultiHeadAttention",
    "PRESETS", "Preset", "READABLE", "Run", "RunResult", "SpeedConfig", "TrainConfig", "TrainState",
    "attention_maps", "auto_preset", "build_model", "choose", "count_parameters", "estimate_loss",
    "fast_to_readable", "generate", "generate_cached", "get_batch", "get_preset", "iter_generate",
    "load_checkpoint", "load_corpus", "load_text", "pick_device", "readable_to_fast", "sample_text",
    "sampler_widget", "save_checkpoint", "speed_plan", "train", "train_run", "train_val_split",
]
