"""Answer equivalence off the event loop: math-verify/sympy in worker processes, with a hard timeout.

Almost every vote sample is a plain number, and `agen.gen.answers` decides those with a dict
lookup in microseconds: that stays inline. An answer that needs math-verify (radicals, intervals,
expressions) can cost milliseconds, or seconds (`2^{2^{2^{2^{10}}}}` vs `3` takes ~10 s, every
lane and the sink waiting behind it), so `VoteFeed` sends exactly those samples, with the vote's
`Tally`, to a small pool of worker processes (`EquivalencePool`, one per core, at least two,
started only when first needed) and awaits the tally back.

A sample that is not decided within `timeout_s` per comparison is **undecidable**: the worker is
killed (math-verify's own alarm-based timeouts are longer, and a stuck sympy call cannot be
interrupted any other way) and a replacement warms up in the background. The limit is the
worker's CPU time (from /proc; wall time where there is none): the workers run at nice 10, so on
a loaded machine an ordinary comparison can wait seconds for a core, and killing it for that
made every hard sample undecidable and the pool churn through replacements (a MATH-style
quick start crawled for 18+ minutes at load 8). A worker starved of CPU is waited for, up to
`WALL_FACTOR` times the limit in wall time (more made a benchmark full of pathological answers
crawl instead: each one held a starved worker for minutes). The sample counts like
a sample without an answer — towards K, for no class, so neither for nor against the candidate —
and is listed on the record (`vote.undecidable`). Results are cached per (representative, answer) inside each worker (the
`agen.gen.answers` caches); an answer that timed out once is undecidable for the rest of the run
without being tried again (what is slow is parsing and evaluating *that* answer — the tower is
evaluated whatever it is compared with — so the next vote would only wait as long again).

Workers are fresh interpreters (`equivalence_worker.py`, pickled frames over pipes), not forks:
nothing of the parent comes along, and no `__main__` guard is needed anywhere. `agen.gen.answers`
arms `signal.alarm`, which works only in a main thread: a worker process's main thread is one, a
thread pool's threads are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections import Counter, OrderedDict
from collections.abc import Hashable
from typing import Any

import structlog

from agen.gen.answers import answer_key
from agen.gen.vote import KeyedFeed, Tally

__all__ = ["COMPARE_TIMEOUT_S", "EquivalencePool", "VoteFeed", "default_workers"]

log = structlog.get_logger("agen.filters.equivalence")

COMPARE_TIMEOUT_S = 2.0  # CPU seconds per comparison; the common math-verify comparison takes 1-50 ms
WALL_FACTOR = 3  # a comparison starved of CPU is given up after this many times its limit in wall
#   time: a loaded machine gets slack, and a pathological answer still costs a bounded wait
_TIMED_OUT_KEEP = 4096  # answers remembered as undecidable


def default_workers() -> int:
    """One worker per core, at least two (one stuck comparison never stops the others)."""
    return max(2, min(8, os.cpu_count() or 1))


_LEN = struct.Struct(">I")
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process (Linux /proc); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after "(comm)", which may hold spaces
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime: fields 14 and 15 of stat


class _Worker:
    """One `agen.filters.equivalence_worker` process and its framed pipes."""

    __slots__ = ("proc",)

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agen.filters.equivalence_worker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        worker = cls(proc)
        await worker._reply()  # "ready": imported, so a time limit measures comparing only
        return worker

    async def ask(self, job: tuple[Tally, str]) -> tuple[bool, Any]:
        body = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(_LEN.pack(len(body)) + body)  # type: ignore[union-attr]
        await self.proc.stdin.drain()  # type: ignore[union-attr]
        return await self._reply()

    async def _reply(self) -> tuple[bool, Any]:
        head = await self.proc.stdout.readexactly(_LEN.size)  # type: ignore[union-attr]
        return pickle.loads(await self.proc.stdout.readexactly(_LEN.unpack(head)[0]))  # type: ignore[no-any-return,union-attr]

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


class EquivalencePool:
    """Worker processes that count one hard sample into a tally each, never blocking the loop."""

    def __init__(self, workers: int | None = None, timeout_s: float = COMPARE_TIMEOUT_S) -> None:
        self.size = workers or default_workers()
        self.timeout_s = timeout_s
        self.stats: Counter[str] = Counter()
        self._idle: list[_Worker] = []
        self._spare: asyncio.Task[_Worker] | None = None  # a replacement warming up
        self._slots: asyncio.Semaphore | None = None
        self._timed_out: OrderedDict[Hashable, None] = OrderedDict()  # answer keys, most recent last

    def timed_out(self, key: Hashable) -> bool:
        """Whether this answer already timed out: undecidable without asking a worker."""
        if key in self._timed_out:
            self._timed_out.move_to_end(key)
            return True
        return False

    def _remember_timeout(self, key: Hashable) -> None:
        self._timed_out[key] = None
        if len(self._timed_out) > _TIMED_OUT_KEEP:
            self._timed_out.popitem(last=False)

    async def add(self, tally: Tally, answer: str, comparisons: int = 1) -> Tally | None:
        """`tally` with `answer` counted, computed in a worker; None if undecidable within
        `comparisons` × `timeout_s` (the worker is then replaced)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            if self.timed_out(answer_key(answer)):  # timed out while this one waited for a worker
                return None
            worker = await self._get()
            self.stats["offloaded"] += 1
            try:
                ok, value = await self._answer(worker, (tally, answer), self.timeout_s * max(1, comparisons))
            except TimeoutError:
                self.stats["timeouts"] += 1
                self._remember_timeout(answer_key(answer))
                await self._replace(worker)
                return None
            except (EOFError, OSError, asyncio.IncompleteReadError) as exc:  # died (OOM killer, ...)
                self.stats["errors"] += 1
                log.warning("equivalence_worker_died", error=type(exc).__name__)
                await self._replace(worker)
                return None
            self._idle.append(worker)
        if not ok:
            self.stats["errors"] += 1
            log.warning("equivalence_failed", answer=answer[:80], error=value)
            return None
        return value  # type: ignore[no-any-return]

    @staticmethod
    async def _answer(worker: _Worker, job: tuple[Tally, str], limit_s: float) -> tuple[bool, Any]:
        """The worker's reply, or TimeoutError once it has spent `limit_s` of CPU on the job (or,
        starved, `WALL_FACTOR` × `limit_s` of wall time)."""
        loop = asyncio.get_running_loop()
        pid = worker.proc.pid
        start_cpu = cpu_seconds(pid)
        give_up_at = loop.time() + limit_s * WALL_FACTOR
        reply = asyncio.ensure_future(worker.ask(job))
        try:
            wait = limit_s
            while True:
                done, _ = await asyncio.wait({reply}, timeout=wait)
                if done:
                    return reply.result()
                now_cpu = cpu_seconds(pid)
                if start_cpu is None or now_cpu is None or loop.time() >= give_up_at:
                    raise TimeoutError
                left = limit_s - (now_cpu - start_cpu)
                if left <= 0:
                    raise TimeoutError
                wait = min(max(left, 0.05), give_up_at - loop.time())
        finally:
            if not reply.done():
                reply.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reply

    async def _get(self) -> _Worker:
        if self._idle:
            return self._idle.pop()
        if self._spare is not None:
            spare, self._spare = self._spare, None
            return await spare
        self.stats["started"] += 1
        return await _Worker.start()

    async def _replace(self, worker: _Worker) -> None:
        """Kill a stuck worker and warm up a replacement in the background (an interpreter start
        and the math-verify import take a second or two)."""
        await worker.stop()
        if self._spare is None:
            self.stats["started"] += 1
            self._spare = asyncio.get_running_loop().create_task(_Worker.start())

    async def aclose(self) -> None:
        """Stop every worker."""
        workers, self._idle = self._idle, []
        if self._spare is not None:
            with contextlib.suppress(Exception):
                workers.append(await self._spare)
            self._spare = None
        for w in workers:
            with contextlib.suppress(Exception):
                w.proc.stdin.close()  # type: ignore[union-attr]
            await w.stop()


