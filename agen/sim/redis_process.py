"""A throwaway `redis-server` on a free loopback port in a temp dir, for tests and benchmarks.

No persistence, no config file: `stop()` (or the parent's exit) leaves nothing behind.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """`with RedisProcess() as r: r.url` — a fresh, empty Redis at `redis://127.0.0.1:PORT/0`."""

    def __init__(self, *, password: str | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        self._dir = tempfile.TemporaryDirectory(prefix="agen-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        for _ in range(5):  # a free port can be taken between probing and binding: try another
            self.port = _free_port()
            args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
                    "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
            if password:
                args += ["--requirepass", password]
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait_up():
                return
            self._proc.kill()
            self._proc.wait()
        raise RuntimeError(f"redis-server did not start: {self._proc.stderr.read().decode()[-300:]!r}")  # type: ignore[union-attr]

    def _wait_up(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:  # type: ignore[union-attr]
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
                    if reply.startswith((b"+PONG", b"-NOAUTH")):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._dir.cleanup()

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
