"""`BigramLanguageModel`: a lookup table of next-character logits, the book's first model.

Shapes: B = batch, T = time (block size), V = vocabulary size.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.init import init_weights


class BigramLanguageModel(nn.Module):
    """Each token reads the logits for the next token straight off a row of a (V, V) table."""

    # A bigram looks at one character only, so generation may crop the context to it.
    block_size = 1

    def __init__(self, vocab_size: int):
        super().__init__()
        self.token_embedding_table = nn.Embedding(vocab_size, vocab_size)
        self.apply(init_weights)  # small logits at the start, so the first loss is about ln(V)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """``idx`` (B,T) token ids -> logits (B,T,V) and the loss if ``targets`` (B,T) is given."""
        logits = self.token_embedding_table(idx)  # (B,T) -> (B,T,V)
        loss = None if targets is None else lm_loss(logits, targets)
        return logits, loss


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-token predictions; cross_entropy wants (N, V) and (N,)."""
    B, T, V = logits.shape
    return F.cross_entropy(logits.view(B * T, V), targets.reshape(B * T))
