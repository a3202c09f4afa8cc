"""The C allocator's settings for a session: a freed big buffer goes back to the OS, always.

glibc serves an allocation of 128 KB or more with its own mmap and unmaps it on free, but the
first such free raises that threshold to the freed size (up to 32 MB, and the trim threshold to
twice that). From then on buffers of a few MB (the dedup index's numpy runs and merge pieces,
made in its worker thread every few thousand questions) are carved from the heaps, where the
holes they leave stay resident: in `benchmarks/memory.py` (30k tasks) the steady RSS sat ~7 MB
higher than with the threshold fixed, and higher still after each larger merge. A fixed
threshold (glibc's own starting value) turns the dynamic raise off; the cost is one mmap/munmap
pair per buffer of 128 KB or more, which a run makes a few of per second at most.

Process-wide and one-way (glibc cannot report the previous values to restore), applied at most
once; a threshold the user set (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or
`GLIBC_TUNABLES`) is left as chosen, and other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable, Mapping

MMAP_THRESHOLD = 128 * 1024  # glibc's initial value: what it uses until the first big free
TRIM_THRESHOLD = 128 * 1024  # glibc's initial value: free heap top beyond this is returned

# mallopt parameters (malloc.h), and how a user would have set each one themselves
_PARAMS = {"mmap_threshold": (-3, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
           "trim_threshold": (-1, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_")}

_applied: dict[str, int] | None = None


def fix_malloc_thresholds(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Fix glibc's mmap and trim thresholds for the rest of the process; returns what was set
    (empty on another C library, or where the user chose a value)."""
    global _applied
    if _applied is not None:
        return dict(_applied)
    _applied = {}
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return {}
    tunables = environ.get("GLIBC_TUNABLES", "")
    for name, (param, value, env) in _PARAMS.items():
        if env in environ or f"glibc.malloc.{name}" in tunables:
            continue
        if mallopt(param, value) == 1:
            _applied[name] = value
    return dict(_applied)


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always exports it
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn
