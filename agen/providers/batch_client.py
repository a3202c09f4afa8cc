"""The two providers' batch APIs as four calls: submit, retrieve, results, find (pure wire, no policy).

OpenAI (Batch + Files API): upload the JSONL input (`POST /v1/files`, purpose `batch`), create the
batch (`POST /v1/batches` with `metadata`), poll `GET /v1/batches/{id}`, download the output and
error files (`GET /v1/files/{id}/content`). Anthropic (Message Batches): create with the requests
inline (`POST /v1/messages/batches`), poll `GET /v1/messages/batches/{id}`, read `results_url`.

`find` is how a batch whose id was never recorded (a crash between create and the journal line)
is found again: OpenAI lists batches and matches our `metadata` key; Anthropic has no metadata,
so the candidates are the batches created since the intent with the intent's number of requests
that no other journal entry claims (the caller confirms one by its results' custom_ids).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from agen.errors import ProviderError, RetryableError, TaskFailedError, ThrottledError
from agen.providers.transport import Transport, classify

OPENAI_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
ANTHROPIC_CUSTOM_ID_MAX = 64
_HTTP_TRIES = 6  # transport failures, 429 and 5xx of one batch API call, then the error is raised


@dataclass(frozen=True, slots=True)
class RemoteBatch:
    """A batch as the provider reports it."""

    id: str
    status: str  # the provider's own word: validating|in_progress|finalizing|completed|... or in_progress|canceling|ended
    ended: bool  # no line will change any more: results can be read
    created_at: float  # unix seconds
    total: int  # requests in the batch
    metadata: dict[str, Any] = field(default_factory=dict)
    output_file_id: str | None = None  # OpenAI
    error_file_id: str | None = None  # OpenAI
    results_url: str | None = None  # Anthropic
    errors: tuple[str, ...] = ()  # OpenAI: the codes of `errors.data` (why a batch failed validation)


class BatchQueueFull(Exception):
    """The provider has no room for one more batch now: its limit on what unfinished batches may hold
    (OpenAI's enqueued tokens per model, Anthropic's batch queue) is reached. Nothing was run or billed;
    the same lines may go again once one of the account's batches has ended."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


def taken(b: RemoteBatch) -> bool:
    """Whether the provider has taken a batch to run: OpenAI's is past validation and not failed
    (Anthropic has neither state: it takes a batch at create)."""
    return b.status not in ("validating", "failed")


def queue_full(b: RemoteBatch) -> bool:
    """Whether an ended batch was refused for want of room (OpenAI fails it in validation with
    `token_limit_exceeded`; its lines never ran, so it has no output or error file)."""
    return b.status == "failed" and "token_limit_exceeded" in b.errors


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """One line of an ended batch: the chat body on success, else why not and whether to try again."""

    custom_id: str
    doc: dict[str, Any] | None
    error: str | None = None  # expired | canceled | http_<status> | <error type> | missing
    message: str = ""
    retryable: bool = True


