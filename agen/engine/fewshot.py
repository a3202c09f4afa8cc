"""Which examples a generation prompt shows: seeds for propose, accepted proposals for amplify.

Amplify spreads the pool's use instead of drawing uniformly (which let a handful of early
proposals fill most prompts): the pool is kept in a *rotation* ordered by a seeded hash of each
example's id, and task `index` shows the `shots` members at rotation positions
`index*shots … index*shots + shots - 1` (mod the pool's size).

What is guaranteed: the examples of a task are a function of (run seed, stage, index, pool as of
the task's admission) alone — no usage counters, so a resumed run that redoes task `index` with
the same pool shows the same examples. While the pool does not change, consecutive tasks walk
the rotation, which is exactly least-used-first: over any s consecutive slots every member is
shown ⌊s/n⌋ or ⌈s/n⌉ times. A member that joins later takes its hashed place in the rotation at
once. (Which members a redone task sees can still differ if the pool grew between sessions: the
pool as of admission is what counts.)
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agen.config import StageConfig
from agen.types import Example

__all__ = ["COVERAGE_TASKS", "FewShotCoverage", "Rotation", "coverage", "pick_examples"]

COVERAGE_TASKS = 100  # few-shot coverage is reported over this many amplify tasks


class _Draws:
    """The few random draws one task's pick needs, read off a keyed hash of the task's place.

    `random.Random(seed)` fills a 2.5 KB Mersenne Twister state per task (~25k instructions, ~1%
    of the engine's CPU per request) to make two to six draws; here one 64-byte blake2b of the key
    gives eight, and the next eight (rarely needed) hash the key with a block counter.
    Deterministic across processes and platforms, like the seed it replaces.
    """

    __slots__ = ("_at", "_block", "_bytes", "_key")

    def __init__(self, key: str) -> None:
        self._key = key.encode()
        self._block = self._at = 0
        self._bytes = hashlib.blake2b(self._key, digest_size=64).digest()

    def random(self) -> float:
        """The next draw, uniform in [0, 1) (53 bits)."""
        at = self._at
        if at == 64:
            self._block += 1
            self._bytes = hashlib.blake2b(self._key, digest_size=64, salt=self._block.to_bytes(8, "little")).digest()
            at = 0
        self._at = at + 8
        return (int.from_bytes(self._bytes[at : at + 8], "little") >> 11) * (1.0 / (1 << 53))

    def choice(self, seq: Sequence[Example]) -> Example:
        return seq[int(self.random() * len(seq))]


def _rank(run_seed: int, ex_id: str) -> bytes:
    return hashlib.blake2b(f"{run_seed}/{ex_id}".encode(), digest_size=8).digest()


class Rotation:
    """The amplify pool in seeded-hash order, kept incrementally as the (append-only) pool grows."""

    __slots__ = ("_keys", "_members", "_seen", "run_seed")

    def __init__(self, run_seed: int) -> None:
        self.run_seed = run_seed
        self._keys: list[bytes] = []
        self._members: list[Example] = []
        self._seen = 0

    def sync(self, pool: Sequence[Example]) -> list[Example]:
        """Take in the members appended to `pool` since the last call; the rotation in order."""
        if len(pool) < self._seen:  # a different pool (tests): start over
            self._keys, self._members, self._seen = [], [], 0
        for ex in pool[self._seen:]:
            key = _rank(self.run_seed, ex.id)
            at = bisect.bisect(self._keys, key)
            self._keys.insert(at, key)
            self._members.insert(at, ex)
        self._seen = len(pool)
        return self._members


def _from_seeds(rng: _Draws, seeds: list[Example], shots: list[Example], want: int,
                category: str | None) -> None:
    """Fill `shots` up to `want` with distinct seeds (of `category` where there are enough)."""
    same = [ex for ex in seeds if ex.category == category] if category is not None else seeds
    source = same or seeds
    for _ in range(want * 4):  # a few redraws for duplicates
        if len(shots) >= want:
            return
        pick = rng.choice(source)
        if pick not in shots:
            shots.append(pick)


def pick_examples(sc: StageConfig, stage: str, index: int, run_seed: int, seeds: list[Example],
                  pool: list[Example], open_ended: bool, rotation: Rotation | None = None) -> list[Example]:
    """The few-shot examples of task `index`, deterministic from its place (see the module doc):
    random seeds for propose; for amplify, accepted proposals from the rotation, each slot taken
    from the seeds instead with probability `seed_mix`. Open-ended tasks show one category."""
    rng = _Draws(f"{run_seed}/{stage}/{index}")
    if stage != "amplify" or not pool:
        category = rng.choice(seeds).category if open_ended else None
        shots: list[Example] = []
        _from_seeds(rng, seeds, shots, sc.shots, category)
        return shots
    members = (rotation or Rotation(run_seed)).sync(pool)
    n = len(members)
    start = (index * sc.shots) % n
    category = members[start].category if open_ended else None
    from_seeds = sum(rng.random() < sc.seed_mix for _ in range(sc.shots))
    shots = []
    for j in range(n):  # the walk from `start` stops at the last slot it fills (not O(pool) per task)
        if len(shots) >= sc.shots - from_seeds:
            break
        ex = members[(start + j) % n]
        if category is None or ex.category == category:
            shots.append(ex)
    _from_seeds(rng, seeds, shots, sc.shots, category)
    return shots


@dataclass(frozen=True, slots=True)
class FewShotCoverage:
    """How widely amplify's prompts drew on the accepted proposals (over the first `tasks`)."""

    tasks: int
    slots: int  # proposal slots shown (seed slots excluded)
    distinct: int  # distinct proposals shown
    pool: int  # accepted proposals available by the end
    top3_share: float  # share of the slots taken by the three most-shown proposals

    def as_dict(self) -> dict[str, float | int]:
        return {"tasks": self.tasks, "slots": self.slots, "distinct": self.distinct, "pool": self.pool,
                "top3_share": round(self.top3_share, 4)}


def coverage(shown: Iterable[Sequence[str]], proposal_ids: set[str], pool: int) -> FewShotCoverage:
    """Coverage of a sequence of tasks' shown example ids (only ids in `proposal_ids` count)."""
    uses: Counter[str] = Counter()
    tasks = 0
    for ids in shown:
        tasks += 1
        uses.update(i for i in ids if i in proposal_ids)
    slots = sum(uses.values())
    top3 = sum(n for _, n in uses.most_common(3))
    return FewShotCoverage(tasks, slots, len(uses), pool, top3 / slots if slots else 0.0)
