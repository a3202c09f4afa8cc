"""What a worker directory's shards say to the coordinator: committed indices, proposals, questions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agen.coord.layout import task_index
from agen.run.shards import read_records


@dataclass(frozen=True, slots=True)
class Committed:
    id: str
    stage: str
    index: int
    accepted: bool
    question: str | None  # for the shared exact-duplicate set (None: never admitted to a filter)
    answer: str | None
    category: str | None


def committed_records(run_dir: Path) -> Iterator[Committed]:
    """Every committed record of one worker directory (accepted, rejected, failed, surplus)."""
    for stream in ("accepted", "rejected"):
        folder = run_dir / stream
        if not folder.exists():
            continue
        for r in read_records(folder):
            stage, index = task_index(r["id"])
            reason = r.get("reason", "")
            admitted = r.get("question") and not reason.startswith(("parse:", "duplicate:"))
            yield Committed(r["id"], stage, index, r["status"] == "accepted",
                            r["question"] if admitted else None, r.get("answer"), r.get("category"))
