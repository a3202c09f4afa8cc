"""Event-loop lag, measured all the time: how late a timer fires is how long everything else waited.

One coroutine sleeps `interval_s` again and again and records how much later than asked it woke
(a fixed log-scale histogram: flat memory, p50/p99 to ~12%, the max exact). A watchdog thread
checks that the coroutine keeps beating; when the loop has not come back for `warn_s`, it logs
`event_loop_blocked` once per stall with the loop thread's stack at that moment — the code that
is blocking it (a debug aid: any CPU work on the loop shows up here with its line).

Two figures tell *why* the loop was late. `own_max_ms`: for each tick, the smaller of its lag and
the CPU time the loop's thread used during it, an upper bound on the part of the lag that the
process's own work explains; the rest is the machine (other processes holding the cores). On a
machine with 6 runnable processes per core a 100 ms turn of our own shows as ~600 ms of lag.
`gc_max_ms`/`gc_ms`: the longest and the total pause of the cycle collector (tuned by `agen.app.gc_policy`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import math
import sys
import threading
import time
import traceback
from typing import Any

import structlog

__all__ = ["LagHistogram", "LoopLagMonitor"]

log = structlog.get_logger("agen.engine.loop_lag")

_PER_DECADE = 20
_EDGES = [10 ** (e / _PER_DECADE) for e in range(-4 * _PER_DECADE, 2 * _PER_DECADE + 1)]  # 0.1 ms .. 100 s


class LagHistogram:
    """Counts of lag samples in log-spaced buckets (seconds); percentiles are bucket upper edges."""

    __slots__ = ("counts", "max_s", "n")

    def __init__(self) -> None:
        self.counts = [0] * (len(_EDGES) + 1)
        self.max_s = 0.0
        self.n = 0

    def add(self, lag_s: float) -> None:
        self.counts[bisect.bisect_left(_EDGES, lag_s)] += 1
        self.n += 1
        if lag_s > self.max_s:
            self.max_s = lag_s

    def quantile(self, q: float) -> float:
        if not self.n:
            return 0.0
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(_EDGES[i] if i < len(_EDGES) else self.max_s, self.max_s)
        return self.max_s


class LoopLagMonitor:
    """Start inside the loop (`start`), stop with `close`; `snapshot()` is JSON-ready."""

    def __init__(self, interval_s: float = 0.02, warn_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.warn_s = warn_s
        self.hist = LagHistogram()
        self.own_max_s = 0.0  # max over ticks of min(lag, the loop thread's CPU during the tick)
        self.gc_max_s = 0.0
        self.gc_total_s = 0.0
        self.gc_full = 0  # full (generation 2) collections
        self._gc_t0 = 0.0
        self.stalls = 0  # times the loop was away for more than warn_s
        self.max_at_s = 0.0  # when the worst lag ended, seconds after start
        self._t0 = time.perf_counter()
        self._beat = time.perf_counter()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = self._t0 = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="loop-lag")
        self._thread = threading.Thread(target=self._watch, name="agen-loop-watchdog", daemon=True)
        self._thread.start()
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        pause = time.perf_counter() - self._gc_t0
        self.gc_total_s += pause
        self.gc_max_s = max(self.gc_max_s, pause)
        self.gc_full += info.get("generation") == 2

    async def _tick(self) -> None:
        interval = self.interval_s
        cpu = time.thread_time
        while True:
            t0, c0 = time.perf_counter(), cpu()
            await asyncio.sleep(interval)
            now = time.perf_counter()
            self._beat = now
            lag = now - t0 - interval
            if lag > self.hist.max_s:
                self.max_at_s = now - self._t0
            self.hist.add(max(0.0, lag))
            own = min(lag, cpu() - c0)
            if own > self.own_max_s:
                self.own_max_s = own

    def _loop_cpu(self) -> float | None:
        """CPU seconds the loop's thread has used (Linux, macOS), else None."""
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(self._loop_thread))
        except (AttributeError, OSError):
            return None

    def _watch(self) -> None:
        reported_beat = None
        cpu_at: tuple[float, float | None] = (self._beat, self._loop_cpu())  # (beat, loop CPU at that beat)
        while not self._stop.wait(self.warn_s / 4):
            beat = self._beat
            if beat != cpu_at[0]:
                cpu_at = (beat, self._loop_cpu())
            away = time.perf_counter() - beat
            if away > self.warn_s + self.interval_s and beat != reported_beat:
                reported_beat = beat
                self.stalls += 1
                frame = sys._current_frames().get(self._loop_thread)
                stack = "".join(traceback.format_stack(frame, limit=12)) if frame is not None else "?"
                now_cpu, then_cpu = self._loop_cpu(), cpu_at[1]
                # CPU the loop burned meanwhile (at most `away`): far less means other processes held the cores
                cpu_ms = round((now_cpu - then_cpu) * 1000) if now_cpu is not None and then_cpu is not None else None
                log.warning("event_loop_blocked", blocked_ms=round(away * 1000), loop_cpu_ms=cpu_ms, stack=stack)

    def snapshot(self) -> dict[str, Any]:
        h = self.hist
        return {"p50_ms": round(h.quantile(0.5) * 1000, 3), "p99_ms": round(h.quantile(0.99) * 1000, 3),
                "max_ms": round(h.max_s * 1000, 3), "max_at_s": round(self.max_at_s, 3), "samples": h.n, "stalls": self.stalls,
                "stall_threshold_ms": round(self.warn_s * 1000), "own_max_ms": round(self.own_max_s * 1000, 3),
                "gc_max_ms": round(self.gc_max_s * 1000, 3), "gc_ms": round(self.gc_total_s * 1000, 1),
                "gc_full": self.gc_full}

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
        if self._thread is not None:
            self._thread.join(1.0)
