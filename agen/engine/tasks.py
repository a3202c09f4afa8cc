"""The units that flow between the engine's workers: a generation task and a candidate to filter."""

from __future__ import annotations

from dataclasses import dataclass

from agen.gen.parse import Candidate
from agen.types import Example


@dataclass(slots=True)
class GenTask:
    id: str  # stable: "{fingerprint[:8]}-{stage}-{index:08d}"
    stage: str
    index: int
    examples: list[Example]  # the few-shot examples shown

    @property
    def key(self) -> str:
        """What sampling seeds derive from: the task's place, not the run's fingerprint, so two
        runs that differ only in how they filter see the same candidates and the same samples."""
        return f"{self.stage}/{self.index}"


@dataclass(slots=True)
class FilterJob:
    task: GenTask
    candidate: Candidate
    gen_model: str
    finish_reason: str | None = None  # the generation's, kept on the record
