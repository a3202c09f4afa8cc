"""The one writer task: records and ledger lines, group-committed to the run directory.

An example counts (in progress, totals, the amplify pool) only after `on_commit` has seen it,
and `on_commit` runs only after the lines are fsynced. Ledger lines are written before the
records of the same batch, so a committed record's calls are always on disk too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import orjson

from agen.config import OutputConfig
from agen.errors import StorageError
from agen.run.rundir import RunDir
from agen.run.shards import ShardWriter

_LEDGER_SHARD_RECORDS = 1_000_000
_STOP = object()


class DuplicateIdError(StorageError):
    """A record id already committed was offered again: a resume bug, never written twice."""


class Sink:
    """Bounded queue in, fsynced shards out; refuses ids already committed."""

    def __init__(self, run_dir: RunDir, out: OutputConfig, committed_ids: set[str],
                 on_commit: Callable[[list[dict[str, Any]]], None], *,
                 max_queue: int = 1024, max_batch: int = 512, linger_s: float = 0.05) -> None:
        self._writers = {
            "accepted": ShardWriter(run_dir.stream("accepted"), out.shard_max_records, out.shard_max_bytes),
            "rejected": ShardWriter(run_dir.stream("rejected"), out.shard_max_records, out.shard_max_bytes),
            "ledger": ShardWriter(run_dir.stream("ledger"), _LEDGER_SHARD_RECORDS, 1 << 40),
        }
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_queue)
        self._ledger: list[bytes] = []
        self._committed = committed_ids
        self._pending: set[str] = set()
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._linger_s = linger_s
        self.error: StorageError | None = None
        self.commits = 0
        self.last_commit = time.monotonic()

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

    def log(self, row: dict[str, Any]) -> None:
        """Buffer one ledger line; it is written with the next commit."""
        self._ledger.append(orjson.dumps(row) + b"\n")

    async def run(self) -> None:
        """Write until `aclose`; a storage error is kept in `self.error` and ends the loop."""
        stopping = False
        try:
            while not stopping:
                batch: list[dict[str, Any]] = []
                try:
                    item = await asyncio.wait_for(self._queue.get(), self._linger_s * 4)
                    if item is _STOP:
                        stopping = True
                    else:
                        batch.append(item)
                except TimeoutError:
                    if not self._ledger:
                        continue
                while len(batch) < self._max_batch and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is _STOP:
                        stopping = True
                        continue
                    batch.append(item)
                await self._commit(batch)
        except StorageError as exc:
            self.error = exc
        finally:
            for w in self._writers.values():
                try:
                    await w.aclose()
                except StorageError as exc:
                    self.error = self.error or exc

    async def _commit(self, batch: list[dict[str, Any]]) -> None:
        ledger, self._ledger = self._ledger, []
        await self._writers["ledger"].write_batch(ledger)
        acc = [orjson.dumps(r) + b"\n" for r in batch if r["status"] == "accepted"]
        rej = [orjson.dumps(r) + b"\n" for r in batch if r["status"] != "accepted"]
        await self._writers["accepted"].write_batch(acc)
        await self._writers["rejected"].write_batch(rej)
        for r in batch:
            self._pending.discard(r["id"])
            self._committed.add(r["id"])
        self.commits += 1
        self.last_commit = time.monotonic()
        if batch:
            self._on_commit(batch)

    async def aclose(self) -> None:
        """Flush everything queued, then stop; safe to call after a storage error."""
        if self.error is None:
            await self._queue.put(_STOP)
