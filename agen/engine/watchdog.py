"""The progress watchdog: a stage that cannot reach its target stops the run, saying why.

Two signs of a stage going nowhere, both judged on committed records of *this session* (so a
resumed run, after its cause was fixed, gets a fresh window):

* the last `window` finished candidates were (`share` of them, at least) rejected for one reason
  family — every proposal a duplicate, nothing parses, every generation or filter call fails;
* at the acceptance rate seen so far, the target is out of reach within `max_attempts` even if
  the rate were twice as good.

Filter verdicts (`vote:*`, `rip:*`) are a rate, not a family: a strict filter is slow, not stuck.

The window is read in **admission order**, not commit order: a parse failure or a duplicate is
decided at once, a vote takes several round trips, so when a wide stage starts (hundreds admitted
together) its first few dozen commits are nearly all fast rejections even for a healthy model.
Once the pipeline reports admissions (`admitted`), a record joins the window only when every
candidate of its stage admitted before it has finished.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from agen.config import WatchdogConfig

# family -> (what it means, what to change)
FAMILIES: dict[str, tuple[str, str]] = {
    "duplicate": ("every candidate duplicates an earlier one or a seed",
                  "the model may be ignoring temperature/seed; raise temperature, use more or more varied "
                  "seeds, or raise dedup.near_threshold"),
    "parse": ("the model's outputs do not parse",
              "check that the model follows the template's markers, raise max_tokens if outputs are cut "
              "off, or use a stronger model"),
    "generate_failed": ("every generation request fails",
                        "check the endpoint (base_url), the model name and the key; the errors are in "
                        "rejected/*.jsonl"),
    "filter_failed": ("every filter request fails",
                      "check the filter model's endpoint, model name and key; the errors are in "
                      "rejected/*.jsonl"),
}
RATE_MARGIN = 2.0  # the rate may be this much better than seen before a target counts as out of reach


@dataclass(frozen=True)
class Stall:
    """Why a stage stopped making progress, in words a user can act on."""

    stage: str
    cause: str  # a FAMILIES key, or "unreachable"
    message: str


class Watchdog:
    """Fed every committed record; `observe` returns a Stall once a stage is going nowhere."""

    def __init__(self, cfg: WatchdogConfig) -> None:
        self.cfg = cfg
        self._recent: dict[str, deque[str | None]] = {}
        self._reasons: dict[str, deque[str]] = {}
        self._family_counts: dict[str, Counter[str]] = {}  # per stage: families in `_recent`
        self._session: dict[str, Counter[str]] = {}
        self._last_error: dict[str, str] = {}
        self._admitted: dict[str, list[int]] = {}  # per stage: a heap of admitted, unwindowed indices
        self._held: dict[str, dict[int, dict[str, Any]]] = {}  # finished ahead of an earlier admission

    def admitted(self, stage: str, index: int) -> None:
        """Candidate `index` of `stage` was admitted: later ones wait for it to join the window."""
        heapq.heappush(self._admitted.setdefault(stage, []), index)

    def observe(self, rec: dict[str, Any]) -> Stall | None:
        """Feed one committed record; a Stall if its stage is going nowhere."""
        if not self.cfg.enabled:
            return None
        heap = self._admitted.get(rec["stage"])
        if heap is None:  # admissions not reported: commit order
            return self._window(rec)
        held = self._held.setdefault(rec["stage"], {})
        held[int(rec["id"].rsplit("-", 1)[1])] = rec
        stall = None
        while heap and heap[0] in held:
            stall = self._window(held.pop(heapq.heappop(heap))) or stall
        return stall

    def _window(self, rec: dict[str, Any]) -> Stall | None:
        stage, reason = rec["stage"], rec["reason"]
        family = reason.split(":", 1)[0]
        recent = self._recent.get(stage)
        if recent is None:  # not setdefault: its default (a Counter above all) costs more than the rest
            recent = self._recent[stage] = deque(maxlen=self.cfg.window)
            self._reasons[stage] = deque(maxlen=self.cfg.window)
            self._family_counts[stage] = Counter()
            self._session[stage] = Counter()
        reasons = self._reasons[stage]
        family_counts = self._family_counts[stage]  # of `recent`, kept as it slides
        if len(recent) == recent.maxlen and (gone := recent[0]) is not None:
            family_counts[gone] -= 1
        fam = family if family in FAMILIES else None
        recent.append(fam)
        if fam is not None:
            family_counts[fam] += 1
        reasons.append(reason)
        counts = self._session[stage]
        counts["finished"] += 1
        counts["accepted"] += rec["status"] == "accepted"
        if rec.get("error"):
            self._last_error[stage] = str(rec["error"])[:300]
        if len(recent) < self.cfg.window:
            return None
        top, n = max(family_counts.items(), key=lambda kv: kv[1], default=(None, 0))
        if top is None or not n:
            return None
        if n < self.cfg.share * len(recent):
            return None
        what, advice = FAMILIES[top]
        common = Counter(r for r in reasons if r.startswith(top)).most_common(1)[0][0]
        error = f" (last error: {self._last_error[stage]})" if top.endswith("_failed") and stage in self._last_error else ""
        return Stall(stage, top, f"no progress in {stage}: {n} of the last {len(recent)} candidates ended as "
                                 f"{top}:* (mostly {common}): {what}{error}. {advice[0].upper()}{advice[1:]}")

    def check_reachable(self, stage: str, accepted: int, target: int, attempts_left: int,
                        max_attempts: int, max_attempts_key: str) -> Stall | None:
        """After `window` finished candidates this session: can the rate seen reach the target?
        `attempts_left` counts the work in flight too (it may still be accepted)."""
        counts = self._session.get(stage)
        if not self.cfg.enabled or counts is None or counts["finished"] < self.cfg.window or accepted >= target:
            return None
        rate = (counts["accepted"] + 1) / (counts["finished"] + 1)
        if accepted + attempts_left * min(1.0, rate * RATE_MARGIN) >= target:
            return None
        return Stall(stage, "unreachable",
                     f"no progress in {stage}: {counts['accepted']} of {counts['finished']} candidates accepted "
                     f"this session; at that rate {target - accepted} more cannot be had in the "
                     f"{attempts_left} attempts left (in flight included) of {max_attempts_key}={max_attempts}. Raise "
                     f"{max_attempts_key}, lower the target, or make candidates pass more often")
