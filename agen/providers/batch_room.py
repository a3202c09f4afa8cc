"""Whether a new batch may go to the provider now, as its full queue has taught us.

A provider caps what an account's unfinished batches may hold (OpenAI: enqueued tokens per model;
Anthropic: requests in its batch queue). A batch over the cap is refused (OpenAI fails it in
validation with `token_limit_exceeded`, Anthropic answers the create with a 429); nothing ran and
nothing was billed, so its lines should simply wait. Without a gate every waiting batch would be
refused again each time one might fit (each refusal an upload of the whole input file, for
OpenAI), so after a refusal batches go one at a time, each once the provider took the one before,
until `OPEN_AFTER` in a row were taken:

    open ──refused──▶ closed ──one of ours ended, or the backoff passed──▶ probe (one goes)
      ▲                 ▲                                                   │    ▲
      │                 └──────────refused, or the probe gave no answer─────┤    │ accepted
      └──────────────────────── OPEN_AFTER accepted in a row ───────────────┴────┘
"""

from __future__ import annotations

import asyncio
from typing import Literal

__all__ = ["OPEN_AFTER", "RoomGate"]

OPEN_AFTER = 4  # batches taken one after another before everyone may submit at once again
FALLBACK_CAP = 8  # the backoff grows to this many times `backoff_max_s`


class RoomGate:
    """`await enter()` before submitting a batch; then tell the gate what the provider said."""

    def __init__(self, backoff_min_s: float, backoff_max_s: float) -> None:
        self._min = backoff_min_s
        self._max = max(backoff_min_s, backoff_max_s)
        self._delay = self._min
        self._state: Literal["open", "closed", "probe", "probing"] = "open"
        self._event = asyncio.Event()
        self._event.set()
        self._timer: asyncio.TimerHandle | None = None
        self._streak = 0  # probes taken in a row since the last refusal
        self.refusals = 0

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    async def enter(self) -> bool:
        """Wait for a turn; True if this submission is the probe (then `accepted`, `refused` or
        `probe_done` must follow)."""
        while True:
            await self._event.wait()
            if self._state == "open":
                return False
            if self._state == "probe":  # the first woken goes; the others wait for its answer
                self._state = "probing"
                self._event.clear()
                return True
            self._event.clear()

    def accepted(self) -> None:
        """The provider took a batch: the next one may go (everyone, after `OPEN_AFTER` in a row)."""
        if self._state == "open":
            return
        self._cancel_timer()
        self._delay = self._min
        self._streak += 1
        self._state = "open" if self._streak >= OPEN_AFTER else "probe"
        self._event.set()

    def refused(self, retry_after_s: float | None, ours_open: bool) -> None:
        """A batch was refused for want of room. With batches of ours open, one ending is the cue, and
        the doubling backoff is only a fallback (others may hold the room), from `backoff_max_s` up;
        with none open, the backoff is the cue, from `backoff_min_s` up."""
        self.refusals += 1
        self._streak = 0
        self._state = "closed"
        self._event.clear()
        if ours_open:
            self._delay = max(self._delay, self._max)
        delay, self._delay = self._delay, min(2 * self._delay, FALLBACK_CAP * self._max)
        self._arm(max(delay, retry_after_s or 0.0))

    def room_likely(self) -> None:
        """One of our batches ended: if the gate is closed, let a probe go now."""
        if self._state == "closed":
            self._probe()

    def probe_done(self) -> None:
        """The probe ended without an answer about room (stopped, failed): close, probe again later."""
        if self._state == "probing":
            self._state = "closed"
            self._arm(self._delay)

    def release_all(self) -> None:
        """The run is stopping: every waiter goes on (and sees the stop)."""
        self._cancel_timer()
        self._state = "open"
        self._event.set()

    def _probe(self) -> None:
        self._cancel_timer()
        if self._state == "closed":
            self._state = "probe"
            self._event.set()

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay, self._probe)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
