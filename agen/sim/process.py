"""`SimProcess`: the sim in its own child process, for benchmarks and the quick start."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from agen.sim.server import LISTENING

__all__ = ["SimProcess"]


class SimProcess:
    """Sync context manager: start `python -m agen.sim`, wait until it listens, stop it on exit.

    `.base_url` is `http://HOST:PORT` (OpenAI clients use `base_url + "/v1"`).
    """

    def __init__(self, config: str | Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 15.0) -> None:
        self.config = str(config) if config is not None else None
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> SimProcess:
        cmd = [sys.executable, "-m", "agen.sim", "--host", self.host, "--port", str(self.port)]
        if self.config is not None:
            cmd += ["--config", self.config]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self._proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise RuntimeError(f"agen sim did not start within {self.startup_timeout_s}s")
                line = self._proc.stdout.readline()
                if not line:
                    err = self._proc.stderr.read() if self._proc.stderr else ""
                    raise RuntimeError(f"agen sim exited before listening: {err.strip()[-2000:]}")
                if line.startswith(LISTENING):
                    self.base_url = line.split()[1]
                    return self
        except BaseException:
            self.stop()
            raise
        finally:
            sel.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
