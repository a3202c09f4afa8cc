"""The only module that knows aiohttp and HTTP status codes: send one POST, translate what came back.

    aiohttp exception (reset, timeout, DNS...) -> CapacityError (status None)
    2xx                                       -> HttpResult (the wire module parses the body)
    429 rate limit                            -> ThrottledError   (retry_after_s from the headers)
    429 insufficient_quota, 401, 402, 403,
        404, billing/credit errors            -> FatalRunError
    408, 409, 5xx, 529 overloaded             -> CapacityError
    400, 413, 422, other 4xx                  -> TaskFailedError
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from agen.errors import CapacityError, FatalRunError, ProviderError, TaskFailedError, ThrottledError
from agen.providers.headers import parse_retry_after, retry_hint
from agen.providers.http1 import HttpPool, Target

_BILLING = re.compile(r"insufficient_quota|billing|credit balance|exceeded your current quota|payment required"
                      r"|quota exceeded|out of credits", re.IGNORECASE)
_FATAL_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_error", "billing_not_active",
                "invalid_api_key", "authentication_error", "permission_error", "account_deactivated"}
_CAPACITY_STATUSES = {408, 409, 425, 500, 502, 503, 504, 520, 522, 524, 529}


@dataclass(slots=True)  # not frozen: see agen.types
class HttpResult:
    status: int
    headers: Mapping[str, str]  # looked up by lower-case name (HttpPool: a dict; aiohttp: case-insensitive)
    body: bytes
    latency_s: float


def request_id_of(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("request-id") or headers.get("anthropic-request-id")


def error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, code, type) from an OpenAI or Anthropic error body; tolerant of junk."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return (text or "(empty body)"), None, None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        code, typ = err.get("code"), err.get("type")
        return (str(err.get("message") or "(no message)"), str(code) if code is not None else None,
                str(typ) if typ is not None else None)
    if isinstance(err, str):
        return err, None, None
    return str(doc)[:300], None, None


def classify(provider: str, model: str, status: int, body: bytes, headers: Mapping[str, str],
             redact: str | None = None) -> ProviderError:
    """The error a non-2xx response means (pure: no I/O). `redact` is scrubbed from the message."""
    message, code, typ = error_fields(body)
    if redact:
        message = message.replace(redact, "[redacted]")
    message = message[:500]
    kw: dict[str, Any] = {"provider": provider, "model": model, "status": status, "code": code or typ,
                          "request_id": request_id_of(headers)}
    billing = bool(code in _FATAL_CODES or typ in _FATAL_CODES or _BILLING.search(message))
    if status == 429:
        if billing:
            return FatalRunError(message, **kw)
        return ThrottledError(message, retry_after_s=retry_hint(headers, provider), **kw)
    if status in (401, 402, 403, 404) or (400 <= status < 500 and billing):
        return FatalRunError(message, **kw)
    if status in _CAPACITY_STATUSES or status >= 500:
        return CapacityError(message, retry_after_s=parse_retry_after(headers), **kw)
    return TaskFailedError(message, **kw)


FD_HEADROOM = 256  # files the rest of the process may hold besides the connection pool


def fit_open_files(connections: int, headroom: int = FD_HEADROOM) -> int:
    """How many connections the pool may open: lifts the open-files soft limit (RLIMIT_NOFILE,
    often 1024) towards `connections + headroom`, up to the hard limit, and returns `connections`
    or, if even the hard limit is lower, what fits under it (at least 1).

    Without this a connector limit above the soft limit fails connects with EMFILE ("Too many
    open files"), which turns into transport errors and failed tasks instead of waiting.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return connections
    need = connections + headroom
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= need:
        return connections
    return max(1, min(connections, soft - headroom))


class GatedConnector(aiohttp.TCPConnector):
    """A TCPConnector that refuses, once `halted()` names an error, a request that has just got its
    connection: the last moment before its bytes are written. A request past its lane may still
    wait for a new connection (a busy server's accept queue can hold a SYN for a second or more),
    so the lane's own refusal is not the last word. An override instead of an aiohttp TraceConfig
    hook: any trace config makes aiohttp build a Trace and send every signal of every request,
    ~6% of the client path's CPU."""

    def __init__(self, halted: Callable[[], BaseException | None], **kw: Any) -> None:
        super().__init__(**kw)
        self._halted = halted

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        exc = self._halted()
        if exc is not None:
            conn.release()
            raise copy.copy(exc)
        return conn


class Transport:
    """Sends requests; every transport failure becomes a CapacityError. The POSTs go through the
    run's lean HTTP/1.1 pool when given one (`providers/http1`), the rest through aiohttp."""

    def __init__(self, session: aiohttp.ClientSession, provider: str, model: str,
                 connect_timeout_s: float, read_timeout_s: float, pool: HttpPool | None = None) -> None:
        self._session = session
        self._provider = provider
        self._model = model
        self._pool = pool
        self._connect_s, self._read_s = connect_timeout_s, read_timeout_s
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s,
                                              sock_read=read_timeout_s)
        self._target: tuple[str, Mapping[str, str], Target] | None = None  # one endpoint, one headers dict

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpResult:
        pool = self._pool
        if pool is None:
            return await self.request("POST", url, headers, data=body)
        known = self._target
        if known is None or known[0] != url or known[1] is not headers:
            known = self._target = (url, headers, pool.target(url, headers))
        t0 = time.perf_counter()
        try:
            status, got, data = await pool.post(known[2], body, connect_timeout=self._connect_s,
                                                read_timeout=self._read_s)
        except (asyncio.TimeoutError, OSError) as exc:
            raise self._failure(exc) from None
        return HttpResult(status, got, data, time.perf_counter() - t0)

    async def request(self, method: str, url: str, headers: Mapping[str, str], *, data: Any = None,
                      params: Mapping[str, str] | None = None) -> HttpResult:
        """One HTTP request of any method through aiohttp (the batch APIs GET, and upload multipart files)."""
        t0 = time.perf_counter()
        try:
            async with self._session.request(method, url, data=data, headers=headers, params=params,
                                             timeout=self._timeout) as resp:
                data = await resp.read()
                return HttpResult(resp.status, resp.headers, data, time.perf_counter() - t0)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> CapacityError:
        # Only the class name and the library's own short text: never the request (it holds the key).
        detail = type(exc).__name__
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            detail = f"timeout ({detail}): no byte for the read-idle limit or connect limit"
        elif isinstance(exc, OSError) and exc.strerror:
            detail = f"{detail}: {exc.strerror}"
        return CapacityError(f"transport failure: {detail}", provider=self._provider,
                             model=self._model, code="transport")
