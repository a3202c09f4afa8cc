"""Rebuild a run's state from its data files: what is done, what was accepted, what dedup knows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agen.types import Example
from agen.run.committed import CommittedIds
from agen.run.rundir import RunDir
from agen.run.shards import read_records


@dataclass
class RestoredStage:
    accepted: int = 0
    finished: int = 0
    spent_usd: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class Restored:
    """Everything a resumed run needs; empty for a new run."""

    done_ids: CommittedIds = field(default_factory=CommittedIds)
    counts: dict[str, RestoredStage] = field(default_factory=dict)
    pool: list[Example] = field(default_factory=list)  # accepted proposals, in commit order
    dedup_items: list[tuple[str, str]] = field(default_factory=list)  # (id, question) admitted to voting


def restore(run_dir: RunDir) -> Restored:
    """Read accepted and rejected shards; ids are the set difference that resume works from."""
    out = Restored()
    for stream in ("accepted", "rejected"):
        folder = run_dir.stream(stream)
        if not folder.exists():
            continue
        for r in read_records(folder):
            rid = r["id"]
            out.done_ids.add(rid)
            c = out.counts.setdefault(r["stage"], RestoredStage())
            c.finished += 1
            c.spent_usd += r.get("cost_usd") or 0.0
            c.reasons[r["reason"]] += 1
            if r["status"] == "accepted":
                c.accepted += 1
                if r["stage"] == "propose":
                    out.pool.append(Example(rid, r["question"], r["answer"], r.get("category")))
            reason = r["reason"]
            if r.get("question") and not reason.startswith(("parse:", "duplicate:")):
                out.dedup_items.append((rid, r["question"]))
    return out
