"""The fast path: the same GPT as `gptlib.model`, computed with fewer, bigger kernels and less memory traffic.

- `CausalSelfAttention` does what `MultiHeadAttention` does (same maths, same dropout on the
  attention weights) with one fused QKV projection and all heads in one batched matmul. Its
  ``attention`` is ``"sdpa"`` (``F.scaled_dot_product_attention``, a fused flash-attention kernel) or
  ``"explicit"`` (one batched matmul, softmax, one batched matmul), whichever the speed plan measured
  faster; with attention dropout on a CPU it is always explicit (SDPA's dropout falls back to a slow
  unfused path there).
- On a CPU, dropout draws its keep/drop mask from 16 random bits per element instead of a 32-bit float, and
  applies it as a multiplication by a 0/1 tensor of the input's dtype (``torch.where`` with a bool
  mask and a mixed-dtype multiply both run a slow scalar loop on a CPU); the mask it saves for the
  backward pass is 1 byte per element.
- `FastGPT` is `GPT` built from these parts. It saves and loads the readable `GPT`'s state-dict
  layout (hooks on `CausalSelfAttention`), so one checkpoint fits both models; `readable_to_fast`
  and `fast_to_readable` map parameter names both ways, so the tests can compare gradients.

Shapes: B = batch, T = time, C = channels (n_embd), nh = heads, hs = head size (C // nh), V = vocab.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptlib.bigram import lm_loss
from gptlib.config import GPTConfig
from gptlib.errors import ConfigError
from gptlib.init import init_weights

# A keep/drop decision needs 16 random bits, not the 32-bit float that ``bernoulli_`` draws and
# writes: one 64-bit draw gives four decisions, and the mask is 1 byte per element instead of 4.
_BITS = 16

# The ways `CausalSelfAttention` can compute attention (see its docstring); the speed plan picks one.
ATTENTION = ("sdpa", "explicit")


def _random16(shape: torch.Size, device: torch.device | str) -> torch.Tensor:
    """Uniform random int16 numbers of ``shape``, from torch's global generator (4 per 64-bit draw)."""
    n = 1
    for s in shape:
        n *= s
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-2**63, None)  # the full 64-bit range, so every 16-bit slice is uniform
    return words.view(torch.int16)[:n].view(shape)


def _threshold(p: float) -> int:
    """int16 numbers below this are dropped: probability p rounded to a multiple of 2**-16."""
    return round(p * 2**_BITS) - 2**(_BITS - 1)


def dropout_drop_mask(shape: torch.Size, p: float, device: torch.device | str) -> torch.Tensor:
    """A bool mask, True (drop) with probability ``p`` rounded to a multiple of 2**-16.

    On a CPU this is ~5x cheaper than ``torch.empty(shape).bernoulli_(p)``: it draws 64-bit random
    integers from torch's global generator (so ``torch.manual_seed`` makes it reproducible), reads
    them as four 16-bit numbers each, and compares those to a threshold.
    """
    return _random16(shape, device) < _threshold(p)


def dropout_keep_mask(shape: torch.Size, p: float, device: torch.device | str) -> torch.Tensor:
    """The complement of `dropout_drop_mask` from the same random numbers, as uint8 1 (keep) / 0 (drop).

    uint8, not bool: a uint8 tensor converts to a float one in a fast vectorised pass, a bool one
    does not (measured ~5x slower on a CPU), and the dropout below multiplies by the converted mask.
    """
    return (_random16(shape, device) >= _threshold(p)).view(torch.uint8)


class _Dropout(torch.autograd.Function):
    """Inverted dropout that saves a 1-byte mask for backward (nn.Dropout saves a float one on a CPU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = dropout_keep_mask(x.shape, p, x.device)  # uint8 1/0
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        # x * (keep / (1-p)): both tensors of x's dtype, so one vectorised pass; the survivors are
        # scaled so the mean is unchanged
        return x * keep.to(x.dtype).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad_out * keep.to(grad_out.dtype).mul_(ctx.scale), None


def cpu_kernels(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the CPU-tuned dropout (the 16-bit masks above, attention spelled out when
    it drops weights): on a CPU. Elsewhere (a GPU) the device's own fused kernels are faster and the
    same in distribution: `F.dropout` (keep with probability 1-p, survivors scaled by 1/(1-p)) and
    SDPA's ``dropout_p`` on the attention weights."""
    return x.device.type == "cpu"


