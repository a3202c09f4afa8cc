"""A lean HTTP/1.1 keep-alive client for the hot path: the chat and reward POSTs, nothing else.

Why not aiohttp here: its client spends ~0.15 ms of CPU on each request (URL, header and
payload objects, a ClientRequest/ClientResponse pair, a StreamReader, a timer rescheduled on
every chunk), about 3.5x what a protocol feeding httptools costs (httptools wraps llhttp, the
parser aiohttp itself uses; `benchmarks/client_overhead.py` prints both). For a run most of the
CPU per request was there. The batch and file APIs (multipart uploads, GETs, a few calls a
minute) keep aiohttp, and `models.*.http_client: aiohttp` sends a model's POSTs through it too.

What it does: per origin a LIFO of idle connections (dropped when the server closes them, or
after `keepalive_s` idle, or sooner where the server's `Keep-Alive: timeout=N` says it will close
them: HTTP/1.0 keep-alive included); at most `limit` connections in all, callers beyond it wait in order;
TLS with the default verifying context and SNI; chunked, sized or read-until-close bodies;
gzip/deflate; 1xx skipped; a connect timeout and a read-idle timeout (no byte for that long).
A reused connection that the server closed is never written to (its close is seen first), and a
request is never retried here: a failed attempt is the attempt loop's to count and retry.
What it does not do, as the run's aiohttp session does not either: proxies (`trust_env` is
off), redirects, cookies, HTTP/2.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httptools

from agen.errors import HttpProtocolError
from agen.providers.http1_conn import Conn, decoded_body

__all__ = ["HttpPool", "HttpProtocolError", "Target"]

KEEPALIVE_S = 15.0  # aiohttp's default keep-alive of an idle connection
DNS_TTL_S = 300.0  # and its connector's DNS cache


@dataclass(frozen=True, slots=True)
class Target:
    """Where a POST goes, worked out once per endpoint: origin, TLS, and the request head's
    fixed part (request line and every header but the body's length)."""

    host: str
    port: int
    tls: bool
    head: bytes  # ends with "content-length: "

    @classmethod
    def of(cls, url: str, headers: Mapping[str, str], user_agent: str) -> Target:
        parts = httptools.parse_url(url.encode())
        scheme = (parts.schema or b"").decode().lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: only http:// and https:// URLs can be sent")
        tls = scheme == "https"
        host = parts.host.decode()
        port = parts.port or (443 if tls else 80)
        path = (parts.path or b"/").decode() + ("?" + parts.query.decode() if parts.query else "")
        authority = f"[{host}]" if ":" in host else host
        if parts.port and parts.port != (443 if tls else 80):
            authority += f":{port}"
        lines = [f"POST {path} HTTP/1.1", f"host: {authority}"]
        given = {k.lower() for k in headers}
        for k, v in headers.items():
            if k.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                continue  # this client's to write
            if any(c in k or c in v for c in "\r\n\0"):
                raise ValueError(f"header {k!r}: its name or value holds a newline or NUL")  # never the value
            lines.append(f"{k}: {v}")
        if "accept-encoding" not in given:
            lines.append("accept-encoding: gzip, deflate")
        if "user-agent" not in given:
            lines.append(f"user-agent: {user_agent}")
        return cls(host, port, tls, ("\r\n".join(lines) + "\r\ncontent-length: ").encode())  # UTF-8, as aiohttp

    @property
    def origin(self) -> tuple[str, int, bool]:
        return self.host, self.port, self.tls


class HttpPool:
    """Keep-alive connections for every origin the run POSTs to, at most `limit` open at once."""

    def __init__(self, limit: int, halted: Callable[[], BaseException | None] = lambda: None, *,
                 keepalive_s: float = KEEPALIVE_S, ssl_context: ssl.SSLContext | None = None,
                 user_agent: str = "agen") -> None:
        self.loop = asyncio.get_running_loop()
        self.limit = max(1, limit)
        self.user_agent = user_agent
        self._halted = halted
        self._keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._idle: dict[tuple[str, int, bool], list[Conn]] = {}
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self.connections_made = 0  # tests and benchmarks read it

    def target(self, url: str, headers: Mapping[str, str]) -> Target:
        return Target.of(url, headers, self.user_agent)

    async def post(self, target: Target, body: bytes, *, connect_timeout: float,
                   read_timeout: float) -> tuple[int, dict[str, str], bytes]:
        """Send one POST; (status, headers by lower-cased name, decoded body). Raises OSError
        (ConnectionError and HttpProtocolError among them) or asyncio.TimeoutError, or the halt
        error once halted. A header sent twice keeps its first value, as aiohttp's `get` gives."""
        conn = await self._acquire(target.origin, connect_timeout)
        exc = self._halted()
        if exc is not None:  # the last moment before the request's bytes leave
            self._release(conn)
            raise copy.copy(exc)
        waiter = self.loop.create_future()
        conn.begin(waiter)
        try:
            conn.transport.write(b"".join((target.head, str(len(body)).encode(), b"\r\n\r\n", body)))  # type: ignore[union-attr]
            conn.watch(read_timeout, self.loop.time())
            await waiter
        except BaseException:
            conn.abort()  # cancelled or failed mid-exchange: what is left on the wire is nobody's
            raise
        finally:
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None
            conn.waiter = None
        status, hdrs, data, reusable = conn.take_response()
        if reusable:
            self._release(conn)
        else:
            conn.abort()
        return status, hdrs, decoded_body(data, hdrs)

    # -- connections
    async def _acquire(self, origin: tuple[str, int, bool], connect_timeout: float) -> Conn:
        while True:
            idle = self._idle.get(origin)
            now = self.loop.time()
            while idle:
                conn = idle.pop()
                if not conn.closed and not conn.transport.is_closing() \
                        and now - conn.idle_since < conn.reuse_for:  # type: ignore[union-attr]
                    return conn
                conn.abort()
            if self._open >= self.limit and not self._close_some_idle():
                waiter = self.loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self._wake()  # it was woken for a slot it will not use: pass it on
                    else:
                        waiter.cancel()
                    raise
                continue
            return await self._connect(origin, connect_timeout)

    async def _connect(self, origin: tuple[str, int, bool], connect_timeout: float) -> Conn:
        host, port, tls = origin
        self._open += 1
        conn: Conn | None = None

        def protocol() -> Conn:
            nonlocal conn
            conn = Conn(self, origin, self._keepalive_s)
            return conn

        async def first_that_answers() -> None:
            if tls and self._ssl is None:
                self._ssl = ssl.create_default_context()
            errors: list[OSError] = []
            for addr in await self._addresses(host, port):
                try:
                    await self.loop.create_connection(protocol, addr[0], addr[1],  # type: ignore[type-var]
                                                      ssl=self._ssl if tls else None,
                                                      server_hostname=host if tls else None)
                    return
                except OSError as exc:
                    errors.append(exc)
            self._dns.pop((host, port), None)  # none answered: look the name up again next time
            raise errors[0]

        try:
            await asyncio.wait_for(first_that_answers(), connect_timeout)
        except BaseException:
            if conn is not None and conn.transport is not None:
                conn.abort()  # counted down by abort
            else:
                self._open -= 1
                self._wake()
            raise
        assert conn is not None
        self.connections_made += 1
        return conn

    async def _addresses(self, host: str, port: int) -> list[tuple[str, int]]:
        """The host's addresses, looked up once per `DNS_TTL_S` (as aiohttp's connector caches them):
        a server that closes every connection would otherwise cost a lookup per request."""
        hit = self._dns.get((host, port))
        now = self.loop.time()
        if hit is not None and hit[0] > now:
            return hit[1]
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addrs = list(dict.fromkeys((str(sa[0]), int(sa[1])) for *_, sa in infos))
        self._dns[(host, port)] = (now + DNS_TTL_S, addrs)
        return addrs

    def _release(self, conn: Conn) -> None:
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._wake()

    def _closed(self, conn: Conn) -> None:
        """A connection ended (either side): its slot is free."""
        self._open -= 1
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake()

    def _close_some_idle(self) -> bool:
        """At the limit, an idle connection to another origin makes room (oldest first)."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).abort()
                return True
        return False

    def _wake(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in list(idle):
                conn.abort()
        self._idle.clear()

