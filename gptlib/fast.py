"""The fast path (chapter 6): `FastGPT` is `gptlib.model.GPT` in fewer, bigger kernels (one QKV matmul, all
heads batched, fused or spelled-out attention; on a CPU, dropout masks from 16 random bits kept in 1 byte),
saving and loading the readable `GPT`'s state-dict layout.

Shapes: B = batch, T = time, C = channels (n_embd), nh = heads, hs = head size (C // nh), V = vocab."""

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.config import GPTConfig
from gptlib.model import GPT, Block, FeedForward

_BITS = 16  # a keep/drop decision needs 16 random bits, not ``bernoulli_``'s 32-bit float: 4 per 64-bit draw
ATTENTION = ("sdpa", "explicit")  # how `CausalSelfAttention` attends; `gptlib.speed.SpeedConfig` checks it


def _random16(shape: torch.Size, device: torch.device | str) -> torch.Tensor:
    """Uniform random int16 numbers of ``shape``, from torch's global generator (4 per 64-bit draw)."""
    n = torch.Size(shape).numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-2**63, None)  # the full 64-bit range, so every 16-bit slice is uniform
    return words.view(torch.int16)[:n].view(shape)


def _threshold(p: float) -> int:
    """int16 numbers below this are dropped: probability p rounded to a multiple of 2**-16."""
    return round(p * 2**_BITS) - 2**(_BITS - 1)


def dropout_drop_mask(shape: torch.Size, p: float, device: torch.device | str) -> torch.Tensor:
    """A bool mask, True (drop) with probability ``p`` (to 2**-16), from torch's global generator."""
    return _random16(shape, device) < _threshold(p)


def dropout_keep_mask(shape: torch.Size, p: float, device: torch.device | str) -> torch.Tensor:
    """`dropout_drop_mask`'s complement from the same draw, as uint8 1/0 (to float ~5x faster than bool)."""
    return (_random16(shape, device) >= _threshold(p)).view(torch.uint8)


