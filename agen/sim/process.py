"""`SimProcess`: the sim in its own child process, for benchmarks and the quick start."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from agen.errors import SimStartError
from agen.sim.server import LISTENING

__all__ = ["SimProcess", "die_with_parent"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int, every_s: float = 0.5, pdeathsig: bool = True) -> None:
    """In the child: end (SIGTERM, so the server closes cleanly) when `parent_pid` is gone.

    Linux delivers the signal itself once asked with prctl(PR_SET_PDEATHSIG) — even after a
    `kill -9` of the parent; a daemon thread watching getppid() covers other systems, and the
    case where the parent died before prctl was called. (PR_SET_PDEATHSIG fires when the parent
    *thread* ends, so a parent starting the child off its main thread asks for the watch alone.)"""
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class SimProcess:
    """Sync context manager: start `python -m agen.sim`, wait until it listens, stop it on exit.

    `.base_url` is `http://HOST:PORT` (OpenAI clients use `base_url + "/v1"`).

    The child runs in its own session, so a Ctrl-C at the terminal reaches only the parent (which
    drains its in-flight requests against a sim that is still up); `stop()` ends the child, and so
    does the parent's death, however it dies (`die_with_parent`). A busy fixed port or a child that
    exits before listening raises SimStartError with a one-line cause. Its
    stdout and stderr go to an unlinked temp file, never to a pipe nobody reads, so a chatty child
    cannot block; the file is read (without moving the child's offset) for the listening line and
    for the error of a child that failed to start.
    """

    def __init__(self, config: str | Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 15.0) -> None:
        self.config = str(config) if config is not None else None
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.base_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def reset(self, timeout_s: float = 10.0) -> None:
        """`POST /sim/reset`: stats, scripts, buckets, quotas, caches and batches as at start (one
        sim serves several tests or benchmark rows, each with a bill of its own)."""
        import urllib.request

        req = urllib.request.Request(self.base_url + "/sim/reset", method="POST")
        urllib.request.urlopen(req, timeout=timeout_s).close()

    def _output(self) -> str:
        assert self._out is not None
        return os.pread(self._out.fileno(), 1 << 20, 0).decode(errors="replace")

    def start(self) -> SimProcess:
        if self.port and not _port_free(self.host, self.port):
            raise SimStartError(f"simulator.port {self.port} on {self.host} is in use (an agen sim left over "
                                f"from an earlier run, or another server): stop it, or choose another port "
                                f"(0 picks a free one)")
        cmd = [sys.executable, "-m", "agen.sim", "--host", self.host, "--port", str(self.port),
               "--parent-pid", str(os.getpid())]
        if threading.current_thread() is not threading.main_thread():
            cmd.append("--no-pdeathsig")
        if self.config is not None:
            cmd += ["--config", self.config]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._out = tempfile.TemporaryFile(prefix="agen-sim-", suffix=".log")  # noqa: SIM115 - lives as long as the child
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._out,
                                          env=env, start_new_session=True)
            deadline = time.monotonic() + self.startup_timeout_s
            while True:
                for line in self._output().splitlines():
                    if line.startswith(LISTENING):
                        self.base_url = line.split()[1]
                        return self
                if self._proc.poll() is not None:
                    lines = [ln for ln in self._output().strip().splitlines() if ln.strip()]
                    raise SimStartError(f"agen sim exited before listening: {lines[-1] if lines else '(no output)'}")
                if time.monotonic() >= deadline:
                    raise SimStartError(f"agen sim did not start within {self.startup_timeout_s}s")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL."""
        proc, self._proc = self._proc, None
        out, self._out = self._out, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if out is not None:
            out.close()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