class FastDropout(nn.Module):
    """`nn.Dropout` with a cheaper mask on a CPU; on a GPU torch's fused dropout kernel is already fast."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero each element with probability p (in training), scale the rest by 1/(1-p)."""
        if not self.training or self.p == 0.0:
            return x
        if not cpu_kernels(x):
            return F.dropout(x, self.p, training=True)  # the device's fused kernel
        return _Dropout.apply(x, self.p)


class _SoftmaxDropout(torch.autograd.Function):
    """softmax then dropout (without the 1/(1-p) scale) in one autograd node; saves probs + 1-byte mask."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, p: float) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)  # (..,T,T)
        keep = dropout_keep_mask(probs.shape, p, probs.device)  # (..,T,T) uint8 1/0
        ctx.save_for_backward(probs, keep)
        return probs * keep.to(probs.dtype)  # one same-dtype pass (torch.where: ~3x slower on a CPU)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        probs, keep = ctx.saved_tensors
        grad_probs = grad_out * keep.to(grad_out.dtype)  # back through the dropout
        # back through softmax: dL/ds_i = p_i * (dL/dp_i - sum_j p_j dL/dp_j), one fused kernel
        return torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype), None


class CausalSelfAttention(nn.Module):
    """`MultiHeadAttention` in a few big kernels: one QKV matmul, all heads batched, fused attention.

    ``attention="sdpa"`` uses torch's fused kernel wherever it can; ``"explicit"`` always spells the
    attention out (faster under a CPU's bf16 autocast, whose fused backward is slow). Both are the
    same maths; the speed plan measures which is faster here.
    """

    def __init__(self, config: GPTConfig, attention: str = "sdpa"):
        super().__init__()
        if attention not in ATTENTION:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.attention = attention
        # The heads' query, key and value matrices stacked into one (C, 3C) matmul: one big kernel
        # reads x once, instead of 3 * n_head small ones each reading it again.
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = FastDropout(config.dropout)
        # One checkpoint layout for both models: this module saves and loads the readable
        # `MultiHeadAttention`'s per-head matrices, so a checkpoint never depends on the path that
        # trained it and no caller maps weights by hand.
        self.register_state_dict_post_hook(lambda m, sd, prefix, _: _to_heads(sd, prefix, m.n_head))
        self.register_load_state_dict_pre_hook(
            lambda m, sd, prefix, *_: _from_heads(sd, prefix, m.n_head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C)."""
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)  # (B,T,C) -> (B,T,3C) -> 3 x (B,T,C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B,nh,T,hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B,nh,T,hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B,nh,T,hs)
        dropout_on_cpu = self.training and self.dropout > 0 and cpu_kernels(x)
        if self.attention == "explicit" or dropout_on_cpu:
            # On a CPU, SDPA with dropout falls back to a slow unfused path: spell it out instead.
            y = self.explicit_attention(q, k, v)
        else:
            # One fused kernel (flash attention): the (T,T) matrix is never written to memory.
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B,nh,T,hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B,nh,T,hs) -> (B,T,nh,hs) -> (B,T,C)
        return self.resid_dropout(self.proj(y))  # (B,T,C)

    def explicit_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """dropout(softmax(q k^T / sqrt(hs) + causal mask)) @ v for all heads at once -> (B,nh,T,hs)."""
        B, nh, T, hs = q.shape
        q, k, v = (t.reshape(B * nh, T, hs) for t in (q, k, v))  # (B*nh,T,hs): one batched matmul
        # 0 on and below the diagonal, -inf above (made per call: a (T,T) fill costs microseconds)
        causal = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
        # The scale and the causal mask ride along inside the matmul: no extra passes over (T,T).
        att = torch.baddbmm(causal, q, k.transpose(1, 2), alpha=hs ** -0.5)  # (B*nh,T,T)
        if self.training and self.dropout > 0 and not cpu_kernels(att):
            # a GPU: softmax, then the device's fused dropout (it scales the survivors by 1/(1-p))
            y = F.dropout(torch.softmax(att, dim=-1), self.dropout, training=True) @ v  # (B*nh,T,hs)
        elif self.training and self.dropout > 0:
            att = _SoftmaxDropout.apply(att, self.dropout)  # (B*nh,T,T), dropped weights are 0
            # Dropout's 1/(1-p) scale, applied to the (T,hs) output rather than the (T,T) weights.
            y = (att @ v) * (1.0 / (1.0 - self.dropout))  # (B*nh,T,T) @ (B*nh,T,hs) -> (B*nh,T,hs)
        else:
            y = torch.softmax(att, dim=-1) @ v  # (B*nh,T,hs)
        return y.view(B, nh, T, hs)