def _scaled(keep: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    mask = keep.to(dtype)
    return mask if scale == 1.0 else mask.mul_(scale)


class _Dropout(torch.autograd.Function):
    """``x`` times a fresh keep mask times ``scale``; backward keeps the 1-byte mask, not a float one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float, scale: float) -> torch.Tensor:
        keep = dropout_keep_mask(x.shape, p, x.device)  # uint8 1/0
        ctx.save_for_backward(keep)
        ctx.scale = scale
        # both of x's dtype, so one vectorised pass (torch.where or a mixed-dtype multiply: ~3x slower)
        return x * _scaled(keep, x.dtype, scale)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad_out * _scaled(keep, grad_out.dtype, ctx.scale), None, None


def cpu_kernels(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the CPU-tuned dropout (a GPU's own fused kernels are faster, same distribution)."""
    return x.device.type == "cpu"


class FastDropout(nn.Module):
    """`nn.Dropout` with a cheaper mask on a CPU; on a GPU torch's fused dropout kernel is already fast."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not cpu_kernels(x):
            return F.dropout(x, self.p, training=True)  # the device's fused kernel
        return _Dropout.apply(x, self.p, 1.0 / (1.0 - self.p))


class CausalSelfAttention(nn.Module):
    """`MultiHeadAttention` in few kernels, attention fused (``"sdpa"``) or spelled out (``"explicit"``)."""

    def __init__(self, config: GPTConfig, attention: str = "sdpa"):
        super().__init__()
        self.n_head, self.dropout, self.attention = config.n_head, config.dropout, attention
        # The heads' query, key and value matrices as one (C, 3C) matmul: x read once, not 3 * n_head times.
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = FastDropout(config.dropout)
        # One checkpoint layout for both models: save and load `MultiHeadAttention`'s per-head matrices.
        self.register_state_dict_post_hook(lambda m, sd, p, _: _relayout(sd, p, m.n_head, fused=False))
        self.register_load_state_dict_pre_hook(lambda m, sd, p, *_: _relayout(sd, p, m.n_head, fused=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)  # (B,T,C) -> (B,T,3C) -> 3 x (B,T,C)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))  # 3 x (B,nh,T,hs)
        if self.attention == "explicit" or (self.training and self.dropout > 0 and cpu_kernels(x)):
            y = self.explicit_attention(q, k, v)  # (a CPU's SDPA with dropout is slow and unfused)
        else:  # one fused kernel (flash attention): the (T,T) matrix is never written to memory
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B,nh,T,hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B,nh,T,hs) -> (B,T,nh,hs) -> (B,T,C)
        return self.resid_dropout(self.proj(y))  # (B,T,C)

    def explicit_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """dropout(softmax(q k^T / sqrt(hs) + causal mask)) @ v for all heads at once -> (B,nh,T,hs)."""
        B, nh, T, hs = q.shape
        q, k, v = (t.reshape(B * nh, T, hs) for t in (q, k, v))  # (B*nh,T,hs): one batched matmul
        # 0 on and below the diagonal, -inf above; it and the scale ride in the matmul: no extra (T,T) pass
        causal = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
        att = torch.baddbmm(causal, q, k.transpose(1, 2), alpha=hs ** -0.5)  # (B*nh,T,T)
        att = torch.softmax(att, dim=-1)  # autograd's softmax saves the probabilities for backward
        if self.training and self.dropout > 0 and not cpu_kernels(att):
            y = F.dropout(att, self.dropout, training=True) @ v  # (B*nh,T,hs); a GPU's fused dropout
        elif self.training and self.dropout > 0:  # dropout's 1/(1-p) scales the (T,hs) output, not (T,T)
            att = _Dropout.apply(att, self.dropout, 1.0)  # (B*nh,T,T), dropped weights are 0
            y = (att @ v) * (1.0 / (1.0 - self.dropout))  # (B*nh,T,T) @ (B*nh,T,hs) -> (B*nh,T,hs)
        else:
            y = att @ v  # (B*nh,T,hs)
        return y.view(B, nh, T, hs)


class FastBlock(Block):
    """`Block` with `CausalSelfAttention` and `FastDropout`: communication followed by computation."""

    def __init__(self, config: GPTConfig, attention: str = "sdpa"):
        super().__init__(config, CausalSelfAttention(config, attention), FeedForward(config, FastDropout))


class FastGPT(GPT):
    """`GPT` built from `FastBlock`s: the same parameters and outputs (``attention``: the speed only)."""

    def __init__(self, config: GPTConfig, attention: str = "sdpa"):
        super().__init__(config, block=lambda c: FastBlock(c, attention))


def _relayout(state_dict: dict, prefix: str, n_head: int, fused: bool) -> None:
    """In place: a block's per-head (hs,C) matrices into ``qkv.weight`` (3C,C) if ``fused``, else back."""
    names = [f"{prefix}heads.{h}.{kind}.weight" for kind in ("query", "key", "value") for h in range(n_head)]
    if fused and all(name in state_dict for name in names):  # else: fused already, or missing (torch says)
        state_dict[prefix + "qkv.weight"] = torch.cat([state_dict.pop(n) for n in names], dim=0)
    elif not fused and prefix + "qkv.weight" in state_dict:  # else: readable already
        qkv = state_dict.pop(prefix + "qkv.weight")  # (3C,C), qkv's row order: queries, keys, values
        state_dict.update(zip(names, qkv.split(qkv.shape[0] // (3 * n_head), dim=0)))  # 3*nh x (hs,C)


def readable_to_fast(state_dict: dict, config: GPTConfig) -> dict:
    """A `GPT` state dict in `FastGPT`'s layout (a qkv matrix a block), as its ``load_state_dict`` does."""
    out = dict(state_dict)
    for layer in range(config.n_layer):
        _relayout(out, f"blocks.{layer}.sa.", config.n_head, fused=True)
    return out


def fast_to_readable(state_dict: dict, config: GPTConfig) -> dict:
    """The inverse of `readable_to_fast` (e.g. `FastGPT`'s gradients by name), as its ``state_dict`` does."""
    out = dict(state_dict)
    for layer in range(config.n_layer):
        _relayout(out, f"blocks.{layer}.sa.", config.n_head, fused=False)
    return out


def fast_from_readable(model: nn.Module, attention: str = "sdpa") -> FastGPT:
    """A `FastGPT` with the weights of the `GPT` ``model`` (on the same device)."""
    fast = FastGPT(model.config, attention).to(next(model.parameters()).device)
    fast.load_state_dict(model.state_dict())
    return fast


def readable_from_fast(model: FastGPT) -> GPT:
    """A readable `GPT` with the weights of the `FastGPT` ``model``."""
    readable = GPT(model.config).to(next(model.parameters()).device)
    readable.load_state_dict(model.state_dict())
    return readable
