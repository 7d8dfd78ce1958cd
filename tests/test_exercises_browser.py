"""The self-checks of "Your GPT in the browser": each accepts the reference solution and rejects a
typical wrong answer with a hint (never the answer), and a reader's exception is a verdict, not a
traceback. The page's solutions, which no notebook runs, run here on the page's own model
(book/_static/gpt-model.bin), and what the prose says of their output is checked.

Run: pytest tests/test_exercises_browser.py
"""

import json
import re
from pathlib import Path

import pytest
import torch

from gptlib.exercises import browser
from gptlib.export import load_browser_export
from helpers import accepts, boom, rejects, solution_blocks

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "browser.md"
MODEL = ROOT / "book" / "_static" / "gpt-model.bin"


@pytest.fixture(scope="module")
def page_model():
    return load_browser_export(MODEL)


# exercise 2

def per_row(w):
    scale = w.abs().amax(dim=1) / 127  # (out,)
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def test_per_row_int8():
    accepts(browser.per_row_int8(per_row))
    accepts(browser.per_row_int8(lambda w: (per_row(w)[0].float(), per_row(w)[1][:, None])))

    def per_tensor(w):
        scale = w.abs().max() / 127
        return torch.round(w / scale).to(torch.int8), scale

    def per_column(w):
        scale = w.abs().amax(dim=0) / 127  # (in,)
        return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale

    def truncated(w):
        scale = w.abs().amax(dim=1) / 127
        return (w / scale[:, None]).to(torch.int8), scale

    rejects(browser.per_row_int8(per_tensor), "whole tensor")
    rejects(browser.per_row_int8(per_column), "per column")
    rejects(browser.per_row_int8(truncated), "round")
    rejects(browser.per_row_int8(lambda w: w), "two tensors")
    rejects(browser.per_row_int8(boom), "ZeroDivisionError")


# exercise 3

def test_steps_per_character():
    accepts(browser.steps_per_character(lambda b, keep: b / (b - keep + 1)))
    rejects(browser.steps_per_character(lambda b, keep: keep), "not happen at every")
    rejects(browser.steps_per_character(lambda b, keep: b / (b - keep)), "the rebuild itself")
    rejects(browser.steps_per_character(lambda b, keep: "many"), "one number")
    rejects(browser.steps_per_character(boom), "ZeroDivisionError")


# exercise 4

def test_previous_head(page_model):
    model, tokenizer = page_model
    text = browser.PREVIOUS_TEXT[:model.config.block_size]
    from gptlib.attention_maps import attention_maps

    maps = attention_maps(model, torch.tensor(tokenizer.encode(text)))
    t = torch.arange(1, maps.shape[-1])
    share = (maps[:, :, 1:].argmax(-1) == t - 1).float().mean(-1)  # (L,nh)
    best = divmod(share.argmax().item(), share.shape[1])
    accepts(browser.previous_head(model, tokenizer, *best))
    other = next((layer, head) for layer in range(share.shape[0]) for head in range(share.shape[1])
                 if share[layer, head] < share.max() - 0.1)
    rejects(browser.previous_head(model, tokenizer, *other), "another head")
    rejects(browser.previous_head(model, tokenizer, model.config.n_layer, 0), "counts from 0")
    rejects(browser.previous_head(model, tokenizer, "first", 0), "whole numbers")
    rejects(browser.previous_head(tokenizer, model, 0, 0), "model and its tokenizer")


# the page's solutions

@pytest.fixture(scope="module")
def solutions(tmp_path_factory):
    """Every solution run once from the repository's root, each in its own namespace ->
    [(namespace, printed output)], in the order of the exercises."""
    import contextlib
    import io
    import os

    code = solution_blocks(PAGE)
    ran, here = [], os.getcwd()
    os.chdir(ROOT)  # the solutions read the page's model by its path from the root
    try:
        for block in code:
            namespace, out = {}, io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, str(PAGE), "exec"), namespace)
            ran.append((namespace, out.getvalue()))
    finally:
        os.chdir(here)
    return ran


def test_every_exercise_has_a_solution_that_runs_and_three_pass_their_check(solutions):
    section = PAGE.read_text().split("## Exercises", 1)[1]
    exercises = re.findall(r"^(\d+)\. \*\*", section, flags=re.M)
    code = solution_blocks(PAGE)
    assert len(exercises) == len(code) == 4
    for n, block in enumerate(code, start=1):
        assert block.startswith(f"# Solution to exercise {n}\n")  # their width: test_notebooks.py
    printed = "".join(out for _, out in solutions)
    assert printed.count("✓ correct") == 3 and "✗ not yet" not in printed, printed


def test_the_int8_solution_says_what_the_prose_says(solutions):
    ns, out = solutions[0]
    half, int8 = ns["half"], ns["int8"]
    assert half["dtype"] == "float16" and int8["dtype"] == "int8"
    assert 0.45 < int8["bytes"] / half["bytes"] < 0.55  # "about half"
    assert int8["max_abs_logit_error"] > 10 * half["max_abs_logit_error"]  # "tens of times"
    assert ns["first"] == 27 and "the same first 27 characters" in out  # "here for 27"


def test_the_per_row_solution_says_what_the_prose_says(solutions):
    ns, out = solutions[1]
    errors = [float(e) for e in re.findall(r"logits within ([\d.]+)", out)]
    assert len(errors) == 2 and 0.35 < errors[1] / errors[0] < 0.65  # "roughly halves"
    assert "the scales cost 19,208 bytes more" in out  # cited, with the int8 file's size
    assert solutions[0][0]["int8"]["bytes"] == 843_832
    assert "def test_javascript_reads_the_same_weights_bit_for_bit" in (
        ROOT / "tests" / "test_browser.py").read_text()


def test_the_context_solution_says_what_the_prose_says(solutions):
    ns, out = solutions[2]
    for figure in ("1.94 steps", "32.00 steps", "16.5 times"):
        assert figure in out, out
    assert ns["first"] >= 58  # "at least ... the first 58 characters after" the prompt
    assert ns["first"] == 63 and "the same first 63 characters" in out  # "(here after 63"
    assert ns["B"] == 64


def test_the_previous_head_solution_is_the_head_chapter_7_picks(solutions):
    ns, _ = solutions[3]
    share = ns["share"]
    assert share.max().item() == 1.0  # "in every row of this sample"
    assert share.flatten().sort().values[-2].item() < 0.8  # "no other head comes close"
    notebook = json.loads((ROOT / "book" / "07_train_gpt.ipynb").read_text())
    outputs = "".join("".join(o.get("text", "")) for c in notebook["cells"]
                      for o in c.get("outputs", []))
    picked = re.search(r"closer look at: .*?layer (\d+) head (\d+) \(previous\)", outputs)
    assert picked, "chapter 7 prints the head it picks for 'previous'"
    assert (int(picked[1]), int(picked[2])) == (ns["layer"], ns["head"])
