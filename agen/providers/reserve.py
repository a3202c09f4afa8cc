"""How many output tokens to reserve against a tokens-per-minute budget, per stage of one lane.

A server that charges `max_tokens` up front (OpenAI) must be reserved `n x max_tokens`: that is
what it charges. A server that charges real usage afterwards would be under-used by that
(a propose call reserving ~1,460 tokens for ~550 used reaches two thirds of its TPM), so once
the lane knows it charges usage, each stage reserves a high quantile of the output tokens its
calls really returned — `max_tokens` until `WARM` calls came back — and the lane settles every
call with the truth. A quantile (not the mean) keeps under-reservation rare, and the lane's
mirror of the server's own bucket catches the rest before it becomes a 429 storm.
"""

from __future__ import annotations

import math
from collections import deque

WARM = 16  # calls per stage before the observed distribution is trusted
KEEP = 256  # most recent calls per stage the quantile is taken over
QUANTILE = 0.95
HEADROOM = 1.1


class OutputReserve:
    """The quantile is taken lazily, when a usage-charging lane asks for it, and again after every
    8 new calls of the stage: a lane that charges `max_tokens` (most) never sorts anything."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[int]] = {}
        self._cached: dict[str, int] = {}
        self._fresh: dict[str, int] = {}  # per stage: calls observed since the quantile was taken

    def per_choice(self, stage: str, max_tokens: int, usage_charged: bool) -> int:
        """Output tokens to reserve for one choice of a call of `stage` (at most `max_tokens`)."""
        if not usage_charged:
            return max_tokens
        q = self._quantile(stage)
        return max_tokens if q is None else min(max_tokens, q)

    def _quantile(self, stage: str) -> int | None:
        seen = self._seen.get(stage)
        if seen is None or len(seen) < WARM:
            return None
        if self._fresh[stage] >= 8 or stage not in self._cached:
            ordered = sorted(seen)
            self._cached[stage] = math.ceil(ordered[min(len(ordered) - 1, int(QUANTILE * len(ordered)))] * HEADROOM)
            self._fresh[stage] = 0
        return self._cached[stage]

    def observe(self, stage: str, output_tokens: int, choices: int) -> None:
        """A call of `stage` returned `choices` choices using `output_tokens` in all."""
        if choices <= 0:
            return
        seen = self._seen.get(stage)
        if seen is None:
            seen = self._seen[stage] = deque(maxlen=KEEP)
            self._fresh[stage] = 0
        seen.append(math.ceil(output_tokens / choices))
        self._fresh[stage] += 1

    def snapshot(self) -> dict[str, int]:
        """The current reservation per stage (only stages past their warm-up)."""
        return {s: q for s in self._seen if (q := self._quantile(s)) is not None}
