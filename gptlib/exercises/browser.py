"""Self-checks for the page "Your GPT in the browser".

    from gptlib.exercises import browser
    browser.per_row_int8(quantize)              # exercise 2: one int8 scale per row
    browser.steps_per_character(cost)           # exercise 3: the price of keeping more context
    browser.previous_head(model, tokenizer, layer, head)  # exercise 4: the previous-character head
"""

import torch

from gptlib.exercises import Verdict, correct, not_yet, run_answer, run_number

# Exercise 4's text: every character is in Tiny Shakespeare's vocabulary.
PREVIOUS_TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\n"
                 "It is the east, and Juliet is the sun.\n")


def _int8_matrix() -> torch.Tensor:
    """A (6, 16) weight whose row 0 holds one weight 20 times the others: per tensor, it sets the
    scale of every row."""
    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(5))
    w[0, 3] = 20 * w.abs().max()
    return w


def per_row_int8(quantize) -> Verdict:
    """Exercise 2: ``quantize(w)`` turns a Linear weight ``w`` (out, in) into ``(q, scale)``: ``q``
    int8 (or whole numbers in -127..127) of ``w``'s shape and one scale per row (out,) or (out, 1),
    each that row's max |w| / 127, so that ``q * scale`` is ``w`` to within half a scale."""
    w = _int8_matrix()
    out = run_answer(quantize, w.clone(), what="quantize(w)")
    if isinstance(out, Verdict):
        return out
    try:
        q, scale = out
        q, scale = torch.as_tensor(q), torch.as_tensor(scale, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return not_yet("return two tensors: q (the whole numbers) and scale (one per row)")
    if q.shape != w.shape:
        return not_yet(f"q must have the weight's shape {tuple(w.shape)}, not {tuple(q.shape)}")
    if scale.numel() == 1:
        return not_yet("that is one scale for the whole tensor: give each row (one output's "
                       "weights) a scale of its own")
    if scale.numel() == w.shape[1] and scale.numel() != w.shape[0]:
        return not_yet(f"{scale.numel()} scales is one per column (per input); a row of a Linear "
                       f"weight (out, in) is one output's weights: take the max along dim 1")
    if scale.numel() != w.shape[0]:
        return not_yet(f"give one scale per row: {w.shape[0]} of them, not {scale.numel()}")
    scale = scale.reshape(-1, 1)  # (out,1)
    qf = q.to(torch.float64)
    if not torch.equal(qf, qf.round()) or qf.abs().max() > 127:
        return not_yet("q must hold whole numbers from -127 to 127 (int8): round w / scale and "
                       "clamp it")
    want = w.abs().amax(dim=1, keepdim=True) / 127  # (out,1)
    if not torch.allclose(scale, want, rtol=1e-5):
        return not_yet("a row's scale is its largest |weight| / 127, so that the row's largest "
                       "weight becomes ±127")
    error = (q.float() * scale - w).abs()  # (out,in)
    if (error > scale / 2 * (1 + 1e-4) + 1e-7).any():
        return not_yet("q * scale is further from w than half a scale somewhere: round to the "
                       "nearest whole number (torch.round), don't truncate")
    tensor_scale = w.abs().max() / 127
    tensor_error = ((w / tensor_scale).round() * tensor_scale - w).abs()[1:].max().item()
    return correct(f"one scale per row; on a weight whose row 0 has one large weight, the other "
                   f"rows' largest error falls from {tensor_error:.3f} (one scale per tensor) to "
                   f"{error[1:].max().item():.3f}")


def _steps_per_character(block_size: int, keep: int) -> float:
    """Model steps per new token of the page's loop once the cache is full, counted step by step."""
    cache, steps, tokens = block_size, 0, 0  # start full
    for _ in range(1000 * block_size):
        if cache < block_size:
            cache, steps = cache + 1, steps + 1  # one token's work
        else:
            cache, steps = keep, steps + keep  # rebuild from the last `keep`, one step each
        tokens += 1
        if cache == block_size and tokens >= 1000:
            break
    return steps / tokens


def steps_per_character(cost) -> Verdict:
    """Exercise 3: ``cost(block_size, keep)`` is how many steps of the model (one token each) the
    page's `generate` runs per new character, on average, once the context is full, when a full
    cache is rebuilt from the last ``keep`` tokens."""
    cases = [(64, 32), (64, 63), (8, 4), (16, 1), (32, 20)]
    for block_size, keep in cases:
        got = run_number(cost, block_size, keep, what="cost(block_size, keep)",
                         hint="return one number: model steps per new character")
        if isinstance(got, Verdict):
            return got
        want = _steps_per_character(block_size, keep)
        if abs(got - want) <= 1e-6 * want:
            continue
        if abs(got - keep) < 1e-9:
            return not_yet("a rebuild costs keep steps, but it does not happen at every "
                           "character: after it the cache has room for block_size - keep more "
                           "tokens, one step each")
        if abs(got - block_size / (block_size - keep)) < 1e-9:
            return not_yet("count the characters of one cycle again: the rebuild itself also "
                           "yields a character, besides the one-step ones that follow it")
        return not_yet(f"with block_size {block_size} and keep {keep}: follow the loop through "
                       f"one cycle, from one rebuild to the next, and divide its steps by its "
                       f"characters")
    return correct(f"{len(cases)} (block_size, keep) pairs, as the page's loop counts them")


def _previous_darkest(maps: torch.Tensor) -> torch.Tensor:
    """The share of rows t >= 1 of maps (L,nh,T,T) whose largest weight is on t - 1 -> (L,nh)."""
    t = torch.arange(1, maps.shape[-1])  # (T-1,)
    return (maps[:, :, 1:, :].argmax(-1) == t - 1).float().mean(-1)


def _self_darkest(maps: torch.Tensor) -> torch.Tensor:
    """The share of rows t >= 1 whose largest weight is on t itself -> (L, nh)."""
    t = torch.arange(1, maps.shape[-1])  # (T-1,)
    return (maps[:, :, 1:, :].argmax(-1) == t).float().mean(-1)


def previous_head(model, tokenizer, layer, head) -> Verdict:
    """Exercise 4: ``layer`` and ``head`` (counted from 0, as the page labels them) name the head of
    ``model`` (with its ``tokenizer``: the page's, from `gptlib.export.load_browser_export`) whose
    darkest character is most often the one just before the reading one, on a passage of
    Shakespeare."""
    from gptlib.attention_maps import attention_maps

    config = getattr(model, "config", None)
    if config is None or not hasattr(tokenizer, "encode"):
        return not_yet("pass the model and its tokenizer: model, tokenizer = "
                       "load_browser_export(path)")
    try:
        layer, head = int(layer), int(head)
    except (TypeError, ValueError):
        return not_yet("give the layer and the head as two whole numbers, counted from 0")
    if not (0 <= layer < config.n_layer and 0 <= head < config.n_head):
        return not_yet(f"this model has layers 0 to {config.n_layer - 1} and heads 0 to "
                       f"{config.n_head - 1} (the page counts from 0)")
    text = PREVIOUS_TEXT[:config.block_size]
    idx = run_answer(lambda: torch.tensor(tokenizer.encode(text)), what="tokenizer.encode")
    if isinstance(idx, Verdict):
        return idx
    maps = run_answer(attention_maps, model, idx, what="attention_maps(model, idx)")
    if isinstance(maps, Verdict):
        return maps
    score = _previous_darkest(maps.cpu())  # (L,nh)
    best, got = score.max().item(), score[layer, head].item()
    if best < 0.5:
        return not_yet(f"no head of this model makes the previous character the darkest at even "
                       f"half the positions (the best: {best:.0%}); train longer, export again")
    if got >= best - 1e-9:
        return correct(f"the previous character is this head's darkest at {got:.0%} of the "
                       f"positions of a passage of Shakespeare; no other head does it more often")
    itself = _self_darkest(maps.cpu())[layer, head].item()
    if itself > 0.5:
        return not_yet(f"this head's darkest is the reading character itself ({itself:.0%} of "
                       f"the positions), not the one before it: on the page, the last character "
                       f"of the shaded context")
    return not_yet(f"this head's darkest is the previous character at only {got:.0%} of the "
                   f"positions; another head does it more often")
