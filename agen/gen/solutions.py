"""The solutions a vote keeps for training: the shortest few that agree, each cut after its final box.

Pure and synchronous, so it is compiled (`agen/native.py`); `filters/answer_consistency` calls it
once a vote is decided."""

from __future__ import annotations

from agen.gen.parse import extract_boxed

__all__ = ["MAX_SOLUTIONS", "MAX_SOLUTION_CHARS", "keep_solutions", "through_final_box"]

MAX_SOLUTIONS = 3
MAX_SOLUTION_CHARS = 8000


def through_final_box(text: str) -> str:
    """The solution up to and including its final `\\boxed{…}` (trailing chatter dropped)."""
    at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    inner = extract_boxed(text[at:]) if at >= 0 else None
    if inner is None:
        return text.strip()
    close = text.index(inner, at) + len(inner)
    close = text.index("}", close)
    return text[: close + 1].strip()


def keep_solutions(agreeing: list[str]) -> list[str]:
    """The shortest few agreeing solutions, each within the size cap (ties: the earliest first).

    Only the solutions that can still be among the shortest are cut: a cut keeps everything from
    the first non-blank character to its final box, so its length is at least the final box's
    offset past the leading blanks, which two `rfind`s tell without parsing. Solutions are cut in
    the order of that bound until the next bound exceeds the longest of those kept."""
    bounds = []
    for i, t in enumerate(agreeing):
        at = max(t.rfind("\\boxed"), t.rfind("\\fbox"))
        bounds.append((at - (len(t) - len(t.lstrip())) if at >= 0 else len(t.strip()), i))
    bounds.sort()
    kept: list[tuple[int, int, str]] = []  # (length, index, cut), the shortest first
    for bound, i in bounds:
        if len(kept) >= MAX_SOLUTIONS and bound > kept[MAX_SOLUTIONS - 1][0]:
            break
        cut = through_final_box(agreeing[i])
        if len(cut) <= MAX_SOLUTION_CHARS:
            kept.append((len(cut), i, cut))
            kept.sort()
    return [cut for _, _, cut in kept[:MAX_SOLUTIONS]]
