"""What the pipeline asks of the other workers of a run: the seam `agen/coord` implements on Redis.

On one machine (`Solo`) every answer is trivial: indices are handed out in order (skipping what is
committed), nobody else accepts anything, every record may be written, no other worker has seen a
question. With `coordinator:` (`agen.coord.RedisCoordination`) the same calls go to Redis, so the
engine is one program either way.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Protocol

from agen.types import Example


class Coordination(Protocol):
    tick_s: float | None  # how often `tick` runs (renew leases, read others' counts and proposals); None: never

    async def claim(self, stage: str, limit: int) -> int | None:
        """The next task index of `stage` this worker runs (below `limit`), or None: none left."""

    def others_accepted(self, stage: str) -> int:
        """Accepted examples of `stage` committed by the other workers (as of the last tick)."""

    def others_in_flight(self, stage: str) -> float:
        """What the other workers expect their work in flight to add to `stage` (last tick)."""

    async def before_write(self, records: list[dict[str, Any]]) -> set[str]:
        """Called before a group commit is written: the ids this worker may no longer write (its
        claim was lost to another worker); the rest are marked as being committed."""

    def committed(self, records: list[dict[str, Any]]) -> None:
        """The records are fsynced: mark their indices done (may run in the background)."""

    async def take_slot(self, stage: str, index: int, target: int) -> bool:
        """An accepted verdict of task `index`: whether it still fits under the run's `target`
        (counting every worker's committed and about-to-commit accepted records); if not, surplus."""

    async def seen(self, key: int, task_id: str) -> str | None:
        """Record a question's exact-duplicate key for the run; the task id that had it first if
        that was another task, else None."""

    def others_spent(self) -> tuple[float, int]:
        """What the other workers have spent or expect their work in flight to cost (USD), and the
        tokens they have spent, as of the last tick: the budget is the run's."""

    async def tick(self, in_flight: dict[str, float], spent: tuple[float, int]) -> list[Example]:
        """Renew this worker's claims, publish what its work in flight is expected to add
        (`in_flight`, per stage) and what it has spent (`spent`: USD with its work in flight's expected
        cost, tokens; every session), and
        read the others'; the proposals the other workers accepted since the last tick."""

    async def aclose(self) -> None:
        """Give back claimed, uncommitted indices at once (a clean stop); close connections."""


class Solo:
    """One worker: indices in order, nothing shared."""

    tick_s: float | None = None

    def __init__(self, fingerprint: str, done_ids: Container[str]) -> None:
        self._fp, self._done = fingerprint[:8], done_ids
        self._next: dict[str, int] = {}

    async def claim(self, stage: str, limit: int) -> int | None:
        i = self._next.get(stage, 0)
        while i < limit and f"{self._fp}-{stage}-{i:08d}" in self._done:
            i += 1
        self._next[stage] = i + 1
        return i if i < limit else None

    def others_accepted(self, stage: str) -> int:
        return 0

    def others_in_flight(self, stage: str) -> float:
        return 0.0

    async def before_write(self, records: list[dict[str, Any]]) -> set[str]:
        return set()

    def committed(self, records: list[dict[str, Any]]) -> None:
        pass

    async def take_slot(self, stage: str, index: int, target: int) -> bool:
        return True

    async def seen(self, key: int, task_id: str) -> str | None:
        return None

    def others_spent(self) -> tuple[float, int]:
        return (0.0, 0)

    async def tick(self, in_flight: dict[str, float], spent: tuple[float, int]) -> list[Example]:
        return []

    async def aclose(self) -> None:
        pass