def _base(provider: str, base_url: str) -> tuple[str, str]:
    """(base for this API's paths, query string to keep) from a model's base_url."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if provider == "anthropic" and not path.endswith("/v1"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), parts.query


def _ts(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def anthropic_custom_id(sub_id: str, taken: set[str]) -> str:
    """A custom_id Anthropic accepts (`^[a-zA-Z0-9_-]{1,64}$`) for a sub-id, unique within `taken`."""
    base = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in sub_id)[:56] or "r"
    cid, k = base, 1
    while cid in taken:
        k += 1
        cid = f"{base}-{k}"
    return cid


class BatchApi:
    """One model's batch endpoints (both wires); raises ProviderError subclasses as the chat client does."""

    def __init__(self, provider: str, base_url: str, transport: Transport, model: str,
                 headers: Callable[[], dict[str, str]], redact: Callable[[], str | None]) -> None:
        self.provider = provider
        self.model = model
        self._base, self._query = _base(provider, base_url)
        self._transport = transport
        self._headers = headers
        self._redact = redact
        self.calls = 0  # HTTP requests sent (statistics)

    def custom_id(self, sub_id: str, taken: set[str]) -> str:
        """The request's sub-id as is (OpenAI takes any string); sanitised for Anthropic."""
        if self.provider == "anthropic":
            return anthropic_custom_id(sub_id, taken)
        cid, k = sub_id, 1
        while cid in taken:
            k += 1
            cid = f"{sub_id}#{k}"
        return cid

    # ---------------------------------------------------------------- HTTP
    async def _send(self, method: str, path: str, *, json: Any = None, data: Any = None,
                    params: dict[str, str] | None = None, raw: bool = False, retry_429: bool = True) -> Any:
        """One API call with retries for transport failures, 5xx and (unless `retry_429` is off) 429;
        JSON (or bytes) back."""
        url = path if path.startswith("http") else self._base + path
        if self._query:
            url += ("&" if "?" in url else "?") + self._query
        headers = self._headers()
        if json is not None:
            data = orjson.dumps(json)
            headers = {**headers, "content-type": "application/json"}
        elif data is not None and not isinstance(data, (bytes, str)):
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}  # multipart sets its own
        delay = 1.0
        for attempt in range(_HTTP_TRIES):
            self.calls += 1
            try:
                res = await self._transport.request(method, url, headers, data=data() if callable(data) else data,
                                                    params=params)
            except RetryableError as exc:
                err: ProviderError = exc
            else:
                if 200 <= res.status < 300:
                    if raw:
                        return res.body
                    try:
                        return orjson.loads(res.body)
                    except orjson.JSONDecodeError:
                        raise TaskFailedError(f"{method} {path}: the batch API answered {res.status} with a "
                                              f"body that is not JSON", provider=self.provider, model=self.model,
                                              status=res.status) from None
                err = classify(self.provider, self.model, res.status, res.body, res.headers, self._redact())
            if (not isinstance(err, RetryableError) or attempt == _HTTP_TRIES - 1
                    or (not retry_429 and isinstance(err, ThrottledError))):
                raise err
            await asyncio.sleep(err.retry_after_s or delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- the four calls
    async def upload(self, lines: list[tuple[str, dict[str, Any]]]) -> str:
        """OpenAI: the input file (one `{"custom_id", "method", "url", "body"}` per line); its id."""
        payload = b"".join(orjson.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                         "body": body}) + b"\n" for cid, body in lines)

        def form() -> aiohttp.FormData:  # a FormData is consumed by one send: a fresh one per attempt
            f = aiohttp.FormData()
            f.add_field("purpose", "batch")
            f.add_field("file", payload, filename="agen-batch.jsonl", content_type="application/jsonl")
            return f

        doc = await self._send("POST", "/files", data=form)
        return str(doc["id"])

    async def create(self, key: str, *, file_id: str | None = None,
                     lines: list[tuple[str, dict[str, Any]]] | None = None, window: str = "24h") -> RemoteBatch:
        if self.provider == "anthropic":
            # A 429 here is the batch queue being full (or the batch API's own rate): the collector
            # waits for room, rather than this call retrying a create that will not fit for minutes.
            try:
                doc = await self._send("POST", "/messages/batches", retry_429=False, json={
                    "requests": [{"custom_id": cid, "params": body} for cid, body in lines or ()]})
            except ThrottledError as exc:
                raise BatchQueueFull(exc.message, exc.retry_after_s) from None
        else:
            doc = await self._send("POST", "/batches", json={
                "input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": window,
                "metadata": {"agen_key": key}})
        return self._batch(doc)

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        path = f"/messages/batches/{batch_id}" if self.provider == "anthropic" else f"/batches/{batch_id}"
        return self._batch(await self._send("GET", path))

    async def results(self, b: RemoteBatch) -> list[LineOutcome]:
        """Every line of an ended batch that the provider reports (the caller handles missing ones)."""
        if self.provider == "anthropic":
            url = b.results_url or f"/messages/batches/{b.id}/results"
            return [_anthropic_line(orjson.loads(ln)) for ln in (await self._send("GET", url, raw=True)).splitlines()
                    if ln.strip()]
        out: list[LineOutcome] = []
        for fid in (b.output_file_id, b.error_file_id):
            if fid:
                body = await self._send("GET", f"/files/{fid}/content", raw=True)
                out += [_openai_line(orjson.loads(ln)) for ln in body.splitlines() if ln.strip()]
        return out

    async def find(self, key: str, since: float, total: int, exclude: set[str]) -> list[RemoteBatch]:
        """Batches that may be the one an intent `key` made (see the module docstring), newest first."""
        found: list[RemoteBatch] = []
        after: str | None = None
        path = "/messages/batches" if self.provider == "anthropic" else "/batches"
        while True:
            params = {"limit": "100"}
            if after:
                params["after_id" if self.provider == "anthropic" else "after"] = after
            doc = await self._send("GET", path, params=params)
            page = [self._batch(d) for d in doc.get("data") or ()]
            for b in page:
                if b.id in exclude:
                    continue
                if self.provider == "openai":
                    if b.metadata.get("agen_key") == key:
                        return [b]
                elif b.created_at >= since and b.total == total:
                    found.append(b)
            if not doc.get("has_more") or not page or min(b.created_at for b in page) < since:
                return found
            after = doc.get("last_id") or page[-1].id

    def _batch(self, doc: Any) -> RemoteBatch:
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise TaskFailedError("the batch API answered without a batch object", provider=self.provider,
                                  model=self.model)
        counts = doc.get("request_counts") or {}
        if self.provider == "anthropic":
            status = str(doc.get("processing_status"))
            return RemoteBatch(doc["id"], status, status == "ended", _ts(doc.get("created_at")),
                               sum(int(v) for v in counts.values() if isinstance(v, int)),
                               results_url=doc.get("results_url"))
        status = str(doc.get("status"))
        errs = (doc.get("errors") or {}).get("data") if isinstance(doc.get("errors"), dict) else None
        codes = tuple(str(e.get("code")) for e in errs or () if isinstance(e, dict))
        return RemoteBatch(doc["id"], status, status in OPENAI_ENDED, _ts(doc.get("created_at")),
                           int(counts.get("total") or 0), dict(doc.get("metadata") or {}),
                           output_file_id=doc.get("output_file_id"), error_file_id=doc.get("error_file_id"),
                           errors=codes)


