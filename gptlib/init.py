"""Weight initialisation as nanoGPT does it: normal(0, 0.02) weights, zero biases.

The lecture repo's README notes that without it convergence is noticeably slower; it also makes
the first loss of a fresh model about ln(vocab_size), since all logits start near zero.
"""

import torch.nn as nn


def init_weights(module: nn.Module) -> None:
    """Use with ``model.apply(init_weights)``; LayerNorm keeps torch's (1, 0) default."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
