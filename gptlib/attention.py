"""Causal self-attention, the readable way (chapter 3): `Head` and `MultiHeadAttention`, as the lecture
builds them, and `CrossHead` (queries from one sequence, keys and values from another).

Shapes: B = batch, T = time, C = channels (n_embd), hs = head size, S = the other sequence's length.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.config import GPTConfig


class Head(nn.Module):
    """One head of self-attention: every token asks a query, every earlier token answers with a key."""

    def __init__(self, config: GPTConfig, head_size: int):
        super().__init__()
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        # A buffer, not a parameter: the causal mask is fixed, and moves with the module to the device.
        self.register_buffer("tril", torch.tril(torch.ones(config.block_size, config.block_size)),
                             persistent=False)
        self.dropout = nn.Dropout(config.dropout)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (B,T,T) attention matrix: row t is how much token t reads from each token <= t."""
        B, T, C = x.shape
        k = self.key(x)  # (B,T,C) -> (B,T,hs)
        q = self.query(x)  # (B,T,C) -> (B,T,hs)
        # Scale by 1/sqrt(hs) so the scores keep unit variance and softmax stays soft at init.
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B,T,hs) @ (B,hs,T) -> (B,T,T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # no peeking at the future
        return F.softmax(wei, dim=-1)  # (B,T,T), each row sums to 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,hs): a weighted average of the values of the tokens so far."""
        wei = self.dropout(self.attention_weights(x))  # randomly stop some tokens communicating
        v = self.value(x)  # (B,T,C) -> (B,T,hs)
        return wei @ v  # (B,T,T) @ (B,T,hs) -> (B,T,hs)


class MultiHeadAttention(nn.Module):
    """Several heads in parallel, concatenated, then projected back into the residual stream."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.heads = nn.ModuleList([Head(config, config.head_size) for _ in range(config.n_head)])
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C)."""
        out = torch.cat([h(x) for h in self.heads], dim=-1)  # n_head x (B,T,hs) -> (B,T,C)
        return self.dropout(self.proj(out))  # (B,T,C)


class CrossHead(Head):
    """One head of cross-attention, `Head`'s layers: x's queries read y's keys and values (in translation,
    an encoder's output). No mask: y is not x's future."""

    def attention_weights(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The (B,T,S) attention matrix: row t is how much x's token t reads from each token of y."""
        q = self.query(x)  # (B,T,C) -> (B,T,hs)
        k = self.key(y)  # (B,S,C) -> (B,S,hs)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B,T,hs) @ (B,hs,S) -> (B,T,S)
        return F.softmax(wei, dim=-1)  # (B,T,S), each row sums to 1

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B,T,C), y (B,S,C) -> (B,T,hs): for each token of x, a weighted average of y's values."""
        wei = self.dropout(self.attention_weights(x, y))
        v = self.value(y)  # (B,S,C) -> (B,S,hs)
        return wei @ v  # (B,T,S) @ (B,S,hs) -> (B,T,hs)
