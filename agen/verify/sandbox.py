"""Run generated Python against its tests in a separate, limited process — never in agen's own.

Each run is a fresh `python -I -S -B agen/verify/sandbox_child.py` (isolated mode: no user site,
no PYTHON* variables, no script directory on the path) with:

* an **empty environment** (no API key or anything else is inherited) and stdin closed after the job;
* a **fresh temporary directory** as its working directory (outside the run directory, removed
  afterwards) — the only place it may write; reads are limited to it and the standard library;
* **resource limits** set in the child before the code runs: CPU seconds (RLIMIT_CPU, SIGXCPU then
  SIGKILL), address space (RLIMIT_AS: allocating without bound raises MemoryError), file size,
  open files, no core dumps;
* its **own session and process group**, killed with SIGKILL on the wall-clock limit and again
  after every run, so nothing it started outlives it;
* **no network and no new processes**: when agen runs as root and `unshare` works, the child gets
  fresh network and PID namespaces (`unshare --net --pid --fork --kill-child`: no interface but a
  down loopback, and everything it forks dies with it) and drops to user `nobody` with
  RLIMIT_NPROC 0. Always, an audit hook in the child refuses socket creation, fork/exec/spawn,
  ctypes and file access outside its directory. The hook alone is not a security boundary against
  hostile code (it is in-process); with the namespaces and the unprivileged user it is one layer of
  several. `isolation()` says which layers this machine gets.

Runs are awaited as asyncio subprocesses, a bounded number at a time (`Sandbox.parallel`), so the
event loop never blocks on them and a run that hangs costs at most its wall limit.
"""

from __future__ import annotations

import asyncio
import functools
import marshal
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "Sandbox", "SandboxResult", "isolation"]

CHILD = Path(__file__).with_name("sandbox_child.py")
NOBODY = 65534
_UNSHARE = ("unshare", "--net", "--pid", "--fork", "--kill-child")
_REPORT_CAP = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_s: float = 2.0
    wall_s: float = 5.0
    memory_mb: int = 512
    file_mb: int = 1


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How one run ended. `outcome` is `pass` (every test passed) or `fail:<why>`, with why one of
    tests, error, timeout, cpu, memory, blocked (the sandbox refused something), no_report
    (the process ended without reporting: killed, crashed, or exited early), spawn (the machine
    could not start the process)."""

    outcome: str
    passed: int
    total: int
    detail: str
    wall_s: float


@functools.lru_cache(maxsize=1)
def isolation() -> tuple[str, ...]:
    """The isolation layers this machine gives a run (probed once): always rlimits, session,
    empty environment, temporary directory and the audit hook; as root with a working `unshare`,
    also network and PID namespaces and the unprivileged user."""
    layers = ("rlimits", "session", "empty_env", "tmpdir", "audit_hook")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return layers
    try:
        ok = subprocess.run([*_UNSHARE, "true"], env={}, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (*layers, "netns", "pidns", "nobody") if ok else layers


@functools.lru_cache(maxsize=1)
def _stdlib_hidden_from_others() -> bool:
    """Whether a user other than the owner cannot read this interpreter's standard library (e.g. a
    pyenv under /root): then the child imports common modules before it drops to `nobody`."""
    import sysconfig

    path = Path(sysconfig.get_paths()["stdlib"]).resolve()
    for part in (path, *path.parents):
        try:
            mode = part.stat().st_mode
        except OSError:
            return True
        if not mode & 0o001 or (part == path and not mode & 0o004):
            return True
    return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True, slots=True)
class _Report:
    passed: int
    total: int
    error: str
    failed: str


def _parse_report(out: bytes, nonce: str) -> _Report | None:
    """The child's report line (the last one carrying the nonce), or None if there is none."""
    found = None
    for line in out[-_REPORT_CAP:].splitlines():
        if line.startswith(nonce.encode()):
            fields = line[len(nonce):].decode("utf-8", "replace").split("\x1f")
            if len(fields) == 4 and fields[0].isdigit() and fields[1].isdigit():
                found = _Report(int(fields[0]), int(fields[1]), fields[2], fields[3])
    return found


def _classify(report: _Report | None, returncode: int | None, timed_out: bool, cpu_s: float,
              elapsed: float) -> tuple[str, str]:
    if report is not None:
        err = report.error
        if report.total and report.passed == report.total and not err:
            return "pass", ""
        if err.startswith("MemoryError"):
            return "fail:memory", err
        if err.startswith("PermissionError: sandbox:"):
            return "fail:blocked", err
        if err:
            return "fail:error", err
        return "fail:tests", report.failed or "no tests"
    if timed_out:
        return "fail:timeout", f"killed after the wall limit ({elapsed:.1f}s)"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGKILL):
        return "fail:cpu", f"killed at the CPU limit ({cpu_s}s), exit {returncode}"
    return "fail:no_report", f"exited {returncode} without a report"


class Sandbox:
    """Runs code against tests in child processes, at most `parallel` at once."""

    def __init__(self, limits: Limits | None = None, parallel: int | None = None, namespaces: bool = True) -> None:
        self.limits = limits or Limits()
        self.parallel = parallel or os.cpu_count() or 1
        # False: only the layers every machine has (for measuring what the namespaces cost, and
        # for testing the audit hook on its own, as a non-root user would get it)
        self.namespaces = namespaces
        self._slots: asyncio.Semaphore | None = None  # made on first use, in the running loop

    async def run(self, code: str, tests: tuple[str, ...] | list[str]) -> SandboxResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.parallel)
        async with self._slots:
            return await self._run(code, list(tests))

    async def _run(self, code: str, tests: list[str]) -> SandboxResult:
        lim = self.limits
        layers = isolation() if self.namespaces else isolation()[:5]
        nonce = secrets.token_hex(16)
        job = {"code": code, "tests": tests, "nonce": nonce, "cpu_s": lim.cpu_s, "memory_mb": lim.memory_mb,
               "file_mb": lim.file_mb, "uid": NOBODY if "nobody" in layers else None,
               "preload": "nobody" in layers and _stdlib_hidden_from_others()}
        workdir = tempfile.mkdtemp(prefix="agen-sandbox-")
        if "nobody" in layers:
            os.chown(workdir, NOBODY, NOBODY)
        argv = [sys.executable, "-I", "-S", "-B", str(CHILD)]
        if "netns" in layers:
            argv = [*_UNSHARE, *argv]
        start = time.monotonic()
        timed_out = False
        out = b""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, cwd=workdir, env={}, start_new_session=True)
        except OSError as exc:  # no process to run it in (EAGAIN, ENOMEM, ...): a failed sample, not a crash
            shutil.rmtree(workdir, ignore_errors=True)
            return SandboxResult("fail:spawn", 0, len(tests), f"could not start the sandbox: {exc}", 0.0)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(marshal.dumps(job)), timeout=lim.wall_s)
        except asyncio.TimeoutError:
            timed_out = True
            _kill_group(proc.pid)
            await proc.wait()
        finally:
            _kill_group(proc.pid)  # anything it left behind in its group
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)
        elapsed = time.monotonic() - start
        report = _parse_report(out, nonce)
        outcome, detail = _classify(report, proc.returncode, timed_out, lim.cpu_s, elapsed)
        passed = report.passed if report else 0
        return SandboxResult(outcome, passed, len(tests), detail, round(elapsed, 4))
