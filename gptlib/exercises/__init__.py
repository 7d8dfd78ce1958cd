"""Self-checks for the book's exercises: call one with your answer and read the verdict.

Each chapter has its module (``gptlib.exercises.ch03`` for chapter 3, ...). A check takes what the
exercise asks for (a tensor, a function, a module, a number), tests it against the property the
exercise is about, and returns a `Verdict`: printed, it says "correct" with what was confirmed, or
"not yet" with a hint. It never prints the answer.

    from gptlib.exercises import ch03
    ch03.encoder_head(EncoderHead)   # -> ✓ correct: ...   or   ✗ not yet: ... (hint)
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """The result of a self-check: whether the answer passed, and what to tell the reader."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return ("✓ correct: " if self.passed else "✗ not yet: ") + self.message

    __str__ = __repr__

    def _repr_pretty_(self, printer, cycle) -> None:  # how Jupyter shows a cell's last value
        printer.text(repr(self))


def correct(message: str) -> Verdict:
    """A passing verdict that says what was confirmed."""
    return Verdict(True, message)


def not_yet(hint: str) -> Verdict:
    """A failing verdict with a hint towards the answer (never the answer itself)."""
    return Verdict(False, hint)


def run_answer(fn, *args, what: str = "your function"):
    """Call the reader's ``fn(*args)``; an exception becomes a `Verdict` instead of a traceback."""
    try:
        return fn(*args)
    except Exception as error:  # a reader's code may raise anything; the check reports it
        return not_yet(f"{what} raised {type(error).__name__}: {error}")


def run_number(fn, *args, what: str = "your function", hint: str = "return one number"):
    """`run_answer` for an answer that must be one number: a float, or a `Verdict` saying what went wrong."""
    got = run_answer(fn, *args, what=what)
    if isinstance(got, Verdict):
        return got
    try:
        return float(got)
    except (TypeError, ValueError):
        return not_yet(hint)
