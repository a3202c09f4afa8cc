"""Candidate filters: decide whether a parsed, deduplicated candidate is kept.

Answer-Consistency (verifiable tasks) and RIP (open-ended tasks) share one shape, so the
pipeline has one filter pool whatever the task kind. A filter spends money only through the
`Call` it is given, which brackets every request in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from agen.providers.client import ModelClient
from agen.types import ChatRequest, Completion

Call = Callable[[ModelClient, ChatRequest], Awaitable[Completion]]


@dataclass(frozen=True, slots=True)
class FilterTask:
    """What a filter needs to know about the candidate it judges."""

    id: str  # stable record id: ledger attribution
    key: str  # seed material for sampling: "{seed}/{stage}/{index}"
    stage: str
    question: str
    answer: str | None


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
