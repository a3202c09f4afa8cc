"""Candidate filters: decide whether a parsed, deduplicated candidate is kept.

Answer-Consistency (verifiable tasks) and RIP (open-ended tasks) share one shape, so the
pipeline has one filter pool whatever the task kind. A filter spends money only through the
`Call` it is given, which brackets every request in the ledger.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from agen.errors import FatalRunError, Stopped
from agen.types import ChatRequest, ScoreRequest

# The pipeline's ledger-bracketed call: (ModelClient, ChatRequest) -> Completion, or
# (RewardClient, ScoreRequest) -> Reward.
Call = Callable[[Any, ChatRequest | ScoreRequest], Awaitable[Any]]


async def gather_settled(*aws: Awaitable[Any]) -> list[Any]:
    """Like gather, but every call ends before anything is raised, so no request is left running
    unowned (its cost would miss the record and its ledger lines the session). Then the most
    serious error wins: FatalRunError (stop the run), then Stopped (leave the task uncommitted,
    its paid results journaled), then any other. One call (a vote wave asked with `n`) is awaited
    as it is: no task to make and schedule."""
    if len(aws) == 1:
        return [await aws[0]]
    results = await asyncio.gather(*aws, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise next((e for e in errors if isinstance(e, FatalRunError)),
                   next((e for e in errors if isinstance(e, Stopped)), errors[0]))
    return results


class FilterAborted(Stopped):
    """The run stopped while the candidate waited (e.g. on a pilot): leave it uncommitted."""


class TargetMet(Exception):
    """The stage's target was met while this candidate was being judged: nothing more is sent
    for it, and it is committed as `surplus:not_filtered` with what was already paid for
    (`detail`). Not `Stopped`: that leaves a task uncommitted for a resume to redo, but a met
    target has nothing to redo."""

    def __init__(self, detail: dict[str, Any]) -> None:
        super().__init__("target met")
        self.detail = detail


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class FilterTask:
    """What a filter needs to know about the candidate it judges."""

    id: str  # stable record id: ledger attribution
    key: str  # seed material for sampling: "{seed}/{stage}/{index}"
    stage: str
    question: str
    answer: str | None
    enough: Callable[[], bool] = _never  # the stage's target is met: checked before each paid batch


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str  # "vote:agree", "rip:large_gap", ...
    detail: dict[str, Any] = field(default_factory=dict)  # merged into the record


class CandidateFilter(Protocol):
    model: str  # the configured model name that answers, for the record

    async def judge(self, task: FilterTask) -> Verdict:
        """Raises FatalRunError (stop the run) or TaskFailedError (record the task as failed)."""
        ...

    def min_in_flight(self, stage: str) -> int:
        """Candidates of `stage` that must be in flight together before any can be decided (a pilot)."""
        ...

    def finish_pilot(self, stage: str | None = None) -> None:
        """No more candidates of `stage` (None: of any stage) are coming: decide with what there is."""
        ...

    def abort_pilot(self) -> None:
        """The run is stopping: release candidates waiting on the pilot undecided."""
        ...

    async def aclose(self) -> None:
        """The run is over: release what the filter holds (worker processes)."""
        ...
