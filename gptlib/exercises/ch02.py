"""Self-checks for chapter 2's exercises (the bigram language model).

    from gptlib.exercises import ch02
    ch02.uniform_start(model)              # exercise 1
    ch02.counts_model(model)               # exercise 2
    ch02.cross_entropy(cross_entropy)      # exercise 5
"""

import math

import torch
from torch.nn import functional as F

from gptlib.batches import train_val_split
from gptlib.data import load_text
from gptlib.exercises import Verdict, correct, not_yet, run_answer
from gptlib.tokenizer import CharTokenizer


def _logits(model, idx):
    out = model(idx)
    return out[0] if isinstance(out, tuple) else out


def uniform_start(model) -> Verdict:
    """Exercise 1: a bigram model whose first loss is exactly ln(vocab_size), on any batch."""
    V = getattr(model, "token_embedding_table", None)
    if V is None:
        return not_yet("pass a BigramLanguageModel, the one whose table you set")
    V = V.num_embeddings
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, V, (8, 8), generator=gen)
    targets = torch.randint(0, V, (8, 8), generator=gen)
    with torch.no_grad():
        logits = run_answer(_logits, model, idx, what="your model")
        if isinstance(logits, Verdict):
            return logits
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)).item()
    if abs(loss - math.log(V)) > 1e-5:
        return not_yet(f"its loss on a random batch is {loss:.4f}, not ln {V}: every logit of a row must "
                       "be equal, so that softmax gives each character the same chance")
    return correct(f"every character gets probability 1/{V}: the loss is ln {V} on any batch")


def _counts_log_probs(data: torch.Tensor, V: int) -> torch.Tensor:
    counts = torch.ones(V, V)  # add-one, as the chapter counts
    counts.index_put_((data[:-1], data[1:]), torch.ones(len(data) - 1), accumulate=True)
    return (counts / counts.sum(1, keepdim=True)).log()


def counts_model(model) -> Verdict:
    """Exercise 2: a `BigramLanguageModel` holding the counts table of the training split, which must
    score what the table scores on the validation split."""
    from gptlib.ladder import split_loss

    text = load_text()
    tokenizer = CharTokenizer.from_text(text)
    train, val = train_val_split(torch.tensor(tokenizer.encode(text), dtype=torch.long))
    V = tokenizer.vocab_size
    table = _counts_log_probs(train, V)
    expected = -table[val[:-1], val[1:]].mean().item()
    ours = run_answer(split_loss, model, val, 8, what="scoring your model")
    if isinstance(ours, Verdict):
        return ours
    if abs(ours - expected) < 1e-3:
        return correct("the counts table as a model: its validation loss is the table's")
    weight = getattr(getattr(model, "token_embedding_table", None), "weight", None)
    if weight is not None and torch.allclose(weight.detach(), table.exp(), atol=1e-6):
        return not_yet("the table holds probabilities, but the model reads its rows as logits: softmax "
                       "of log-probabilities gives the probabilities back")
    if abs(ours - (-_counts_log_probs(val, V)[val[:-1], val[1:]].mean().item())) < 1e-3:
        return not_yet("that table was counted on the validation split: count on the training split")
    return not_yet(f"its validation loss is {ours:.4f}, not the counts table's: copy the log-probabilities "
                   "of the table counted on the training split into the embedding's weight")


def cross_entropy(fn) -> Verdict:
    """Exercise 5: ``fn(logits, targets)``, for (B,T,C) logits and (B,T) targets, is the mean of
    −log softmax(logits)[target], as F.cross_entropy computes it."""
    gen = torch.Generator().manual_seed(0)
    for scale in (1.0, 30.0):  # large logits too: exp overflows unless the softmax is done stably
        logits = torch.randn(4, 8, 65, generator=gen) * scale
        targets = torch.randint(0, 65, (4, 8), generator=gen)
        ours = run_answer(fn, logits.clone(), targets.clone(), what="your cross_entropy")
        if isinstance(ours, Verdict):
            return ours
        expected = F.cross_entropy(logits.view(-1, 65), targets.view(-1))
        ours = torch.as_tensor(ours)
        if ours.numel() != 1:
            return not_yet(f"it returns shape {tuple(ours.shape)}: the loss is one number, the mean over "
                           "all B·T positions")
        if torch.isclose(ours, expected * 32, rtol=1e-4):
            return not_yet("that is the sum over the positions: the loss is their mean")
        if not torch.isfinite(ours):
            return not_yet("it overflows for large logits: log_softmax (or subtracting each row's max "
                           "before exp) keeps it finite")
        if not torch.isclose(ours, expected, rtol=1e-4, atol=1e-5):
            return not_yet("the value differs from F.cross_entropy: softmax over the channels, the "
                           "probability of each target, −log, then the mean")
    return correct("the same loss as F.cross_entropy, for small logits and large")
