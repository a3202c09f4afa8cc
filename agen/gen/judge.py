"""Parse an LLM judge's reply (configs/templates/open_judge.txt) into a score, strictly.

A reply whose score cannot be read without guessing gives None; the pipeline counts it as a
judge failure for that response instead of inventing a number, because one misread score
moves a prompt's minimum reward, and the minimum is what RIP filters on.

Accepted (after `<think>…</think>` is stripped), on a line of its own:

    Score: 7            score: 7/10          **Score:** 7         **Score: 7**
    Final score: 7      Overall rating = 7   Rating: 7.5          7/10   (last line only)

That is: an optional `final`/`overall`, the word `score` or `rating`, `:` or `=`, a number, an
optional `/10`; markdown (`*`, `#`, `_`, `` ` ``) and a trailing period are ignored. Per-criterion
lines ("Helpfulness: 8/10") are not final scores and are ignored. Every such line must give the
same value, otherwise the reply is ambiguous (None); a value outside [lo, hi] is None. A bare
`N/10` counts only as the last non-empty line and only when no labelled line exists.
"""

from __future__ import annotations

import math
import re

from agen.gen.parse import strip_think

__all__ = ["parse_judge_score"]

_NUM = r"(\d+(?:\.\d+)?)"
_DECOR = r"[ \t*_#`>\-]*"  # before the label: markdown, quote or list markers
_MARK = r"[ \t*_#`]*"  # around the number: markdown only (a '-' would hide a negative score)
_LABELLED = re.compile(
    rf"^{_DECOR}(?:(?:final|overall)\s+)?(?:score|rating){_MARK}[:=]{_MARK}{_NUM}"
    rf"(?:\s*/\s*10)?{_MARK}\.?{_MARK}$",
    re.IGNORECASE | re.MULTILINE,
)
_BARE = re.compile(rf"^{_MARK}{_NUM}\s*/\s*10{_MARK}\.?{_MARK}$")


def parse_judge_score(text: str, lo: float = 1, hi: float = 10) -> float | None:
    """The judge's final score in [lo, hi], or None if missing, out of range or ambiguous."""
    body = strip_think(text)
    values = [float(m.group(1)) for m in _LABELLED.finditer(body)]
    if not values:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        m = _BARE.match(lines[-1]) if lines else None
        if m is None:
            return None
        values = [float(m.group(1))]
    if any(v != values[-1] for v in values):
        return None
    score = values[-1]
    if not math.isfinite(score) or not lo <= score <= hi:
        return None
    return score
