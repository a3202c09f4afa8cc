"""Read the ledger back: what every earlier session spent, and what a crash left unknown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agen.cost import CostBook
from agen.run.rundir import read_ledger
from agen.types import CallRecord, Usage


@dataclass(frozen=True)
class PreviousSessions:
    billing_unknown: int  # requests begun but cut off before they ended: billed or not, nobody knows
    redone_usd: float  # spent on tasks that never committed, so this session does them again


def call_from_row(row: dict[str, Any]) -> CallRecord:
    u = row.get("usage") or {}
    return CallRecord(ts=row.get("ts", 0.0), model=row["model"], stage=row["stage"], task_id=row["task_id"],
                      outcome=row["outcome"], status=row.get("status"),
                      usage=Usage(u.get("input", 0), u.get("cached_input", 0), u.get("cache_write", 0),
                                  u.get("output", 0), u.get("reasoning", 0)),
                      cost_usd=row.get("cost_usd", 0.0), latency_s=row.get("latency_s", 0.0),
                      request_id=row.get("request_id"))


def costs_from_ledger(root: Path, done_ids: set[str]) -> tuple[CostBook, PreviousSessions]:
    """A CostBook holding every call ever made for this run, so spend is continuous across resumes."""
    summary = read_ledger(root)
    book = CostBook()
    redone = 0.0
    for row in summary.calls:
        rec = call_from_row(row)
        book.add(rec)
        if rec.stage.split(".", 1)[0] in ("propose", "amplify") and rec.task_id.split("/", 1)[0] not in done_ids:
            redone += rec.cost_usd  # a candidate's calls whose record never committed
    return book, PreviousSessions(summary.billing_unknown, redone)