def _openai_line(row: dict[str, Any]) -> LineOutcome:
    cid = str(row.get("custom_id"))
    resp = row.get("response") or None
    err = row.get("error") or None
    if isinstance(resp, dict) and resp.get("status_code") == 200 and isinstance(resp.get("body"), dict) and not err:
        return LineOutcome(cid, resp["body"])
    if isinstance(err, dict):
        code = str(err.get("code") or "error")
        return LineOutcome(cid, None, "expired" if code == "batch_expired" else code, str(err.get("message") or ""),
                           retryable=code in ("batch_expired", "batch_cancelled", "server_error", "rate_limit_exceeded"))
    status = resp.get("status_code") if isinstance(resp, dict) else None
    body = resp.get("body") if isinstance(resp, dict) else None
    message = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = str(body["error"].get("message") or "")
    return LineOutcome(cid, None, f"http_{status}", message,
                       retryable=not isinstance(status, int) or status == 429 or status >= 500)


def _anthropic_line(row: dict[str, Any]) -> LineOutcome:
    cid = str(row.get("custom_id"))
    res = row.get("result") or {}
    kind = res.get("type")
    if kind == "succeeded" and isinstance(res.get("message"), dict):
        return LineOutcome(cid, res["message"])
    if kind in ("expired", "canceled"):
        return LineOutcome(cid, None, str(kind))
    inner = (res.get("error") or {}).get("error") or res.get("error") or {}
    typ = str(inner.get("type") or "errored") if isinstance(inner, dict) else "errored"
    message = str(inner.get("message") or "") if isinstance(inner, dict) else ""
    return LineOutcome(cid, None, typ, message,
                       retryable=typ not in ("invalid_request_error", "authentication_error", "permission_error",
                                             "not_found_error", "billing_error"))


__all__ = ["BatchApi", "BatchQueueFull", "LineOutcome", "RemoteBatch", "anthropic_custom_id", "queue_full",
           "taken"]
