"""OpenAI's Batch API as the sim serves it (the official shapes; `agen.sim.batches` runs the jobs).

    POST /v1/batches              {input_file_id, endpoint: /v1/chat/completions, completion_window: 24h, metadata}
    GET  /v1/batches              list, newest first (`after`, `limit`): a resumed client finds its batch by metadata
    GET  /v1/batches/{id}         the batch object
    POST /v1/batches/{id}/cancel  -> cancelling -> cancelled

Status: validating -> in_progress -> finalizing -> completed, or failed (the input file does not
validate, the model is unknown, the enqueued-token limit is reached, `fail_p`), expired (`expire_p`:
some lines answered, the rest in the error file as `batch_expired`), cancelling -> cancelled.
The output file holds the lines answered 200 (`{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error": null}`); the error file the others: answers with an error status
in the same shape, and lines never answered with `response: null, error: {code, message}`.
`request_counts.completed` counts output-file lines, `failed` error-file lines.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agen.sim import rest
from agen.sim.batches import Job
from agen.sim.files import new_file
from agen.sim.model import count_tokens

if TYPE_CHECKING:
    from agen.sim.batches import AnswerLine, BatchBook
    from agen.sim.server import SimState

ENDPOINTS = ("/v1/chat/completions",)  # what the sim answers (OpenAI also batches responses, embeddings...)
MAX_LINES = 50_000
MAX_ERRORS = 100  # errors.data listed for a file that does not validate
DAY = 24 * 3600


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens of a chat body, counted as the online endpoint bills them (contents only)."""
    n = 0
    for key in ("system", "messages"):
        v = body.get(key)
        for m in (v if isinstance(v, list) else [v] if v is not None else []):
            c = m.get("content") if isinstance(m, dict) else m
            if isinstance(c, str):
                n += count_tokens(c)
            elif isinstance(c, list):
                n += sum(count_tokens(b["text"]) for b in c if isinstance(b, dict) and isinstance(b.get("text"), str))
    return n


