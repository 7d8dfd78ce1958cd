"""Self-checks for chapter 9, "Fine-tuning".

    from gptlib.exercises import ch09
    ch09.lora_parameters(count)          # exercise 1: the parameters LoRA trains, by hand
    ch09.merge(merge_weight)             # exercise 2: W + (alpha/r) B A
    ch09.attention_only(add_adapters)    # exercise 3: adapters on the attention only
"""

import torch

from gptlib.config import GPTConfig
from gptlib.exercises import Verdict, correct, not_yet, run_answer, run_number
from gptlib.fast import FastGPT
from gptlib.lora import LoRAConfig, LoRALinear, add_lora, count_trainable

_CONFIGS = [GPTConfig(vocab_size=65, block_size=64, n_embd=128, n_head=4, n_layer=4),
            GPTConfig(vocab_size=50, block_size=16, n_embd=24, n_head=3, n_layer=2)]


def lora_parameters(count) -> Verdict:
    """Exercise 1: ``count(config, rank)`` is the number of parameters LoRA at ``rank`` trains in a
    `FastGPT` of ``config`` (`gptlib.lora.add_lora`)."""
    for config in _CONFIGS:
        for rank in (1, 2, 8):
            got = run_number(count, config, rank, what="count(config, rank)")
            if isinstance(got, Verdict):
                return got
            with torch.device("meta"):
                want = count_trainable(add_lora(FastGPT(config), LoRAConfig(rank)))
            if got == want:
                continue
            c = config.n_embd
            if got == 14 * config.n_layer * rank * c:
                return not_yet("qkv is one matrix from C to 3C (the queries, keys and values together)")
            if got == config.n_layer * 12 * c * c:
                return not_yet("that is the number of weights in the adapted matrices; an adapter "
                               "trains r x (in + out) of them")
            return not_yet(f"for n_embd {c}, {config.n_layer} layers and rank {rank}: count r x (in + out) "
                           "for each adapted nn.Linear: qkv (C -> 3C), proj (C -> C) and the "
                           "feed-forward's two (C -> 4C, 4C -> C)")
    return correct(f"r x (in + out) per adapted matrix, on {len(_CONFIGS)} configs and 3 ranks")


def merge(merge_weight) -> Verdict:
    """Exercise 2: ``merge_weight(W, A, B, alpha, rank)`` is the merged weight W + (alpha/r) B A."""
    g = torch.Generator().manual_seed(0)
    W, A, B = (torch.randn(*shape, generator=g) for shape in ((12, 5), (3, 5), (12, 3)))
    got = run_answer(merge_weight, W.clone(), A.clone(), B.clone(), 6.0, 3,
                     what="merge_weight(W, A, B, 6.0, 3)")
    if isinstance(got, Verdict):
        return got
    if not isinstance(got, torch.Tensor) or got.shape != W.shape:
        return not_yet(f"return a tensor of W's shape {tuple(W.shape)}")
    if torch.allclose(got, W + 2.0 * B @ A, atol=1e-5):
        return correct("W + (alpha/r) B A: the adapted layer in one matrix")
    if torch.allclose(got, W + B @ A, atol=1e-5):
        return not_yet("the update is scaled: multiply B A by alpha / rank")
    if torch.allclose(got, W + 6.0 * B @ A, atol=1e-5):
        return not_yet("the scale is alpha divided by the rank")
    return not_yet("W has shape (out, in), B (out, r), A (r, in): add the scaled product of B and A")


def attention_only(add_adapters) -> Verdict:
    """Exercise 3: ``add_adapters(model, config)`` freezes a `FastGPT` and puts `LoRALinear`
    adapters on its attention's layers (qkv, proj) only, leaving the model's outputs unchanged."""
    config = _CONFIGS[1]
    torch.manual_seed(0)
    model = FastGPT(config).eval()
    idx = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    before = model(idx)[0]
    got = run_answer(add_adapters, model, LoRAConfig(2), what="add_adapters(model, config)")
    if isinstance(got, Verdict):
        return got
    adapted = {n for n, m in got.named_modules() if isinstance(m, LoRALinear)}
    want = {f"blocks.{i}.sa.{name}" for i in range(config.n_layer) for name in ("qkv", "proj")}
    if any(".ffwd." in n for n in adapted):
        return not_yet("the feed-forward layers got adapters too; keep them plain (and frozen)")
    if adapted != want:
        return not_yet(f"adapters on {sorted(adapted) or 'nothing'}; put one on each block's sa.qkv "
                       "and sa.proj")
    trainable = {n for n, p in got.named_parameters() if p.requires_grad}
    if any(n.rsplit(".", 1)[-1] not in ("lora_A", "lora_B") for n in trainable):
        return not_yet("freeze every parameter but the adapters' lora_A and lora_B")
    if not torch.equal(got(idx)[0], before):
        return not_yet("a fresh adapter must leave the outputs as they were: start B at zero")
    return correct(f"adapters on the {len(want)} attention matrices only, "
                   f"{count_trainable(got):,} parameters train")

