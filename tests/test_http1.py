"""The lean HTTP/1.1 pool (agen/providers/http1.py) against real servers: the simulated provider,
and a scripted socket server for what well-behaved servers rarely do (chunked and gzip bodies,
bodies that end at close, 100 Continue, closing mid-body or while idle, silence, junk), over TLS
with a throwaway CA (trustme)."""

from __future__ import annotations

import asyncio
import gzip
import ssl

import orjson
import pytest
import trustme

from agen.providers.http1 import HttpPool, HttpProtocolError

pytestmark = pytest.mark.asyncio

CFG = {"models": {"sim-small": {"latency_ms": {"median": 1, "sigma": 0}}}}
BODY = orjson.dumps({"model": "sim-small", "messages": [{"role": "user", "content": "What is 2+3?"}],
                     "max_tokens": 64})


class Scripted:
    """A socket server: each request's path picks the bytes it answers with (and what it does after)."""

    def __init__(self, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.ssl_ctx = ssl_ctx
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, path: str) -> str:
        return f"{'https' if self.ssl_ctx else 'http'}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v for k, _, v in (h.partition(": ") for h in rest if h)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                path = line.split()[1]
                self.requests.append((path, headers, body))
                if not await self._answer(path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, path: str, body: bytes, w: asyncio.StreamWriter) -> bool:
        """Write the scripted answer; False closes the connection."""
        ok = b'{"ok": true}'
        if path == "/plain":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nx-request-id: r1\r\n\r\n%s"
                    % (len(ok), ok))
        elif path == "/chunked":
            w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"ok\r\n8\r\n\": true}\r\n0\r\n\r\n")
        elif path == "/gzip":
            z = gzip.compress(ok)
            w.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (len(z), z))
        elif path == "/until-close":
            w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + ok)
            await w.drain()
            return False
        elif path == "/close-after":
            w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(ok), ok))
            await w.drain()
            return False
        elif path == "/idle-close":  # keep-alive promised, then closed while idle (a server's idle timeout)
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(ok), ok))
            await w.drain()
            await asyncio.sleep(0.05)
            return False
        elif path == "/ka-timeout":  # the server says it closes idle connections after 1 s (Node, Apache)
            w.write(b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: %d\r\n\r\n%s" % (len(ok), ok))
        elif path == "/http10-keep":
            w.write(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: %d\r\n\r\n%s" % (len(ok), ok))
        elif path == "/http10":
            w.write(b"HTTP/1.0 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(ok), ok))
            await w.drain()
            return False
        elif path == "/continue":
            w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: %d\r\n\r\n%s" % (len(ok), ok))
        elif path == "/mid-body":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial")
            await w.drain()
            return False
        elif path == "/silent":
            await asyncio.sleep(30)
        elif path == "/junk":
            w.write(b"SMTP ready\r\n\r\n")
        elif path == "/echo":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await w.drain()
        return True


async def post(pool: HttpPool, url: str, body: bytes = BODY, read_timeout: float = 5.0,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    status, got, data = await pool.post(pool.target(url, headers or {"content-type": "application/json"}), body,
                                        connect_timeout=2.0, read_timeout=read_timeout)
    return status, {k.lower(): v for k, v in got.items()}, data


async def test_keep_alive_against_the_sim_reuses_one_connection(sim) -> None:  # type: ignore[no-untyped-def]
    pool = HttpPool(8)
    url = sim.openai_base_url + "/chat/completions"
    for _ in range(5):
        status, headers, data = await post(pool, url)
        assert status == 200 and orjson.loads(data)["choices"]
    assert pool.connections_made == 1
    pool.close()


async def test_the_limit_holds_and_waiters_all_get_through(sim) -> None:  # type: ignore[no-untyped-def]
    pool = HttpPool(3)
    url = sim.openai_base_url + "/chat/completions"
    results = await asyncio.gather(*(post(pool, url) for _ in range(24)))
    assert all(r[0] == 200 for r in results)
    assert pool.connections_made <= 3 and pool._open <= 3
    pool.close()


async def test_bodies_chunked_gzip_until_close_and_1xx() -> None:
    async with Scripted() as srv:
        pool = HttpPool(4)
        for path in ("/plain", "/chunked", "/gzip", "/until-close"):
            status, headers, data = await post(pool, srv.url(path))
            assert status == 200 and orjson.loads(data) == {"ok": True}, path
        status, _, data = await post(pool, srv.url("/continue"))
        assert status == 201 and orjson.loads(data) == {"ok": True}
        status, headers, _ = await post(pool, srv.url("/plain"))
        assert headers["x-request-id"] == "r1"
        pool.close()


async def test_request_head_carries_length_host_and_caller_headers() -> None:
    async with Scripted() as srv:
        pool = HttpPool(1)
        status, _, data = await post(pool, srv.url("/echo"), headers={"content-type": "application/json",
                                                                       "authorization": "Bearer k"})
        assert status == 200 and data == BODY
        path, headers, body = srv.requests[-1]
        assert headers["content-length"] == str(len(BODY)) and headers["host"] == f"127.0.0.1:{srv.port}"
        assert headers["authorization"] == "Bearer k" and headers["user-agent"].startswith("agen")
        pool.close()


async def test_connection_close_and_idle_close_open_a_new_connection() -> None:
    async with Scripted() as srv:
        pool = HttpPool(2)
        await post(pool, srv.url("/close-after"))
        await post(pool, srv.url("/plain"))
        assert srv.connections == 2  # the first was not reused after `connection: close`
        await post(pool, srv.url("/idle-close"))
        deadline = asyncio.get_running_loop().time() + 10
        while any(pool._idle.values()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)  # the server closes the idle connection (after 50 ms): the pool sees it go
        assert not any(pool._idle.values()) and pool._open == 0
        status, _, _ = await post(pool, srv.url("/plain"))  # never written to the closed one
        assert status == 200 and srv.connections == 3
        pool.close()


async def test_a_servers_keep_alive_timeout_bounds_reuse() -> None:
    """`Keep-Alive: timeout=1`: reused at once, not after 0.75 s idle (the server may be closing
    it); without the header the pool's own 15 s holds."""
    async with Scripted() as srv:
        pool = HttpPool(2)
        await post(pool, srv.url("/ka-timeout"))
        await post(pool, srv.url("/ka-timeout"))
        assert srv.connections == 1
        await asyncio.sleep(0.8)
        await post(pool, srv.url("/plain"))
        assert srv.connections == 2  # not reused past timeout - margin
        await asyncio.sleep(0.8)
        await post(pool, srv.url("/plain"))
        assert srv.connections == 2  # no header: reused
        pool.close()


async def test_http10_keep_alive_is_reused_and_plain_http10_is_not() -> None:
    async with Scripted() as srv:
        pool = HttpPool(2)
        for _ in range(3):
            status, _, data = await post(pool, srv.url("/http10-keep"))
            assert status == 200 and data == b'{"ok": true}'
        assert srv.connections == 1
        for _ in range(3):  # the first goes on the kept connection, which its answer then closes
            assert (await post(pool, srv.url("/http10")))[0] == 200
        assert srv.connections == 3  # an HTTP/1.0 answer without keep-alive closes its connection
        pool.close()


async def test_keep_alive_timeout_parsing() -> None:  # async: the module's asyncio mark
    from agen.providers.http1_conn import reuse_for as _reuse_for

    assert _reuse_for("timeout=5, max=100", 15.0) == 4.0
    assert _reuse_for("max=100;Timeout = 1", 15.0) == 0.75
    assert _reuse_for("timeout=60", 15.0) == 15.0
    assert _reuse_for("max=100", 15.0) == 15.0
    assert _reuse_for("timeout=0", 15.0) == 0.0


async def test_server_faults_are_os_errors_and_free_the_slot() -> None:
    async with Scripted() as srv:
        pool = HttpPool(1)
        with pytest.raises(ConnectionResetError):
            await post(pool, srv.url("/mid-body"))
        with pytest.raises(asyncio.TimeoutError):
            await post(pool, srv.url("/silent"), read_timeout=0.2)
        with pytest.raises(HttpProtocolError):
            await post(pool, srv.url("/junk"))
        assert pool._open == 0  # every failed connection gave its slot back: a limit of 1 still works
        status, _, _ = await post(pool, srv.url("/plain"))
        assert status == 200
        pool.close()


async def test_refused_connection_is_an_os_error() -> None:
    async with Scripted() as srv:
        url = srv.url("/plain")
    pool = HttpPool(1)
    with pytest.raises(ConnectionRefusedError):
        await post(pool, url)
    assert pool._open == 0
    pool.close()


async def test_cancelled_request_drops_its_connection() -> None:
    async with Scripted() as srv:
        pool = HttpPool(1)
        task = asyncio.ensure_future(post(pool, srv.url("/silent")))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool._open == 0 and not any(pool._idle.values())  # its late answer can never reach another caller
        status, _, _ = await post(pool, srv.url("/plain"))
        assert status == 200 and srv.connections == 2
        pool.close()


async def test_halt_refuses_before_any_byte_is_written() -> None:
    halted: list[BaseException] = []
    async with Scripted() as srv:
        pool = HttpPool(2, lambda: halted[0] if halted else None)
        await post(pool, srv.url("/plain"))
        halted.append(RuntimeError("stopping"))
        with pytest.raises(RuntimeError, match="stopping"):
            await post(pool, srv.url("/plain"))  # on the pooled connection
        with pytest.raises(RuntimeError, match="stopping"):
            await post(pool, f"http://localhost:{srv.port}/plain")  # on a new one
        await asyncio.sleep(0.05)
        assert len(srv.requests) == 1
        pool.close()


async def test_header_with_a_newline_is_refused_without_showing_its_value() -> None:
    pool = HttpPool(1)
    with pytest.raises(ValueError) as e:
        pool.target("http://127.0.0.1:1/x", {"authorization": "Bearer sk-secret\r\nx-evil: 1"})
    assert "authorization" in str(e.value) and "sk-secret" not in str(e.value)
    pool.close()


async def test_tls_with_a_verified_certificate_and_a_refused_one() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    async with Scripted(server_ctx) as srv:
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        pool = HttpPool(2, ssl_context=client_ctx)
        for _ in range(3):
            status, _, data = await post(pool, srv.url("/plain"))
            assert status == 200 and orjson.loads(data) == {"ok": True}
        assert pool.connections_made == 1
        pool.close()
        untrusting = HttpPool(1)  # the system's CAs: the throwaway CA is not among them
        with pytest.raises(ssl.SSLError):
            await post(untrusting, srv.url("/plain"))
        untrusting.close()


async def test_the_sims_http_options_change_what_goes_on_the_wire() -> None:
    from agen.sim import start_sim

    server = await start_sim({"http": {"chunked": True, "gzip": True, "close_p": 1.0},
                              "models": {"sim-small": {"latency_ms": {"median": 0, "sigma": 0}}}})
    try:
        pool = HttpPool(2)
        url = server.base_url + "/v1/chat/completions"
        for _ in range(2):
            status, headers, data = await post(pool, url)
            assert status == 200 and orjson.loads(data)["choices"]  # decoded from gzip, read from chunks
            assert headers["content-encoding"] == "gzip" and headers["transfer-encoding"] == "chunked"
            assert headers["connection"] == "close"
        assert pool.connections_made == 2  # closed after each answer, as `close_p: 1` says
        pool.close()
    finally:
        await server.aclose()
    server = await start_sim({"http": {"keepalive_s": 2.0, "advertise_keepalive": True},
                              "models": {"sim-small": {"latency_ms": {"median": 0, "sigma": 0}}}})
    try:
        pool = HttpPool(2)
        url = server.base_url + "/v1/chat/completions"
        status, headers, _ = await post(pool, url)
        assert status == 200 and headers["keep-alive"] == "timeout=2"
        await post(pool, url)
        assert pool.connections_made == 1  # (reused within 1.5 s: a slow machine's stall fits in it)
        await asyncio.sleep(1.6)  # past 2 - 25%: not reused, though the server has not closed it yet
        await post(pool, url)
        assert pool.connections_made == 2
        pool.close()
    finally:
        await server.aclose()


async def test_a_host_is_looked_up_once_while_its_connections_come_and_go() -> None:
    async with Scripted() as srv:
        pool = HttpPool(1)
        lookups: list[str] = []
        real = pool.loop.getaddrinfo

        async def counted(host, *a, **kw):  # type: ignore[no-untyped-def]
            lookups.append(host)
            return await real(host, *a, **kw)

        pool.loop.getaddrinfo = counted  # type: ignore[method-assign]
        try:
            for _ in range(3):
                status, _, _ = await post(pool, f"http://localhost:{srv.port}/close-after")
                assert status == 200
        finally:
            del pool.loop.getaddrinfo  # type: ignore[method-assign]
        assert srv.connections == 3 and lookups == ["localhost"]
        pool.close()
