"""Cooperative time slices: keep any one turn of the event loop short when work arrives in bursts.

A loop turn runs every callback that was ready when it began. When hundreds of responses land
together (a stage starting, a group commit releasing its requests), hundreds of task steps share
one turn, and the timers, the sink and every other lane wait for all of them. Workers call
`Turns.checkpoint()` before a chunk of CPU work (parse, dedup, building the next request): once the
current slice has run longer than `slice_s`, the step yields, and the rest of the burst continues
in later turns with I/O and timers served in between. Throughput is unchanged; lag is bounded by
about one slice.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["Turns"]


class Turns:
    __slots__ = ("_since", "slice_s", "yields")

    def __init__(self, slice_s: float = 0.01) -> None:
        self.slice_s = slice_s
        self._since = time.perf_counter()
        self.yields = 0

    async def checkpoint(self) -> None:
        """Yield to the loop if the current slice is used up (~50 ns when it is not)."""
        if time.perf_counter() - self._since > self.slice_s:
            self.yields += 1
            await asyncio.sleep(0)
            self._since = time.perf_counter()