class FastFeedForward(nn.Module):
    """`FeedForward` with `FastDropout`; the same parameter names, so weights load either way."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),  # (B,T,C) -> (B,T,4C)
            nn.ReLU(),
            nn.Linear(4 * config.n_embd, config.n_embd),  # (B,T,4C) -> (B,T,C)
            FastDropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C)."""
        return self.net(x)


class FastBlock(nn.Module):
    """`Block` with `CausalSelfAttention`: communication followed by computation."""

    def __init__(self, config: GPTConfig, attention: str = "sdpa"):
        super().__init__()
        self.sa = CausalSelfAttention(config, attention)
        self.ffwd = FastFeedForward(config)
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,C) -> (B,T,C), pre-norm with residual connections, as in `Block`."""
        x = x + self.sa(self.ln1(x))  # (B,T,C)
        x = x + self.ffwd(self.ln2(x))  # (B,T,C)
        return x


class FastGPT(nn.Module):
    """`GPT` built from `FastBlock`s: with weights mapped by `readable_to_fast`, the same outputs.

    ``attention`` ("sdpa" or "explicit", see `CausalSelfAttention`) changes the speed, not the maths.
    """

    def __init__(self, config: GPTConfig, attention: str = "sdpa"):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.Sequential(*[FastBlock(config, attention) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
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
        x = self.blocks(tok_emb + pos_emb)  # (B,T,C)
        logits = self.lm_head(self.ln_f(x))  # (B,T,C) -> (B,T,V)
        loss = None if targets is None else lm_loss(logits, targets)
        return logits, loss


_KINDS = ("query", "key", "value")


def _head_names(prefix: str, n_head: int) -> list[str]:
    """The readable layout's names for one block's per-head matrices, in qkv's row order:
    queries of heads 0..nh-1, then keys, then values."""
    return [f"{prefix}heads.{h}.{kind}.weight" for kind in _KINDS for h in range(n_head)]


def _to_heads(state_dict: dict, prefix: str, n_head: int) -> None:
    """Replace ``qkv.weight`` (3C,C) in ``state_dict`` by the 3*nh per-head (hs,C) matrices."""
    qkv = state_dict.pop(prefix + "qkv.weight")  # (3C,C)
    parts = qkv.split(qkv.shape[0] // (3 * n_head), dim=0)  # 3*nh x (hs,C)
    for name, part in zip(_head_names(prefix, n_head), parts):
        state_dict[name] = part


def _from_heads(state_dict: dict, prefix: str, n_head: int) -> None:
    """Stack the readable per-head matrices in ``state_dict`` into ``qkv.weight`` (3C,C)."""
    names = _head_names(prefix, n_head)
    if all(name in state_dict for name in names):  # else: already fused, or missing (torch says so)
        state_dict[prefix + "qkv.weight"] = torch.cat([state_dict.pop(n) for n in names], dim=0)


def readable_to_fast(state_dict: dict, config: GPTConfig) -> dict:
    """A `GPT` state dict -> `FastGPT`'s own parameter layout (each block's per-head key/query/value
    matrices stacked into one qkv matrix). `FastGPT.load_state_dict` does this itself."""
    out = dict(state_dict)
    for layer in range(config.n_layer):
        _from_heads(out, f"blocks.{layer}.sa.", config.n_head)
    return out


def fast_to_readable(state_dict: dict, config: GPTConfig) -> dict:
    """The inverse of `readable_to_fast`: `FastGPT`'s parameter layout (e.g. its gradients by name)
    -> the `GPT` layout. `FastGPT.state_dict` already returns that layout."""
    out = dict(state_dict)
    for layer in range(config.n_layer):
        if f"blocks.{layer}.sa.qkv.weight" in out:
            _to_heads(out, f"blocks.{layer}.sa.", config.n_head)
    return out


def fast_from_readable(model: nn.Module, attention: str = "sdpa") -> FastGPT:
    """A `FastGPT` with the weights of the `GPT` ``model`` (on the same device)."""
    fast = FastGPT(model.config, attention).to(next(model.parameters()).device)
    fast.load_state_dict(model.state_dict())
    return fast


def readable_from_fast(model: FastGPT) -> nn.Module:
    """A readable `GPT` with the weights of the `FastGPT` ``model``."""
    from gptlib.model import GPT

    readable = GPT(model.config).to(next(model.parameters()).device)
    readable.load_state_dict(model.state_dict())
    return readable
