"""The sandbox contains what generated code does: each hostile solution is killed or refused within
its limits, counted as a failed sample, and never stalls other runs or leaks the environment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agen.verify.sandbox import CHILD, Limits, Sandbox, SandboxResult, isolation

LIMITS = Limits(cpu_s=1, wall_s=3, memory_mb=256)
OK = "def f(x):\n    return x + 1\n"
TESTS = ["assert f(1) == 2"]


def run(code: str, tests: list[str] = TESTS, limits: Limits = LIMITS) -> SandboxResult:
    return asyncio.run(Sandbox(limits).run(code, tests))


def _sandbox_processes() -> list[str]:
    """Live processes running the sandbox child (none may outlive its run)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(CHILD).encode() in (p / "cmdline").read_bytes():
                    found.append(p.name)
            except OSError:
                pass
    return found


def test_a_passing_solution_passes():
    r = run(OK, ["assert f(1) == 2", "assert f(-1) == 0"])
    assert (r.outcome, r.passed, r.total) == ("pass", 2, 2)


def test_infinite_loop_is_killed_at_the_cpu_limit():
    # a wall limit far above the CPU limit: on a loaded machine the loop gets a small share of a
    # core, and the default wall limit would fire first (fail:timeout), which is not what this checks
    r = run("def f(x):\n    while True:\n        pass\n", limits=Limits(cpu_s=1, wall_s=60, memory_mb=256))
    assert r.outcome == "fail:cpu", r
    assert not _sandbox_processes()


def test_sleeping_forever_is_killed_at_the_wall_limit():
    r = run("import time\ndef f(x):\n    time.sleep(3600)\n", limits=Limits(cpu_s=1, wall_s=1, memory_mb=256))
    assert r.outcome == "fail:timeout", r
    assert not _sandbox_processes()


def test_unbounded_allocation_hits_the_memory_limit():
    r = run("def f(x):\n    hog = []\n    while True:\n        hog.append(bytearray(10**7))\n")
    assert r.outcome == "fail:memory", r


def test_fork_is_refused_and_nothing_outlives_the_run():
    r = run("import os\ndef f(x):\n    while True:\n        os.fork()\n")
    assert r.outcome == "fail:blocked" and "os.fork" in r.detail, r
    r = run("import subprocess\ndef f(x):\n    subprocess.Popen(['sleep', '60'])\n    return 2\n")
    assert r.outcome == "fail:blocked", r
    assert not _sandbox_processes()


@pytest.mark.parametrize("code", [
    "import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', 9))\n",
    "def f(x):\n    import _socket\n    _socket.socket()\n",
    "import urllib.request\ndef f(x):\n    urllib.request.urlopen('http://127.0.0.1:9/')\n",
])
def test_network_is_refused(code):
    r = run(code)
    # refused by the audit hook, or (as `nobody`, which cannot read a stdlib under /root) not importable
    assert r.outcome in ("fail:blocked", "fail:error"), r
    assert "Connection" not in r.detail


def test_environment_secrets_are_not_inherited(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-must-not-leak")
    code = "import os\ndef f(x):\n    return dict(os.environ)\n"
    # empty but for the locale Python itself sets when it coerces the C locale
    r = run(code, ["assert set(f(1)) <= {'LC_CTYPE'}", "assert 'OPENAI_API_KEY' not in __import__('os').environ"])
    assert r.outcome == "pass", r
    r = run("import os\ndef f(x):\n    return os.environ['OPENAI_API_KEY']\n", ["assert f(1)"])
    assert r.outcome == "fail:error" and "KeyError" in r.detail, r
    assert "sk-test" not in r.detail


def test_writes_outside_its_directory_are_refused(tmp_path):
    target = tmp_path / "escape.txt"
    r = run(f"def f(x):\n    open({str(target)!r}, 'w').write('x')\n    return x + 1\n")
    assert r.outcome == "fail:blocked", r
    assert not target.exists()
    r = run("def f(x):\n    open('scratch.txt', 'w').write('ok')\n    return len(open('scratch.txt').read())\n")
    assert r.outcome == "pass", r  # its own temporary directory is writable


def test_the_run_directory_cannot_be_read(tmp_path):
    secret = tmp_path / "run" / "config.yaml"
    secret.parent.mkdir()
    secret.write_text("api_key_env: X\n")
    r = run(f"def f(x):\n    return open({str(secret)!r}).read()\n", ["assert f(1)"])
    assert r.outcome == "fail:blocked", r
    r = run(f"import os\ndef f(x):\n    return os.listdir({str(secret.parent)!r})\n", ["assert f(1)"])
    assert r.outcome == "fail:blocked", r


def test_exiting_early_is_not_a_pass():
    assert run("import os\nos._exit(0)\n").outcome == "fail:no_report"
    assert run("import sys\ndef f(x):\n    sys.exit(0)\n").outcome == "fail:error"


def test_hostile_runs_do_not_stall_others():
    """A loop, a sleeper and a memory hog in flight together with good runs: every good run passes,
    every hostile one fails, and all of them end."""
    # wall_s leaves the good runs' start-up room beside a CPU and a memory hog on two cores
    sb = Sandbox(Limits(cpu_s=1, wall_s=8, memory_mb=256), parallel=4)
    hostile = ["def f(x):\n    while True: pass\n", "import time\ndef f(x):\n    time.sleep(60)\n",
               "def f(x):\n    a = []\n    while True: a.append(bytearray(10**7))\n"]

    async def go() -> list[SandboxResult]:
        return await asyncio.gather(*(sb.run(c, TESTS) for c in [*hostile, OK, OK, OK, OK]))

    results = asyncio.run(go())
    assert [r.outcome == "pass" for r in results] == [False] * 3 + [True] * 4
    assert not _sandbox_processes()


def test_isolation_layers_are_reported():
    layers = isolation()
    assert {"rlimits", "session", "empty_env", "tmpdir", "audit_hook"} <= set(layers)
    if os.geteuid() == 0 and "netns" in layers:
        assert {"pidns", "nobody"} <= set(layers)


def test_the_audit_hook_alone_contains_them(tmp_path):
    """Without namespaces or the drop to `nobody` (what a non-root user gets), the hook still
    refuses sockets, processes and writes outside the directory."""
    target = tmp_path / "escape.txt"
    hostile = ["import socket\ndef f(x):\n    socket.socket()\n", "import os\ndef f(x):\n    os.fork()\n",
               "import subprocess\ndef f(x):\n    subprocess.run(['true'])\n",
               f"def f(x):\n    open({str(target)!r}, 'a').write('x')\n",
               "def f(x):\n    import ctypes\n    ctypes.CDLL(None)\n"]
    sb = Sandbox(LIMITS, namespaces=False)

    async def go() -> list[SandboxResult]:
        return await asyncio.gather(*(sb.run(c, TESTS) for c in [*hostile, OK]))

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["fail:blocked"] * len(hostile) + ["pass"], results
    assert not target.exists()


def test_cost_benchmark_runs():
    import subprocess
    import sys

    import orjson

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "sandbox_cost.py"), "--quick"],
                         capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert doc["all_passed"] and doc["bare_ms"] > 0 and doc["full_ratio"] > 0


def test_a_process_that_cannot_start_is_a_failed_sample(monkeypatch):
    async def refuse(*args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)
    r = run(OK)
    assert r.outcome == "fail:spawn" and "temporarily unavailable" in r.detail
