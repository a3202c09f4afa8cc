"""`SimProcess`: the sim in its own child process, for benchmarks and the quick start."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from agen.sim.server import LISTENING

__all__ = ["SimProcess"]


class SimProcess:
    """Sync context manager: start `python -m agen.sim`, wait until it listens, stop it on exit.

    `.base_url` is `http://HOST:PORT` (OpenAI clients use `base_url + "/v1"`).

    The child runs in its own session, so a Ctrl-C at the terminal reaches only the parent (which
    drains its in-flight requests against a sim that is still up); `stop()` ends the child. Its
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

    def _output(self) -> str:
        assert self._out is not None
        return os.pread(self._out.fileno(), 1 << 20, 0).decode(errors="replace")

    def start(self) -> SimProcess:
        cmd = [sys.executable, "-m", "agen.sim", "--host", self.host, "--port", str(self.port)]
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
                    raise RuntimeError(f"agen sim exited before listening: {self._output().strip()[-2000:]}")
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"agen sim did not start within {self.startup_timeout_s}s")
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
