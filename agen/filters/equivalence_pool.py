"""Answer equivalence off the event loop: math-verify/sympy in worker processes, with a hard timeout.

Almost every vote sample is a plain number, and `agen.gen.answers` decides those with a dict
lookup in microseconds: that stays inline. An answer that needs math-verify (radicals, intervals,
expressions) can cost milliseconds, or seconds (`2^{2^{2^{2^{10}}}}` vs `3` takes ~5 s, every
lane and the sink waiting behind it), so `VoteFeed` sends exactly those samples, with the vote's
`Tally`, to a small pool of worker processes (`EquivalencePool`, one per core, at least two,
started only when first needed) and awaits the tally back.

A sample that is not decided within `timeout_s` per comparison is **undecidable**: the worker is
killed (math-verify's own alarm-based timeouts are longer, and a stuck sympy call cannot be
interrupted any other way) and replaced, and the sample counts like a sample without an answer —
towards K, for no class, so neither for nor against the candidate — and is listed on the record
(`vote.undecidable`). Results are cached per (representative, answer) inside each worker (the
`agen.gen.answers` caches), and an answer that timed out in a vote is not tried again in that vote.

`agen.gen.answers` arms `signal.alarm`, which works only in a main thread: a worker process's
main thread is one, a thread pool's threads are not.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Hashable
from multiprocessing.connection import Connection
from typing import Any

import structlog

from agen.gen.answers import answer_key, is_numeric_key
from agen.gen.vote import Tally

__all__ = ["COMPARE_TIMEOUT_S", "EquivalencePool", "VoteFeed", "default_workers"]

log = structlog.get_logger("agen.filters.equivalence")

COMPARE_TIMEOUT_S = 2.0  # per comparison; the common math-verify comparison takes 1-50 ms


def default_workers() -> int:
    """One worker per core, at least two (one stuck comparison never stops the others)."""
    return max(2, min(8, os.cpu_count() or 1))


def _serve(conn: Connection) -> None:
    """Worker loop: (tally, answer) in, the tally with the answer counted out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it ends the workers
    while True:
        try:
            tally, answer = conn.recv()
        except (EOFError, OSError):
            return
        try:
            tally.add(answer)
            conn.send((True, tally))
        except Exception as exc:  # a comparison that fails is undecidable, not a dead worker
            conn.send((False, f"{type(exc).__name__}: {exc}"[:300]))


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["agen.gen.vote", "math_verify"])  # forks start warm
    return ctx


class _Worker:
    __slots__ = ("conn", "proc")

    def __init__(self, ctx: Any) -> None:
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="agen-equivalence")
        self.proc.start()
        child.close()
        self.conn: Connection = parent

    def kill(self) -> None:
        self.conn.close()
        self.proc.kill()


class EquivalencePool:
    """Worker processes that count one hard sample into a tally each, never blocking the loop."""

    def __init__(self, workers: int | None = None, timeout_s: float = COMPARE_TIMEOUT_S) -> None:
        self.size = workers or default_workers()
        self.timeout_s = timeout_s
        self.stats: Counter[str] = Counter()
        self._ctx: Any = None
        self._idle: list[_Worker] = []
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def add(self, tally: Tally, answer: str, comparisons: int = 1) -> Tally | None:
        """`tally` with `answer` counted, computed in a worker; None if undecidable within
        `comparisons` × `timeout_s` (the worker is then replaced)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._spawn()
            self.stats["offloaded"] += 1
            try:
                ok, value = await self._ask(worker, (tally, answer), self.timeout_s * max(1, comparisons))
            except TimeoutError:
                self.stats["timeouts"] += 1
                await self._discard(worker)
                return None
            except (EOFError, OSError) as exc:  # the worker died (OOM killer, ...)
                self.stats["errors"] += 1
                log.warning("equivalence_worker_died", error=type(exc).__name__)
                await self._discard(worker)
                return None
            self._idle.append(worker)
        if not ok:
            self.stats["errors"] += 1
            log.warning("equivalence_failed", answer=answer[:80], error=value)
            return None
        return value  # type: ignore[no-any-return]

    async def _spawn(self) -> _Worker:
        if self._ctx is None:
            self._ctx = _context()
        self.stats["started"] += 1
        return await asyncio.to_thread(_Worker, self._ctx)  # the first start launches the fork server

    @staticmethod
    async def _ask(worker: _Worker, job: tuple[Tally, str], timeout: float) -> tuple[bool, Any]:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = worker.conn.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            worker.conn.send(job)  # a small pickle into an empty pipe: never blocks
            async with asyncio.timeout(timeout):
                await ready
            return worker.conn.recv()  # type: ignore[no-any-return]
        finally:
            loop.remove_reader(fd)

    async def _discard(self, worker: _Worker) -> None:
        worker.kill()
        await asyncio.to_thread(worker.proc.join, 5)

    async def aclose(self) -> None:
        """Stop every worker (they are daemons too: they never outlive the run)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for w in idle:
            w.kill()
        if idle:
            await asyncio.to_thread(lambda: [w.proc.join(5) for w in idle])


class VoteFeed:
    """Feeds one vote's samples into its `Tally`: inline when the answers' keys decide (a number
    among numbers, or an answer already seen), in the pool otherwise."""

    __slots__ = ("_all_numeric", "_keys", "_pool", "_timed_out", "tally", "undecidable")

    def __init__(self, tally: Tally, candidate_answer: str, pool: EquivalencePool) -> None:
        self.tally = tally
        self._pool = pool
        key = answer_key(candidate_answer) if candidate_answer.strip() else None
        self._keys: set[Hashable] = {key} if key is not None else set()
        self._all_numeric = key is None or is_numeric_key(key)
        self._timed_out: set[Hashable] = set()
        self.undecidable: list[dict[str, Any]] = []  # {"sample": index, "answer": text}

    async def add(self, answer: str | None) -> bool:
        """Count one sample's answer; whether it agrees with the candidate's."""
        if answer is None or not answer.strip():
            return self.tally.add(answer)
        key = answer_key(answer)
        numeric = is_numeric_key(key)
        if key in self._keys or (numeric and self._all_numeric):
            agrees = self.tally.add(answer)  # a dict lookup, or numbers only: no math-verify (µs)
        else:
            result = None
            if key not in self._timed_out:
                result = await self._pool.add(self.tally, answer, comparisons=len(self._keys))
            if result is None:
                self._timed_out.add(key)
                self.undecidable.append({"sample": len(self.tally.votes), "answer": answer})
                self.tally.add(None)  # counts towards K, for no class
                return False
            agrees = result.agreeing > self.tally.agreeing
            self.tally = result
        self._keys.add(key)
        self._all_numeric = self._all_numeric and numeric
        return agrees
