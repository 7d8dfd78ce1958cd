"""The transformer: `FeedForward`, `Block` and the `GPT` language model, read top to bottom.

Shapes: B = batch, T = time, C = channels (n_embd), V = vocabulary size.
"""

import torch
import torch.nn as nn

from gptlib.attention import MultiHeadAttention
from gptlib.bigram import lm_loss
from gptlib.config import GPTConfig
from gptlib.errors import ConfigError
from gptlib.init import init_weights


class FeedForward(nn.Module):
    """A per-token MLP: after the tokens have talked (attention), each one thinks on its own."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),  # 4x wider inside, as in "Attention Is All You Need"
            nn.ReLU(),
            nn.Linear(4 * config.n_embd, config.n_embd),  # projection back into the residual stream
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C)."""
        return self.net(x)


class Block(nn.Module):
    """Transformer block: communication (attention) followed by computation (feed-forward)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.sa = MultiHeadAttention(config)
        self.ffwd = FeedForward(config)
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C). Pre-norm (as in GPT-2), and each sub-layer adds to a residual stream,
        so gradients flow straight from the loss to the first layers."""
        x = x + self.sa(self.ln1(x))  # (B,T,C)
        x = x + self.ffwd(self.ln2(x))  # (B,T,C)
        return x


class GPT(nn.Module):
    """A decoder-only transformer language model over characters."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        # Attention sees a set, not a sequence: a learned vector per position says where a token is.
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)  # final LayerNorm, as GPT-2 adds after the last block
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        self.apply(init_weights)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """``idx`` (B,T) token ids -> logits (B,T,V) and the loss if ``targets`` (B,T) is given."""
        B, T = idx.shape
        if T > self.block_size:
            raise ConfigError(f"sequence length {T} exceeds block_size {self.block_size}; crop the "
                              f"context to the last {self.block_size} tokens")
        tok_emb = self.token_embedding_table(idx)  # (B,T) -> (B,T,C)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))  # (T,C)
        x = tok_emb + pos_emb  # (B,T,C), broadcast over the batch
        x = self.blocks(x)  # (B,T,C)
        x = self.ln_f(x)  # (B,T,C)
        logits = self.lm_head(x)  # (B,T,C) -> (B,T,V)
        loss = None if targets is None else lm_loss(logits, targets)
        return logits, loss


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
