"""Anthropic's Message Batches API as the sim serves it (the official shapes; `agen.sim.batches` runs the jobs).

    POST   /v1/messages/batches                {requests: [{custom_id, params}]} -> the batch
    GET    /v1/messages/batches                list, newest first (`limit`, `after_id`, `before_id`)
    GET    /v1/messages/batches/{id}           the batch
    GET    /v1/messages/batches/{id}/results   JSONL once ended: {"custom_id", "result": {"type": ...}}
    POST   /v1/messages/batches/{id}/cancel    -> canceling -> ended
    DELETE /v1/messages/batches/{id}           an ended batch

`processing_status` is in_progress, canceling or ended; as documented, `request_counts` keep every
request under `processing` until the batch ends. A batch may mix models; its params are validated
when its line is answered (an `errored` result), its custom_ids at create. Result types:
succeeded (`message`: the online answer, usage included), errored (`error`: the online error body;
`line_error_p` gives api_error), canceled, expired (`expire_p`). With `max_enqueued_tokens` a batch
that would exceed it is refused at create with a 429 rate_limit_error.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agen.sim import rest
from agen.sim.batches import Job
from agen.sim.openai_batches import DAY, prompt_tokens

if TYPE_CHECKING:
    from agen.sim.batches import AnswerLine
    from agen.sim.server import SimState

MAX_REQUESTS = 100_000
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_RESULT = {"ok": "succeeded", "error": "errored", "canceled": "canceled", "expired": "expired"}


def rfc3339(t: float | None) -> str | None:
    """Anthropic's timestamps: RFC 3339 UTC with microseconds."""
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MessageBatchRoutes:
    def __init__(self, st: SimState, answer: AnswerLine) -> None:
        self.st = st
        self.answer = answer

    def _start(self, request: web.Request) -> tuple[str, web.Response | None]:
        return rest.admit(request, "anthropic", self.st)

    def _job(self, request: web.Request, rid: str) -> Job | web.Response:
        bid = request.match_info["batch_id"]
        job = self.st.batches.jobs.get(bid)
        if job is None or job.wire != "anthropic":
            return rest.error("anthropic", rid, 404, f"message_batch_id: no Message Batch found with id {bid!r}")
        return job

    def _object(self, request: web.Request, job: Job) -> dict[str, Any]:
        return batch_object(job, f"{request.scheme}://{request.host}/v1/messages/batches/{job.id}/results")

    async def create(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        data = await rest.json_body(request, "anthropic", rid)
        if isinstance(data, web.Response):
            return data
        reqs = data.get("requests")
        if not isinstance(reqs, list) or not reqs:
            return rest.error("anthropic", rid, 400, "requests: a non-empty list of {custom_id, params} is required")
        book = self.st.batches
        first = next((r["params"].get("model") for r in reqs if isinstance(r, dict) and isinstance(r.get("params"), dict)
                      and isinstance(r["params"].get("model"), str)), None)
        opts = book.options(first)
        limit = opts.max_requests or MAX_REQUESTS
        if len(reqs) > limit:
            return rest.error("anthropic", rid, 413, f"requests: at most {limit:,} requests per batch, got {len(reqs):,}",
                              type_="request_too_large")
        lines: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, r in enumerate(reqs):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            params = r.get("params") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not CUSTOM_ID.fullmatch(cid):
                return rest.error("anthropic", rid, 400, f"requests.{i}.custom_id: String should match pattern "
                                  "'^[a-zA-Z0-9_-]{1,64}$'")
            if cid in seen:
                return rest.error("anthropic", rid, 400, f"requests.{i}.custom_id: Duplicate custom_id {cid!r}; "
                                  "each request in a batch must have a unique custom_id")
            if not isinstance(params, dict):
                return rest.error("anthropic", rid, 400, f"requests.{i}.params: Field required")
            seen.add(cid)
            lines.append((cid, params))
        tokens = sum(prompt_tokens(p) for _, p in lines)
        if book.over_enqueued_limit(first, tokens, opts):
            return rest.error("anthropic", rid, 429, "Number of enqueued batch tokens exceeds the rate limit of "
                              f"{opts.max_enqueued_tokens:,} for {first}. Please try again once some batches "
                              "have ended.", type_="rate_limit_error")
        job = Job(id="msgbatch_" + os.urandom(12).hex(), wire="anthropic", lines=lines, opts=opts, model=first,
                  prompt_tokens=tokens, created_at=time.time())
        book.add(job, self.answer)
        return rest.reply("anthropic", rid, self._object(request, job))

    async def list(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        limit = rest.int_param(request, "limit", 20, 1, 1000)
        if limit is None:
            return rest.error("anthropic", rid, 400, "limit: Input should be between 1 and 1000")
        jobs = [j for j in reversed(self.st.batches.jobs.values()) if j.wire == "anthropic"]
        items, more = rest.page(jobs, request.query.get("after_id"), request.query.get("before_id"), limit)
        data = [self._object(request, j) for j in items]
        return rest.reply("anthropic", rid, {"data": data, "has_more": more,
                                             "first_id": data[0]["id"] if data else None,
                                             "last_id": data[-1]["id"] if data else None})

    async def retrieve(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        job = self._job(request, rid)
        return job if isinstance(job, web.Response) else rest.reply("anthropic", rid, self._object(request, job))

    async def results(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        job = self._job(request, rid)
        if isinstance(job, web.Response):
            return job
        if job.running:
            return rest.error("anthropic", rid, 400, f"Message Batch {job.id} has not ended yet; its results are "
                              "available once processing_status is 'ended'.")
        out = []
        for cid, r in job.results.items():
            result: dict[str, Any] = {"type": _RESULT[r.outcome]}
            if r.outcome == "ok":
                result["message"] = r.body
            elif r.outcome == "error":
                result["error"] = r.body
            out.append(orjson.dumps({"custom_id": cid, "result": result}) + b"\n")
        return web.Response(body=b"".join(out), content_type="application/x-jsonl", headers={"request-id": rid})

    async def cancel(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        job = self._job(request, rid)
        if isinstance(job, web.Response):
            return job
        self.st.batches.cancel(job)
        return rest.reply("anthropic", rid, self._object(request, job))

    async def delete(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        job = self._job(request, rid)
        if isinstance(job, web.Response):
            return job
        if job.running:
            return rest.error("anthropic", rid, 400, f"Message Batch {job.id} is still in progress; cancel it and "
                              "wait until it has ended before deleting it.")
        self.st.batches.delete_job(job.id)
        return rest.reply("anthropic", rid, {"id": job.id, "type": "message_batch_deleted"})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/batches", self.create)
        app.router.add_get("/v1/messages/batches", self.list)
        app.router.add_get("/v1/messages/batches/{batch_id}", self.retrieve)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self.results)
        app.router.add_post("/v1/messages/batches/{batch_id}/cancel", self.cancel)
        app.router.add_delete("/v1/messages/batches/{batch_id}", self.delete)


def batch_object(job: Job, results_url: str) -> dict[str, Any]:
    """The batch as `GET /v1/messages/batches/{id}` returns it."""
    ended = not job.running
    c = job.counts()
    counts = ({"processing": 0, "succeeded": c["ok"], "errored": c["error"], "canceled": c["canceled"],
               "expired": c["expired"]} if ended else
              {"processing": len(job.lines), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    status = "ended" if ended else "canceling" if job.cancel_at is not None else "in_progress"
    return {"id": job.id, "type": "message_batch", "processing_status": status, "request_counts": counts,
            "ended_at": rfc3339(job.ended_at), "created_at": rfc3339(job.created_at),
            "expires_at": rfc3339(job.created_at + DAY), "archived_at": None,
            "cancel_initiated_at": rfc3339(job.cancel_at), "results_url": results_url if ended else None}
