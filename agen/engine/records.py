"""The record of a finished candidate, as written to the shards, and the ledger line of one HTTP attempt
(see docs/architecture.md)."""

from __future__ import annotations

import time
from typing import Any

from agen.config import RunConfig
from agen.engine.tasks import GenTask
from agen.gen.parse import Candidate
from agen.types import CallRecord
from agen.verify import domain_fields


def build_record(cfg: RunConfig, session: int, task: GenTask, cand: Candidate | None, status: str,
                 reason: str, model: str, cost_usd: float, extra: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": task.id, "stage": task.stage, "status": status, "reason": reason,
        "question": cand.question if cand else None, "answer": cand.answer if cand else None,
        "model": model, "wire_model": cfg.models[model].model,
        "seeds": [ex.id for ex in task.examples], "session": session,
        "created": time.time(),
    }
    if cfg.task == "open_ended":
        rec["category"] = task.examples[0].category if task.examples else None
    else:
        rec.update(domain_fields(cfg.verify, cand.question if cand else None))
    rec.update(extra)
    rec["cost_usd"] = round(cost_usd, 8)
    return rec


def usage_dict(u: Any) -> dict[str, int]:
    """A call's usage as the ledger writes it."""
    return {"input": u.input_tokens, "cached_input": u.cached_input_tokens,
            "cache_write": u.cache_write_tokens, "output": u.output_tokens, "reasoning": u.reasoning_tokens}


def call_row(session: int, rec: CallRecord) -> dict[str, Any]:
    """The ledger's `call` line of one HTTP attempt (made once a request: compiled with the rest here)."""
    row: dict[str, Any] = {
        "ev": "call", "session": session, "ts": rec.ts, "model": rec.model, "stage": rec.stage,
        "task_id": rec.task_id, "outcome": rec.outcome, "status": rec.status, "cost_usd": rec.cost_usd,
        "latency_s": rec.latency_s, "request_id": rec.request_id, "usage": usage_dict(rec.usage)}
    if rec.mode != "online":
        row["mode"] = rec.mode
    if rec.saved_usd:
        row["saved_usd"] = rec.saved_usd
    return row
