"""LoRA (Hu et al. 2021, arXiv:2106.09685), chapter 9: freeze a trained GPT and learn a low-rank
update of each attention and feed-forward matrix, ``W x + (alpha/r) B A x``; merge it back into plain
weights that `sample`, the sampler widget and the browser export read as they are.

Shapes: in, out: a linear layer's input and output widths; r: the adapter's rank.
"""

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from gptlib.errors import ConfigError


@dataclass(frozen=True)
class LoRAConfig:
    """The adapters' rank r and alpha: the update B A is scaled by alpha / r."""

    rank: int = 8  # columns of B, rows of A: the rank of the update
    alpha: float = 16.0  # the update's scale is alpha / rank (a fixed alpha: the same step size at any rank)

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"the LoRA rank must be a whole number >= 1, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not 0 < self.alpha < math.inf:
            raise ConfigError(f"the LoRA alpha must be a number > 0, got {self.alpha!r}")


class LoRALinear(nn.Linear):
    """An `nn.Linear` (its weight and bias frozen) plus a trainable low-rank update: W x + b + s B A x."""

    def __init__(self, in_features: int, out_features: int, config: LoRAConfig, bias: bool = True,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.config = config
        self.scale = config.alpha / config.rank
        self.lora_A = nn.Parameter(torch.empty(config.rank, in_features, device=device, dtype=dtype))
        # B starts at zero, so a fresh adapter changes nothing: the model starts as it was trained
        self.lora_B = nn.Parameter(torch.zeros(out_features, config.rank, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's weights (and the paper's code)

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: LoRAConfig) -> "LoRALinear":
        """An adapter around ``linear``, sharing (and freezing) its weight and bias."""
        w = linear.weight
        layer = nn.utils.skip_init(cls, linear.in_features, linear.out_features, config,
                                   bias=linear.bias is not None, device=w.device, dtype=w.dtype)
        layer.weight, layer.bias = linear.weight, linear.bias
        layer.weight.requires_grad_(False)
        if layer.bias is not None:
            layer.bias.requires_grad_(False)
        nn.init.kaiming_uniform_(layer.lora_A, a=math.sqrt(5))  # skip_init left it empty
        nn.init.zeros_(layer.lora_B)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out)."""
        update = (x @ self.lora_A.T) @ self.lora_B.T  # (..., in) -> (..., r) -> (..., out)
        return super().forward(x) + self.scale * update

    def merged(self) -> nn.Linear:
        """A plain `nn.Linear` whose weight is W + (alpha/r) B A: the same function, one matmul."""
        w = self.weight
        linear = nn.utils.skip_init(nn.Linear, self.in_features, self.out_features,
                                    bias=self.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(w + self.scale * (self.lora_B @ self.lora_A))  # (out,r) @ (r,in)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear


def add_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """Freeze ``model`` and put an adapter on every `nn.Linear` of its blocks (attention and
    feed-forward; the embeddings, LayerNorms and lm_head stay frozen as they are). In place."""
    for p in model.parameters():
        p.requires_grad_(False)
    targets = [(name, m) for name, m in model.blocks.named_modules() if type(m) is nn.Linear]
    for name, linear in targets:
        _replace(model.blocks, name, LoRALinear.from_linear(linear, config))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each adapter folded into its weight: plain `nn.Linear` layers, a
    plain GPT/FastGPT state_dict. A model without adapters comes back as it is."""
    if lora_config(model) is None:
        return model
    merged = copy.deepcopy(model)
    for name, layer in [(n, m) for n, m in merged.named_modules() if isinstance(m, LoRALinear)]:
        _replace(merged, name, layer.merged())
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged


def lora_config(model: nn.Module) -> LoRAConfig | None:
    """The `LoRAConfig` of ``model``'s adapters, or None when it has none."""
    return next((m.config for m in model.modules() if isinstance(m, LoRALinear)), None)


def count_trainable(model: nn.Module) -> int:
    """The number of parameters that training updates (requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where ``root``'s submodule ``name`` ("sa.heads.0.key") is."""
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent), leaf, module)
