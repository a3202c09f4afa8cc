"""The one writer task: records and ledger lines, group-committed to the run directory.

An example counts (in progress, totals, the amplify pool) only after `on_commit` has seen it,
and `on_commit` runs only after the lines are fsynced. Ledger lines are written before the
records of the same batch, so a committed record's calls are always on disk too. A request's
`begin` line is durable before the request is sent (`log_durable`, group-committed like the
rest), so a crash can never leave a billed request the ledger does not know about.

All file I/O of a group commit (ledger, accepted, rejected: write, flush, fdatasync each) runs as
one call in the sink's own writer thread: one thread hop per commit, however many requests'
`begin` lines and records it carries; while it runs, the next commit's lines accumulate. A
request's `begin` waits at most `begin_window_s` (2 ms, against model latencies of 100s of ms) for
others to share its fdatasync; records, which no request waits for, linger up to `linger_s` (50 ms)
so that the `begin` flushes sync the ledger alone.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import orjson

from agen.config import OutputConfig
from agen.errors import StorageError
from agen.run import faults
from agen.run.committed import CommittedIds
from agen.run.rundir import RunDir
from agen.run.shards import ShardWriter

_LEDGER_SHARD_RECORDS = 1_000_000
_STOP = object()
# Requests released per loop turn once their `begin` lines are durable: a group commit can free
# hundreds at once, and sending them all in one turn would hold every other callback back.
_RELEASE_CHUNK = 32


class DuplicateIdError(StorageError):
    """A record id already committed was offered again: a resume bug, never written twice."""


class Sink:
    """Bounded queue in, fsynced shards out; refuses ids already committed."""

    def __init__(self, run_dir: RunDir, out: OutputConfig, committed_ids: CommittedIds,
                 on_commit: Callable[[list[dict[str, Any]]], None], *,
                 before_write: Callable[[list[dict[str, Any]]], Awaitable[set[str]]] | None = None,
                 max_queue: int = 1024, max_batch: int = 512, linger_s: float = 0.05,
                 begin_window_s: float = 0.002, begin_group: int = 32) -> None:
        self._writers = {
            "accepted": ShardWriter(run_dir.stream("accepted"), out.shard_max_records, out.shard_max_bytes),
            "rejected": ShardWriter(run_dir.stream("rejected"), out.shard_max_records, out.shard_max_bytes),
            "ledger": ShardWriter(run_dir.stream("ledger"), _LEDGER_SHARD_RECORDS, 1 << 40),
        }
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_queue)
        self._ledger: list[bytes] = []
        self._durable: list[asyncio.Future[None]] = []  # log_durable callers waiting for the next fsync
        self._wake: asyncio.Future[bool] | None = None  # the writer's sleep, ended early by `_poke`
        self._committed = committed_ids
        self._pending: set[str] = set()
        self._on_commit = on_commit
        self._before_write = before_write  # a coordinated run: ids another worker now owns are not written
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._begin_window_s = begin_window_s
        self._begin_group = begin_group
        self._begin_due = 0.0  # when the oldest waiting `begin` line must be committed
        self.error: StorageError | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agen-sink")
        self.commits = 0

    def open(self) -> None:
        for w in self._writers.values():
            w.open()

    async def put(self, record: dict[str, Any]) -> None:
        """Queue a finished record; waits when the writer is behind (back-pressure)."""
        rid = record["id"]
        if rid in self._committed or rid in self._pending:
            raise DuplicateIdError(f"record id {rid} is already committed; refusing to write it twice")
        if self.error is not None:
            raise self.error
        self._pending.add(rid)
        await self._queue.put(record)
        self._poke()

    def log(self, row: dict[str, Any]) -> None:
        """Buffer one ledger line; it is written with the next commit."""
        self._ledger.append(orjson.dumps(row) + b"\n")

    async def log_durable(self, row: dict[str, Any]) -> None:
        """Buffer one ledger line and return once it is fsynced (with whatever else is pending).

        After a storage error this never returns: the pipeline is being cancelled, and no request
        may be sent whose `begin` is not on disk.
        """
        self._ledger.append(orjson.dumps(row) + b"\n")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        first = not self._durable
        if first:
            self._begin_due = loop.time() + self._begin_window_s
        self._durable.append(fut)
        if first or len(self._durable) == self._begin_group:  # not woken by each line of a group
            self._poke()
        await fut

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(True)

    async def _sleep_until(self, deadline: float) -> bool:
        """Sleep until `deadline` or a `_poke`, whichever is first; True if poked. A future and a
        timer: `asyncio.wait_for(queue.get(), t)` made a task per wake-up."""
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_at(deadline, _timed_out, wake)
        try:
            return await wake
        finally:
            timer.cancel()
            self._wake = None

    async def run(self) -> None:
        """Write until `aclose`; a storage error is kept in `self.error` and ends the loop.

        `begin` lines are committed as a group, alone (one fdatasync, of the ledger), once the
        oldest has waited `begin_window_s` or `begin_group` are waiting; records wait for the oldest
        of them to be `linger_s` old (or a full batch, or the stop) and then go with the ledger in
        one commit. An fdatasync costs ~0.1-0.3 ms of kernel CPU here whatever it carries: writing
        records with every `begin` flush, or flushing each `begin` as soon as the last commit was
        done, made 150-210 of them per 1,000 requests (benchmarks/engine_overhead.py).
        """
        loop = asyncio.get_running_loop()
        batch: list[dict[str, Any]] = []
        due = 0.0  # when the oldest record in `batch` must be written
        stopping = False
        try:
            while not stopping:
                now = loop.time()
                if self._durable:
                    deadline = now if len(self._durable) >= self._begin_group else self._begin_due
                else:
                    deadline = now + self._linger_s * 4
                if batch:
                    deadline = min(deadline, due)
                idle = False  # slept the whole way: nothing arrived
                if self._queue.empty() and deadline > now:
                    idle = not await self._sleep_until(deadline)
                while len(batch) < self._max_batch and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is _STOP:
                        stopping = True
                        continue
                    if not batch:
                        due = loop.time() + self._linger_s
                    batch.append(item)
                now = loop.time()
                if stopping or len(batch) >= self._max_batch or (batch and now >= due):
                    await self._commit(batch)
                    batch = []
                elif (self._durable and (now >= self._begin_due or len(self._durable) >= self._begin_group)) \
                        or (idle and self._ledger and not self._durable):  # a due group; idle ledger lines
                    await self._commit([])
        except StorageError as exc:
            self.error = exc
        finally:
            for w in self._writers.values():
                try:
                    await loop.run_in_executor(self._io, w.close)
                except StorageError as exc:
                    self.error = self.error or exc
            self._io.shutdown(wait=False)

    def _write_all(self, ledger: list[bytes], acc: list[bytes], rej: list[bytes]) -> None:
        """The whole commit's file I/O, in the writer thread: ledger first, then the records."""
        self._writers["ledger"].write_lines(ledger)
        faults.crashpoint("sink.after_ledger")
        self._writers["accepted"].write_lines(acc)
        faults.crashpoint("sink.after_accepted")
        self._writers["rejected"].write_lines(rej)
        faults.crashpoint("sink.before_on_commit")

    async def _commit(self, batch: list[dict[str, Any]]) -> None:
        ledger, self._ledger = self._ledger, []
        durable, self._durable = self._durable, []
        if batch and self._before_write is not None:
            refused = await self._before_write(batch)
            if refused:
                for r in batch:
                    if r["id"] in refused:
                        self._pending.discard(r["id"])
                batch = [r for r in batch if r["id"] not in refused]
        acc = [orjson.dumps(r) + b"\n" for r in batch if r["status"] == "accepted"]
        rej = [orjson.dumps(r) + b"\n" for r in batch if r["status"] != "accepted"]
        if ledger or acc or rej:
            await asyncio.get_running_loop().run_in_executor(self._io, self._write_all, ledger, acc, rej)
            self.commits += 1
        for i, fut in enumerate(durable):
            if not fut.done():
                fut.set_result(None)
            if i % _RELEASE_CHUNK == _RELEASE_CHUNK - 1:
                await asyncio.sleep(0)  # let these go out before releasing more: no long loop turn
        for r in batch:
            self._pending.discard(r["id"])
            self._committed.add(r["id"])
        if batch:
            self._on_commit(batch)
            faults.crashpoint("sink.after_on_commit")

    async def aclose(self) -> None:
        """Flush everything queued, then stop; safe to call after a storage error."""
        if self.error is None:
            await self._queue.put(_STOP)
            self._poke()


def _timed_out(wake: asyncio.Future[bool]) -> None:
    if not wake.done():
        wake.set_result(False)
