"""Read the ledger back, streaming: what every earlier session spent, what a crash left unknown,
and the journal of paid results of tasks that never committed (see `run/journal.py`)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agen.cost import CostBook
from agen.run.journal import base_task
from agen.run.shards import read_records
from agen.types import CallRecord, Usage

STAGES = ("propose", "amplify")


@dataclass(frozen=True)
class PreviousSessions:
    billing_unknown: int  # requests begun but cut off before they ended: billed or not, nobody knows
    redone_usd: float  # spent on tasks that never committed and not journaled: this session pays it again
    journaled_usd: float = 0.0  # spent on tasks that never committed, results journaled: replayed, not paid again
    journal: dict[str, dict[str, Any]] = field(default_factory=dict)  # request sub-id -> paid line
    paid_ids: frozenset[str] = frozenset()  # sub-ids of uncommitted tasks' paid calls: paying one again is "redone"


def call_from_row(row: dict[str, Any]) -> CallRecord:
    u = row.get("usage") or {}
    return CallRecord(ts=row.get("ts", 0.0), model=row["model"], stage=row["stage"], task_id=row["task_id"],
                      outcome=row["outcome"], status=row.get("status"),
                      usage=Usage(u.get("input", 0), u.get("cached_input", 0), u.get("cache_write", 0),
                                  u.get("output", 0), u.get("reasoning", 0)),
                      cost_usd=row.get("cost_usd", 0.0), latency_s=row.get("latency_s", 0.0),
                      request_id=row.get("request_id"), saved_usd=row.get("saved_usd", 0.0))


def costs_from_ledger(root: Path, done_ids: Container[str]) -> tuple[CostBook, PreviousSessions]:
    """A CostBook holding every call ever made for this run (spend is continuous across resumes),
    built in one streaming pass: only requests still open and the calls and journal lines of
    uncommitted tasks are kept, never the whole ledger."""
    book = CostBook()
    open_requests: set[tuple[Any, Any]] = set()
    uncommitted: dict[str, float] = {}  # sub-id -> spent, for tasks whose record never committed
    journal: dict[str, dict[str, Any]] = {}
    folder = root / "ledger"
    for row in read_records(folder) if folder.exists() else ():
        ev = row.get("ev")
        if ev == "call":
            rec = call_from_row(row)
            book.add(rec)
            if rec.stage.split(".", 1)[0] in STAGES and base_task(rec.task_id) not in done_ids:
                uncommitted[rec.task_id] = uncommitted.get(rec.task_id, 0.0) + rec.cost_usd
        elif ev == "begin":
            open_requests.add((row.get("session"), row.get("req")))
        elif ev == "end":
            if not row.get("cut"):
                open_requests.discard((row.get("session"), row.get("req")))
        elif ev == "paid" and base_task(row["task_id"]) not in done_ids:
            journal[row["task_id"]] = row
    journaled = sum(usd for tid, usd in uncommitted.items() if tid in journal)
    redone = sum(usd for tid, usd in uncommitted.items() if tid not in journal)
    paid = frozenset(tid for tid, usd in uncommitted.items() if usd > 0)
    return book, PreviousSessions(len(open_requests), redone, journaled, journal, paid)
