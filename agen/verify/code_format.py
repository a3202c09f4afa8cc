"""The text shapes of `verify: code`: tests inside a question, code inside a model's output.

A code question is a problem statement with the function's signature, then a line `Tests:` and
one `assert` line per test. The tests stay in the question (solvers see what they are checked
against, as in MBPP) and records also carry them split out, for `agen export --format rl`.
"""

from __future__ import annotations

import re

from agen.gen.parse import strip_think

__all__ = ["extract_code", "split_tests"]

_TESTS_LINE = re.compile(r"^[ \t]*Tests:[ \t]*$", re.M | re.I)
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)


def split_tests(question: str) -> tuple[str, tuple[str, ...]]:
    """(statement, assert lines). The tests are the `assert` lines after `Tests:` (or, without
    that line, every line starting with `assert`)."""
    m = _TESTS_LINE.search(question)
    head, tail = (question[: m.start()], question[m.end():]) if m else (question, question)
    tests = tuple(line.strip() for line in tail.splitlines() if line.strip().startswith("assert "))
    return head.strip(), tests


def extract_code(text: str) -> str | None:
    """The last fenced code block outside the reasoning (```python … ```); None if there is none."""
    blocks = _FENCE.findall(strip_think(text))
    code = blocks[-1].strip("\n") if blocks else ""
    return code if code.strip() else None