class VoteFeed:
    """Feeds one vote's samples into its `Tally`: inline when the answers' keys decide (a number
    among numbers, or an answer already seen: `gen.vote.KeyedFeed`, compiled), in the pool otherwise."""

    __slots__ = ("_pool", "inline", "keyed", "undecidable")

    def __init__(self, tally: Tally, candidate_answer: str, pool: EquivalencePool) -> None:
        self.keyed = KeyedFeed(tally, candidate_answer)
        # Count a sample its key decides and say whether it agrees; None, counting nothing, for one
        # that needs the pool. The compiled method itself: nearly every sample is decided there.
        self.inline = self.keyed.inline
        self._pool = pool
        self.undecidable: list[dict[str, Any]] = []  # {"sample": index, "answer": text}

    @property
    def tally(self) -> Tally:
        return self.keyed.tally

    async def add(self, answer: str | None) -> bool:
        """Count one sample's answer; whether it agrees with the candidate's."""
        keyed = self.keyed
        agrees = keyed.inline(answer)
        if agrees is not None:
            return agrees
        assert answer is not None  # `inline` counts every missing answer
        key = answer_key(answer)
        result = None
        if not self._pool.timed_out(key):
            result = await self._pool.add(keyed.tally, answer, comparisons=len(keyed.keys))
        if result is None:
            self.undecidable.append({"sample": len(keyed.tally.votes), "answer": answer})
            keyed.tally.add(None)  # counts towards K, for no class
            return False
        return keyed.absorb(result, key)
