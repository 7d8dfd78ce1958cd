"""CharTokenizer and batching: round trip, unknown characters, shapes and the shift by one.

Run: pytest tests/test_tokenizer_batches.py
"""

import pytest
import torch

from gptlib.batches import get_batch, train_val_split


def test_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.vocab_size == len(set(text))
    assert tokenizer.chars == sorted(set(text))


def test_unknown_character_is_a_value_error_naming_it(tokenizer):
    with pytest.raises(ValueError, match=r"'Z'.*'#'"):
        tokenizer.encode("Zebra#")
    with pytest.raises(ValueError):
        tokenizer.decode([tokenizer.vocab_size])


def test_split_is_90_10_in_order(data):
    train, val = train_val_split(data)
    assert len(train) == int(0.9 * len(data))
    assert torch.equal(torch.cat([train, val]), data)


def test_batch_shapes_and_shift_by_one(data):
    x, y = get_batch(data, batch_size=5, block_size=7, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 7) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted left by one
    for row_x, row_y in zip(x, y):  # and each row is a real stretch of the data
        starts = [i for i in range(len(data) - 7) if torch.equal(data[i:i + 7], row_x)]
        assert any(torch.equal(data[i + 1:i + 8], row_y) for i in starts)


def test_same_generator_seed_same_batch(data):
    a = get_batch(data, 4, 8, torch.Generator().manual_seed(3))
    b = get_batch(data, 4, 8, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
