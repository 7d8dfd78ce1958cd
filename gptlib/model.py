"""The transformer: `FeedForward`, `Block` and the `GPT` language model, read top to bottom.

Shapes: B = batch, T = time, C = channels (n_embd), V = vocabulary size."""

from collections.abc import Callable

import torch
import torch.nn as nn

from gptlib.attention import MultiHeadAttention
from gptlib.bigram import lm_loss
from gptlib.config import GPTConfig
from gptlib.errors import ConfigError
from gptlib.init import init_weights


class FeedForward(nn.Module):
    """A per-token MLP: after the tokens have talked (attention), each one thinks on its own."""

    def __init__(self, config: GPTConfig, dropout: Callable[[float], nn.Module] = nn.Dropout):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),  # 4x wider inside, as in "Attention Is All You Need"
            nn.ReLU(),
            nn.Linear(4 * config.n_embd, config.n_embd),  # projection back into the residual stream
            dropout(config.dropout),  # `gptlib.fast` passes its cheaper `FastDropout`
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B,T,C) -> (B,T,C), each token on its own


class Block(nn.Module):
    """Transformer block: communication (attention) followed by computation (feed-forward)."""

    def __init__(self, config: GPTConfig, sa: nn.Module | None = None, ffwd: nn.Module | None = None):
        super().__init__()
        self.sa = MultiHeadAttention(config) if sa is None else sa  # `FastBlock` passes its own two
        self.ffwd = FeedForward(config) if ffwd is None else ffwd
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C), pre-norm (GPT-2); the residual additions pass gradients straight down."""
        x = x + self.sa(self.ln1(x))  # (B,T,C)
        x = x + self.ffwd(self.ln2(x))  # (B,T,C)
        return x


class LanguageModel(nn.Module):
    """Token and position embeddings, then a subclass's layers and ``lm_head`` (the GPT, the rungs)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        # Attention sees a set, not a sequence: a learned vector per position says where a token is.
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``idx`` (B,T), its first token at position ``start`` -> token + position embeddings (B,T,C)."""
        tok_emb = self.token_embedding_table(idx)  # (B,T) -> (B,T,C)
        pos = torch.arange(start, start + idx.shape[1], device=idx.device)  # (T,)
        return tok_emb + self.position_embedding_table(pos)  # (B,T,C) + (T,C), broadcast over the batch


class GPT(LanguageModel):
    """A decoder-only transformer language model over characters."""

    def __init__(self, config: GPTConfig, block: Callable[[GPTConfig], nn.Module] = Block):
        super().__init__(config)  # the token and position embedding tables
        self.blocks = nn.Sequential(*[block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)  # final LayerNorm, as GPT-2 adds after the last block
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        self.apply(init_weights)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """``idx`` (B,T) token ids -> logits (B,T,V) and the loss if ``targets`` (B,T) is given."""
        if idx.shape[1] > self.block_size:
            raise ConfigError(f"{idx.shape[1]} tokens exceed block_size {self.block_size}: crop the context")
        x = self.embed(idx)  # (B,T) -> (B,T,C)
        x = self.blocks(x)  # (B,T,C)
        x = self.ln_f(x)  # (B,T,C)
        logits = self.lm_head(x)  # (B,T,C) -> (B,T,V)
        loss = None if targets is None else lm_loss(logits, targets)
        return logits, loss


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
