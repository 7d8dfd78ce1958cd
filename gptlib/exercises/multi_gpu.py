"""Self-checks for the page "Training on more than one GPU".

    from gptlib.exercises import multi_gpu
    multi_gpu.row_weights(weights)                  # exercise 1: unequal shares
    multi_gpu.accumulate(step)                      # exercise 3: gradient accumulation
    multi_gpu.max_parameters(ddp, fsdp)             # exercise 5: what fits on 80 GB GPUs
"""

import torch

from gptlib.exercises import Verdict, correct, not_yet, run_answer


def row_weights(weights) -> Verdict:
    """Exercise 1: the weight of each of the 10 rows in the loss that DDP's mean of the three ranks'
    gradients is the gradient of, when the ranks hold 4, 3 and 3 rows (rows 0-3 on the first)."""
    try:
        w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        return not_yet("give ten numbers, one weight per row")
    if w.numel() != 10:
        return not_yet(f"give one weight per row: 10 numbers, not {w.numel()}")
    want = torch.tensor([1 / 12] * 4 + [1 / 9] * 6, dtype=torch.float64)
    if torch.allclose(w, want, atol=1e-9):
        return correct("the 4-row rank's rows count 3/4 as much as the others")
    if torch.allclose(w, torch.full((10,), 0.1, dtype=torch.float64), atol=1e-9):
        return not_yet("1/10 each is one big batch; DDP averages the ranks' mean losses, so a row's "
                       "weight is 1/N times 1/(the rows of its rank)")
    if abs(w.sum().item() - 1) > 1e-9:
        return not_yet(f"the weights add up to {w.sum().item():.4f}; the mean of three means adds up to 1")
    return not_yet("rank r's loss is the mean over its own rows, and DDP takes the mean of the 3 ranks")


def accumulate(step) -> Verdict:
    """Exercise 3: ``step(model, x, y, grad_accum)`` leaves in ``.grad`` the gradient of the mean loss
    over all rows of ``x``, computed as ``grad_accum`` micro-batches (the optimiser is not stepped)."""
    from gptlib.config import GPTConfig
    from gptlib.model import GPT

    cfg = GPTConfig(vocab_size=17, block_size=8, n_embd=16, n_head=2, n_layer=1, dropout=0.0)
    torch.manual_seed(3)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(cfg.vocab_size, (8, cfg.block_size), generator=g)
    y = torch.randint(cfg.vocab_size, (8, cfg.block_size), generator=g)
    model.zero_grad()
    model(x, y)[1].backward()
    want = [p.grad.clone() for p in model.parameters()]
    for grad_accum in (2, 4):
        model.zero_grad(set_to_none=True)
        result = run_answer(step, model, x, y, grad_accum, what="step(model, x, y, grad_accum)")
        if isinstance(result, Verdict):
            return result
        got = [p.grad for p in model.parameters()]
        if any(g is None for g in got):
            return not_yet("some parameters have no gradient: call backward on every micro-batch's loss")
        ratio = (got[0].norm() / want[0].norm()).item()
        if abs(ratio - grad_accum) < 1e-3 * grad_accum:
            return not_yet(f"the gradient is {grad_accum} times too big: divide each micro-batch's loss "
                           "by grad_accum before backward")
        if not all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(got, want)):
            return not_yet(f"with grad_accum={grad_accum} the gradient differs from the full batch's: "
                           "split the rows into equal micro-batches, and let the gradients add up "
                           "(no zero_grad between them)")
    return correct("the full batch's gradient, with 2 and with 4 micro-batches")


def max_parameters(ddp, fsdp) -> Verdict:
    """Exercise 5: how many parameters fit (at 16 bytes each, no activations) on one 80 GB GPU with
    DDP, and with FSDP over 8 such GPUs."""
    try:
        ddp, fsdp = float(ddp), float(fsdp)
    except (TypeError, ValueError):
        return not_yet("give two numbers of parameters")
    want_ddp, want_fsdp = 80e9 / 16, 8 * 80e9 / 16
    if abs(ddp / want_ddp - 1) > 0.01:
        if abs(ddp / (80e9 / 4) - 1) < 0.01:
            return not_yet("4 bytes is the weight alone; its gradient and Adam's two moments need 12 more")
        return not_yet("DDP keeps every parameter's 16 bytes on every GPU: divide its memory by 16")
    if abs(fsdp / want_fsdp - 1) > 0.01:
        if abs(fsdp / want_ddp - 1) < 0.01:
            return not_yet("with FSDP each GPU keeps only 1/8 of the 16 bytes of every parameter")
        return not_yet("FSDP shares the 16 bytes of each parameter among the 8 GPUs")
    return correct(f"{ddp:.0e} parameters with DDP, {fsdp:.0e} with FSDP over 8 GPUs")
