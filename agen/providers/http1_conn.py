"""One keep-alive connection of the lean HTTP/1.1 client (`providers/http1`): the protocol that
feeds httptools, and the reading of a finished response.

These run for every request (a dozen parser callbacks and the header and body decoding), and
they are synchronous, so they are compiled (`agen/native.py`); the pool that awaits them stays in
`http1`. Duck-typed for the loop: uvloop and asyncio call a protocol's methods by name, so it
needs no `asyncio.Protocol` base (which a compiled class could not take).
"""

from __future__ import annotations

import asyncio
import errno
import re
import zlib
from typing import Any

import httptools

from agen.errors import HttpProtocolError

__all__ = ["Conn", "decoded_body", "reuse_for"]

_KA_TIMEOUT = re.compile(r"(?:^|[,;\s])timeout\s*=\s*(\d+(?:\.\d+)?)", re.I)


def reuse_for(keep_alive: str, ours: float) -> float:
    """How long an idle connection may be reused when the server sent `Keep-Alive: timeout=N`:
    it closes the connection N seconds after the last response, so a request sent near N meets a
    closing socket (a reset, paid for with a retry). Reused up to N less a margin (a quarter of N,
    at most one second), never past our own keep-alive."""
    m = _KA_TIMEOUT.search(keep_alive)
    if m is None:
        return ours
    n = float(m.group(1))
    return max(0.0, min(ours, n - min(1.0, n / 4)))


class Conn:
    """One connection: feeds the parser, hands one response at a time to its waiter. `pool` is
    the `HttpPool` (told when the connection closes); loop, transport and futures are typed
    `Any` because a compiled class checks its annotations, and uvloop's are not asyncio's."""

    def __init__(self, pool: Any, origin: tuple[str, int, bool], keepalive_s: float) -> None:
        self.pool = pool
        self.origin = origin
        self.loop: Any = pool.loop
        self.transport: Any = None
        self.parser: Any = httptools.HttpResponseParser(self)
        self.waiter: Any = None  # the current response's future
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []  # as received; decoded once, at the end
        self.body: list[bytes] = []
        self.headers_done = False
        self.until_close = False  # no length, not chunked: the body ends when the server closes
        self.keep_alive = True
        self.closed = False
        self.idle_since = 0.0
        self.keepalive_s = keepalive_s  # ours
        self.reuse_for = keepalive_s  # seconds it may sit idle and still be reused (less if the server says)
        self.last_byte = 0.0
        self.timer: Any = None

    # -- the loop's protocol calls
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_byte = self.loop.time()
        if self.waiter is None:  # bytes nobody asked for (junk after a response): unusable
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(HttpProtocolError(errno.EPROTO, f"unreadable HTTP response: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost ends a read-until-close body

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.pool._closed(self)
        if self.waiter is not None and not self.waiter.done():
            if self.headers_done and self.until_close and exc is None:
                self.keep_alive = False
                self.waiter.set_result(None)
            else:
                self.fail(ConnectionResetError(errno.ECONNRESET, "the server closed the connection "
                                               + ("mid-response" if self.headers_done else "before answering")))

    def pause_writing(self) -> None:  # asyncio.Protocol's flow control: a POST body is written whole
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        if self.status >= 200:
            names = {k.lower() for k, _ in self.headers}
            self.until_close = b"content-length" not in names and b"transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:  # 100 Continue / 103 Early Hints: the real answer follows
            self.headers, self.body, self.headers_done = [], [], False
            return
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- the pool's side
    def begin(self, waiter: Any) -> None:
        self.waiter, self.status, self.headers, self.body = waiter, 0, [], []
        self.headers_done = self.until_close = False

    def fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def watch(self, read_timeout: float, since: float) -> None:
        """Fail the response if no byte arrives for `read_timeout` (one timer, moved on lazily)."""
        quiet_from = max(self.last_byte, since)
        due = quiet_from + read_timeout
        if self.loop.time() >= due:
            self.timer = None
            self.fail(asyncio.TimeoutError())
            self.abort()
        else:
            self.timer = self.loop.call_at(due, self.watch, read_timeout, since)

    def take_response(self) -> tuple[int, dict[str, str], bytes, bool]:
        """The finished response: status, headers by lower-cased name (a header sent twice keeps
        its first value, as aiohttp's `get` gives), the raw body, and whether the connection can
        be reused (its `reuse_for` set from the server's `Keep-Alive`, which holds for this answer only)."""
        hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in reversed(self.headers)}
        reusable = self.keep_alive and not self.closed
        if reusable:
            ka = hdrs.get("keep-alive")
            self.reuse_for = self.keepalive_s if ka is None else reuse_for(ka, self.keepalive_s)
        parts = self.body
        return self.status, hdrs, parts[0] if len(parts) == 1 else b"".join(parts), reusable

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if not self.closed:
            self.closed = True
            self.pool._closed(self)


def decoded_body(data: bytes, headers: dict[str, str]) -> bytes:
    """The body with its `content-encoding` (gzip, deflate) undone."""
    enc = headers.get("content-encoding", "").lower()
    if enc not in ("gzip", "x-gzip", "deflate") or not data:
        return data
    try:
        return zlib.decompress(data, wbits=47) if enc != "deflate" else _inflate(data)
    except zlib.error as exc:
        raise HttpProtocolError(errno.EPROTO, f"undecodable {enc} body: {exc}") from None


def _inflate(data: bytes) -> bytes:
    """`deflate` as servers send it: zlib-wrapped per the RFC, or raw as some do."""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return zlib.decompress(data, wbits=-15)
