"""Paid results of tasks that did not commit: written when a session ends, replayed on resume.

A task cut by a stop (Ctrl-C, a fatal provider error, a storage error) may already have paid for
its generation, some vote batches, its RIP responses or some judge scores. Those results become
ledger lines `{"ev": "paid", ...}` written through the sink (fsynced with the rest of the ledger)
as the session ends. A resumed session redoes the task, and every request it asks again is
answered from here instead of being sent: generation and filters derive each request's seed, `n`
and sub-id (`{task}/v{offset}`, `/r0`, `/j{i}`) only from the task and the samples seen so far,
so the replay asks exactly the requests that were paid, in the same order, and nothing paid is
paid twice. A request that does not match what was journaled (other `n` or seed) is sent.

While a session runs, results are held in memory per task in flight (never written for tasks
that commit, which is almost all of them), so the journal costs nothing per request.
"""

from __future__ import annotations

from typing import Any

from agen.providers.reward import Reward
from agen.types import ChatRequest, Completion, ScoreRequest, Usage

__all__ = ["Journal", "base_task", "result_of"]


def base_task(task_id: str) -> str:
    """The record id a request's sub-id belongs to (`abc-propose-00000003/v8` → `abc-propose-00000003`)."""
    return task_id.split("/", 1)[0]


def _usage(u: Usage) -> dict[str, int]:
    return {"input": u.input_tokens, "cached_input": u.cached_input_tokens, "cache_write": u.cache_write_tokens,
            "output": u.output_tokens, "reasoning": u.reasoning_tokens}


def _row(req: ChatRequest | ScoreRequest, result: Completion | Reward) -> dict[str, Any]:
    row: dict[str, Any] = {"ev": "paid", "task_id": req.task_id, "model": result.model,
                           "cost_usd": result.cost_usd, "usage": _usage(result.usage),
                           "request_id": result.request_id}
    if isinstance(result, Reward):
        row["kind"], row["reward"] = "score", result.value
    else:
        row.update(kind="chat", n=req.n, seed=req.seed, texts=list(result.texts),  # type: ignore[union-attr]
                   finish=list(result.finish_reasons))
    return row


def result_of(row: dict[str, Any]) -> Completion | Reward:
    """The result a journal line holds, as the client returned it (latency 0: nothing was sent)."""
    u = row.get("usage") or {}
    usage = Usage(u.get("input", 0), u.get("cached_input", 0), u.get("cache_write", 0), u.get("output", 0),
                  u.get("reasoning", 0))
    if row["kind"] == "score":
        return Reward(row["reward"], usage, row["cost_usd"], row["model"], row.get("request_id"))
    return Completion(tuple(row["texts"]), usage, row["cost_usd"], row["model"], row.get("request_id"),
                      finish_reasons=tuple(row.get("finish") or ()))


def _matches(row: dict[str, Any], req: ChatRequest | ScoreRequest) -> bool:
    if isinstance(req, ScoreRequest):
        return row["kind"] == "score"
    return row["kind"] == "chat" and row.get("n") == req.n and row.get("seed") == req.seed


class Journal:
    """Holds what the tasks in flight have paid for; answers requests an earlier session paid for."""

    def __init__(self, replay: dict[str, dict[str, Any]] | None = None) -> None:
        self._replay = replay or {}  # request sub-id -> paid line from an earlier session
        # record id -> (request, result) of what this task paid for so far; lines are built only
        # for tasks that do not commit, at the end of the session
        self._held: dict[str, list[tuple[ChatRequest | ScoreRequest, Completion | Reward]]] = {}
        self.replayed = 0
        self.replayed_usd = 0.0

    def replay(self, req: ChatRequest | ScoreRequest) -> Completion | Reward | None:
        """The paid result of this very request, if an earlier session journaled it (used once)."""
        row = self._replay.pop(req.task_id, None)
        if row is None or not _matches(row, req):
            return None
        self.replayed += 1  # if cut again, the earlier session's line is still there for the next
        self.replayed_usd += row["cost_usd"]
        return result_of(row)

    def hold(self, req: ChatRequest | ScoreRequest, result: Completion | Reward) -> None:
        """Keep a paid result until its task commits (dropped) or the session ends (journaled)."""
        tid = req.task_id
        held = self._held.get(tid.split("/", 1)[0])
        if held is None:
            self._held[tid.split("/", 1)[0]] = [(req, result)]
        else:
            held.append((req, result))

    def drop(self, record_id: str) -> None:
        """The task committed: its record holds what matters, the results are not needed again."""
        self._held.pop(record_id, None)

    def unfinished(self, session: int) -> list[dict[str, Any]]:
        """Every held line of tasks that did not commit, stamped with the session; clears the hold."""
        rows = [dict(_row(req, res), session=session) for held in self._held.values() for req, res in held]
        self._held.clear()
        return rows

    @property
    def held_tasks(self) -> int:
        return len(self._held)
