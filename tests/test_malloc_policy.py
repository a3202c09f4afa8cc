"""The session fixes glibc's mmap threshold: a big buffer freed no longer moves later ones onto the heap.

Checked in a fresh child process (the setting is process-wide and one-way) by where glibc puts a
1 MB block after a 4 MB one was freed: inside the brk heap (`[heap]` in /proc/self/maps) under
glibc's dynamic threshold, in its own mapping (given back to the OS on free) once fixed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from agen.app import malloc_policy, runner
from agen.app.malloc_policy import MMAP_THRESHOLD, TRIM_THRESHOLD, fix_malloc_thresholds
from conftest import quick_cfg

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not os.path.exists("/proc/self/maps"),
                                reason="glibc's allocator on Linux")

CHILD = r"""
import ctypes, json, sys
from agen.app.malloc_policy import fix_malloc_thresholds

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = fix_malloc_thresholds() if sys.argv[1] == "fix" else {}
libc.free(libc.malloc(4 << 20))  # mmapped, then freed: a dynamic threshold rises to 4 MB here
block = libc.malloc(1 << 20)
heap = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
on_heap = any(int(lo, 16) <= block < int(hi, 16) for lo, hi in heap)
print(json.dumps({"applied": applied, "on_heap": on_heap}))
"""


def _child(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env={**clean, **env}, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


@glibc_only
def test_fixed_threshold_keeps_big_blocks_off_the_heap_after_a_big_free() -> None:
    assert _child("default")["on_heap"]  # glibc's dynamic threshold: the premise of the fix
    fixed = _child("fix")
    assert fixed["applied"] == {"mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    assert not fixed["on_heap"]


@glibc_only
def test_a_threshold_the_user_chose_is_left_as_it_is() -> None:
    mine = _child("fix", MALLOC_MMAP_THRESHOLD_=str(8 << 20))  # the user wants 8 MB blocks on the heap
    assert mine["applied"] == {"trim_threshold": TRIM_THRESHOLD}
    assert mine["on_heap"]
    tuned = _child("fix", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1048576")
    assert tuned["applied"] == {"mmap_threshold": MMAP_THRESHOLD} and not tuned["on_heap"]


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc_policy, "_applied", None)
    monkeypatch.setattr(malloc_policy.platform, "libc_ver", lambda: ("", ""))
    assert fix_malloc_thresholds({}) == {}
    assert fix_malloc_thresholds({}) == {}  # decided once per process


def test_a_session_applies_it_before_anything_else(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runner, "fix_malloc_thresholds", lambda: calls.append("fixed") or {})
    monkeypatch.setattr(runner, "preflight", lambda *a: calls.append("preflight") or ([], {}))
    monkeypatch.setattr(runner, "_open_and_run", lambda *a: runner.Outcome(0, "stub", {}))
    cfg = quick_cfg(tmp_path)
    assert runner.run_session(cfg, probe=False).message == "stub"
    assert calls == ["fixed", "preflight"]