def _err(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def parse_input(data: bytes, endpoint: str, max_lines: int, models: Any
                ) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """(lines, validation errors) of a batch input file; any error fails the batch."""
    lines: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    raw = data.split(b"\n")
    if raw and not raw[-1].strip():
        raw.pop()
    if not raw:
        return [], [_err("empty_file", "The batch input file is empty. Please upload a file with at least one request.")]
    if len(raw) > max_lines:
        return [], [_err("too_many_requests", f"The batch input file has {len(raw):,} requests. "
                         f"Limit: {max_lines:,} requests per batch.")]
    for i, b in enumerate(raw, 1):
        try:
            obj = orjson.loads(b)
        except orjson.JSONDecodeError:
            errors.append(_err("invalid_json_line", "This line is not parseable as valid JSON.", i))
            continue
        if not isinstance(obj, dict):
            errors.append(_err("invalid_json_line", "This line is not a JSON object.", i))
            continue
        cid, body = obj.get("custom_id"), obj.get("body")
        if not isinstance(cid, str) or not cid:
            errors.append(_err("missing_required_parameter", "Missing required parameter: 'custom_id'.", i, "custom_id"))
        elif cid in seen:
            errors.append(_err("duplicate_custom_id", "The custom_id for this request is a duplicate of another "
                               "request. The custom_id parameter must be unique for each request in a batch.",
                               i, "custom_id"))
        if obj.get("method") != "POST":
            errors.append(_err("invalid_method", "The method for this request must be POST.", i, "method"))
        if obj.get("url") != endpoint:
            errors.append(_err("invalid_url", "The URL provided for this request does not match the batch endpoint.",
                               i, "url"))
        if not isinstance(body, dict):
            errors.append(_err("missing_required_parameter", "Missing required parameter: 'body'.", i, "body"))
        elif not isinstance(body.get("model"), str):
            errors.append(_err("missing_required_parameter", "Missing required parameter: 'body.model'.", i,
                               "body.model"))
        else:
            if model is None:
                model = body["model"]
                if model not in models:
                    errors.append(_err("model_not_found", f"The model `{model}` does not exist or you do not have "
                                       "access to it.", i, "body.model"))
            elif body["model"] != model:
                errors.append(_err("mismatched_model", "The provided model does not match the model of the other "
                                   "requests in the batch. All requests in a batch must use the same model.",
                                   i, "body.model"))
        if isinstance(cid, str) and cid and isinstance(body, dict):
            seen.add(cid)
            lines.append((cid, body))
    return lines, errors[:MAX_ERRORS]


def _line(job: Job, cid: str) -> bytes:
    r = job.results[cid]
    lid = "batch_req_" + hashlib.blake2b(f"{job.id}/{cid}".encode(), digest_size=12).hexdigest()
    if r.outcome in ("ok", "error"):
        obj = {"id": lid, "custom_id": cid,
               "response": {"status_code": r.status, "request_id": r.request_id, "body": r.body}, "error": None}
    elif r.outcome == "expired":
        obj = {"id": lid, "custom_id": cid, "response": None, "error": {
            "code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}
    else:
        obj = {"id": lid, "custom_id": cid, "response": None, "error": {
            "code": "batch_cancelled", "message": "This request was not executed because the batch was cancelled."}}
    return orjson.dumps(obj) + b"\n"


def write_results(book: BatchBook, job: Job) -> None:
    """At the end of an OpenAI job: its output and error files (none for a failed batch)."""
    if job.end == "failed":
        return
    ok = b"".join(_line(job, cid) for cid, r in job.results.items() if r.outcome == "ok")
    bad = b"".join(_line(job, cid) for cid, r in job.results.items() if r.outcome != "ok")
    if ok:
        job.extra["output_file_id"] = new_file(book, f"{job.id}_output.jsonl", "batch_output", ok).id
    if bad:
        job.extra["error_file_id"] = new_file(book, f"{job.id}_error.jsonl", "batch_output", bad).id


class BatchRoutes:
    def __init__(self, st: SimState, answer: AnswerLine) -> None:
        self.st = st
        self.answer = answer

    def _start(self, request: web.Request) -> tuple[str, web.Response | None]:
        return rest.admit(request, "openai", self.st)

    async def create(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        data = await rest.json_body(request, "openai", rid)
        if isinstance(data, web.Response):
            return data
        fid, endpoint, window = data.get("input_file_id"), data.get("endpoint"), data.get("completion_window")
        metadata = data.get("metadata")
        for name, v in (("input_file_id", fid), ("endpoint", endpoint), ("completion_window", window)):
            if v is None:
                return rest.error("openai", rid, 400, f"Missing required parameter: '{name}'.", param=name)
        if endpoint not in ENDPOINTS:
            return rest.error("openai", rid, 400, f"Invalid value for 'endpoint': {endpoint!r}. Supported values "
                              f"are: {', '.join(repr(e) for e in ENDPOINTS)}.", param="endpoint")
        if window != "24h":
            return rest.error("openai", rid, 400, f"Invalid value for 'completion_window': {window!r}. "
                              "Supported values are: '24h'.", param="completion_window")
        if metadata is not None and not (
                isinstance(metadata, dict) and len(metadata) <= 16
                and all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                        for k, v in metadata.items())):
            return rest.error("openai", rid, 400, "Invalid 'metadata': at most 16 string keys (64 characters) "
                              "with string values (512 characters).", param="metadata")
        f = self.st.batches.files.get(fid) if isinstance(fid, str) else None
        if f is None:
            return rest.error("openai", rid, 400, f"Invalid 'input_file_id': {fid!r}. File with ID {fid!r} "
                              "does not exist.", param="input_file_id")
        if f.purpose != "batch":
            return rest.error("openai", rid, 400, f"Invalid 'input_file_id': {fid!r}. The file must have "
                              "purpose 'batch'.", param="input_file_id")
        book = self.st.batches
        first = _first_model(f.data)
        opts = book.options(first)
        lines, errors = parse_input(f.data, endpoint, opts.max_requests or MAX_LINES, self.st.models)
        tokens = sum(prompt_tokens(b) for _, b in lines)
        if not errors and book.over_enqueued_limit(first, tokens, opts):
            errors.append(_err("token_limit_exceeded", f"Enqueued token limit reached for {first} in organization "
                               f"org-agen-sim. Limit: {opts.max_enqueued_tokens:,} enqueued tokens. Please try again "
                               "once some in_progress batches have been completed."))
        job = Job(id="batch_" + os.urandom(12).hex(), wire="openai", lines=lines, opts=opts, model=first,
                  prompt_tokens=tokens, created_at=time.time(),
                  extra={"endpoint": endpoint, "input_file_id": fid, "completion_window": window,
                         "metadata": metadata, "output_file_id": None, "error_file_id": None},
                  errors=errors)
        book.add(job, self.answer)
        return rest.reply("openai", rid, batch_object(job))

    async def list(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        limit = rest.int_param(request, "limit", 20, 1, 100)
        if limit is None:
            return rest.error("openai", rid, 400, "Invalid 'limit': must be an integer between 1 and 100.",
                              param="limit")
        jobs = [j for j in reversed(self.st.batches.jobs.values()) if j.wire == "openai"]
        items, more = rest.page(jobs, request.query.get("after"), None, limit)
        data = [batch_object(j) for j in items]
        return rest.reply("openai", rid, {"object": "list", "data": data, "has_more": more,
                                          "first_id": data[0]["id"] if data else None,
                                          "last_id": data[-1]["id"] if data else None})

    def _job(self, request: web.Request, rid: str) -> Job | web.Response:
        bid = request.match_info["batch_id"]
        job = self.st.batches.jobs.get(bid)
        if job is None or job.wire != "openai":
            return rest.error("openai", rid, 404, f"No batch found with id '{bid}'.", param="batch_id")
        return job

    async def retrieve(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        job = self._job(request, rid)
        return job if isinstance(job, web.Response) else rest.reply("openai", rid, batch_object(job))

    async def cancel(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        job = self._job(request, rid)
        if isinstance(job, web.Response):
            return job
        if not job.running:
            return rest.error("openai", rid, 409, f"Cannot cancel a batch with status '{status(job)}'.")
        self.st.batches.cancel(job)
        return rest.reply("openai", rid, batch_object(job))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/batches", self.create)
        app.router.add_get("/v1/batches", self.list)
        app.router.add_get("/v1/batches/{batch_id}", self.retrieve)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self.cancel)


def _first_model(data: bytes) -> str | None:
    try:
        body = orjson.loads(data.split(b"\n", 1)[0]).get("body")
        return body["model"] if isinstance(body["model"], str) else None
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None


def status(job: Job) -> str:
    if job.end is not None:
        return job.end
    if job.cancel_at is not None:
        return "cancelling"
    return job.phase


def batch_object(job: Job) -> dict[str, Any]:
    """The batch as `GET /v1/batches/{id}` returns it."""
    c = job.counts()
    validated = job.phase != "validating" or job.end is not None
    usage = {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}
    for r in job.results.values():
        u = r.body.get("usage") if r.outcome == "ok" and isinstance(r.body, dict) else None
        if u:
            usage["input_tokens"] += u["prompt_tokens"]
            usage["input_tokens_details"]["cached_tokens"] += (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            usage["output_tokens"] += u["completion_tokens"]
            usage["total_tokens"] += u["total_tokens"]

    def at(end: str) -> int | None:
        return int(job.ended_at) if job.end == end and job.ended_at is not None else None

    e = job.extra
    return {
        "id": job.id, "object": "batch", "endpoint": e["endpoint"], "model": job.model,
        "errors": {"object": "list", "data": job.errors} if job.errors else None,
        "input_file_id": e["input_file_id"], "completion_window": e["completion_window"], "status": status(job),
        "output_file_id": e["output_file_id"], "error_file_id": e["error_file_id"],
        "created_at": int(job.created_at),
        "in_progress_at": int(job.in_progress_at) if job.in_progress_at is not None else None,
        "expires_at": int(job.created_at) + DAY,
        "finalizing_at": int(job.finalizing_at) if job.finalizing_at is not None else None,
        "completed_at": at("completed"), "failed_at": at("failed"), "expired_at": at("expired"),
        "cancelling_at": int(job.cancel_at) if job.cancel_at is not None else None, "cancelled_at": at("cancelled"),
        "request_counts": {"total": len(job.lines) if validated and job.end != "failed" else 0,
                           "completed": c["ok"], "failed": c["error"] + c["expired"] + c["canceled"]},
        "usage": usage, "metadata": e["metadata"],
    }
