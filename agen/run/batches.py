"""The run directory's durable record of provider batches (`batches.jsonl`): never submit one twice,
never lose a finished one.

Each line is one event of one batch, named by a local `key` (made before anything is sent):

    {"ev": "intent", "key", "model", "provider", "session", "ts", "lines": [[custom_id, sub_id, n, seed, stage], ...]}
    {"ev": "file", "key", "file_id"}            OpenAI: the uploaded input file
    {"ev": "submitted", "key", "batch_id", "adopted"?}  the remote id, as soon as it is known
    {"ev": "state", "key", "status"}            status changes seen while polling
    {"ev": "results", "key", "rows": {custom_id: row}}  every line's outcome, once the batch ended
    {"ev": "void", "key", "why"}                the batch was never created: its requests are free again

Every line is fsynced before the step it announces is taken (intent before upload/create), so a
`kill -9` anywhere leaves one of: an intent with no id (resume looks the batch up remotely: by
`metadata` on OpenAI, by creation time, size and finally custom_ids on Anthropic), a submitted batch
(resume polls it), or results (resume answers the requests from them, nothing is sent).
A torn last line is cut on open, as in the shards.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agen.errors import StorageError
from agen.run import faults
from agen.run.shards import repair_torn_tail

FILE_NAME = "batches.jsonl"


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch: the id the provider sees and the request it stands for."""

    custom_id: str
    sub_id: str  # the request's sub-id (`{task}`, `{task}/v{offset}`, ...), as the ledger and journal name it
    n: int
    seed: int | None
    stage: str

    def row(self) -> list[Any]:
        return [self.custom_id, self.sub_id, self.n, self.seed, self.stage]

    @property
    def match(self) -> tuple[str, int, int | None]:
        """What a request must have to be answered by this line."""
        return self.sub_id, self.n, self.seed


@dataclass(slots=True)
class BatchEntry:
    """Everything the journal knows about one batch."""

    key: str
    model: str
    provider: str
    session: int
    ts: float
    lines: list[BatchLine]
    file_id: str | None = None
    batch_id: str | None = None
    adopted: bool = False  # found remotely after a crash (Anthropic: by time and size), not recorded at submit
    status: str | None = None
    results: dict[str, dict[str, Any]] | None = None
    void: str | None = None

    @property
    def open(self) -> bool:
        """Submitted (or maybe submitted) and its results not yet kept."""
        return self.results is None and self.void is None


def new_key() -> str:
    return "b" + os.urandom(8).hex()


class BatchStore:
    """Appends fsynced lines to `batches.jsonl`; knows every batch earlier sessions recorded."""

    def __init__(self, root: Path, session: int, billed: frozenset[str] = frozenset(),
                 wanted: Callable[[str], bool] = lambda sub_id: True) -> None:
        self.path = root / FILE_NAME
        self.session = session
        self._wanted = wanted  # False for a sub-id whose task committed: its kept result is not loaded
        # Batches whose lines are already billed in the ledger (its `batch_results` lines): a session
        # that died after that commit but before the results line downloads them again, and must not
        # count their cost twice.
        self.billed = set(billed)
        self.entries: dict[str, BatchEntry] = {}
        # Set by the pipeline: makes a ledger line (and every call line before it) durable. Batch
        # results' call lines are made durable before the results line, so a result the store
        # holds always has its cost in the ledger.
        self.ledger_barrier: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agen-batches")
        self._lock = asyncio.Lock()
        self._fd: int | None = None
        if self.path.exists():
            repair_torn_tail(self.path)
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    self._apply(orjson.loads(raw))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise StorageError(f"{self.path}: unreadable line ({exc}); the batch journal is damaged") from None

    def _apply(self, row: dict[str, Any]) -> None:
        ev, key = row["ev"], row["key"]
        if ev == "intent":
            self.entries[key] = BatchEntry(key, row["model"], row["provider"], row["session"], row["ts"],
                                           [BatchLine(c, s, n, seed, st) for c, s, n, seed, st in row["lines"]])
            return
        e = self.entries[key]
        if ev == "file":
            e.file_id = row["file_id"]
        elif ev == "submitted":
            e.batch_id, e.adopted = row["batch_id"], bool(row.get("adopted"))
        elif ev == "state":
            e.status = row["status"]
        elif ev == "results":
            sub = {ln.custom_id: ln.sub_id for ln in e.lines}
            e.results = {cid: r for cid, r in row["rows"].items() if self._wanted(sub.get(cid, cid))}
        elif ev == "void":
            e.void = row["why"]

    def open_entries(self, model: str) -> list[BatchEntry]:
        return [e for e in self.entries.values() if e.model == model and e.open]

    def kept_results(self, model: str) -> list[BatchEntry]:
        return [e for e in self.entries.values() if e.model == model and e.results is not None]

    def known_batch_ids(self) -> set[str]:
        return {e.batch_id for e in self.entries.values() if e.batch_id}

    # ---- writes (each fsynced before it returns)
    async def intent(self, model: str, provider: str, lines: list[BatchLine]) -> BatchEntry:
        e = BatchEntry(new_key(), model, provider, self.session, time.time(), lines)
        await self._write({"ev": "intent", "key": e.key, "model": model, "provider": provider,
                           "session": self.session, "ts": e.ts, "lines": [ln.row() for ln in lines]})
        self.entries[e.key] = e
        return e

    async def record(self, e: BatchEntry, ev: str, **fields: Any) -> None:
        row = {"ev": ev, "key": e.key, **fields}
        await self._write(row)
        self._apply(row)

    async def results(self, e: BatchEntry, rows: dict[str, dict[str, Any]]) -> None:
        """Keep every line's outcome: first their call lines durable in the ledger, then this."""
        if self.ledger_barrier is not None and e.key not in self.billed:
            self.billed.add(e.key)
            await self.ledger_barrier({"ev": "batch_results", "session": self.session, "key": e.key,
                                       "batch_id": e.batch_id, "lines": len(rows)})
        faults.crashpoint("batch_before_results")
        await self.record(e, "results", rows=rows)
        e.results = {}  # on disk for a later session; this one settles its callers from `rows`

    async def _write(self, row: dict[str, Any]) -> None:
        data = orjson.dumps(row) + b"\n"
        async with self._lock:
            try:
                await asyncio.get_running_loop().run_in_executor(self._io, self._append, data)
            except OSError as exc:
                raise StorageError(f"{self.path}: cannot record a batch: {exc.strerror}") from None

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._io.shutdown(wait=True)
