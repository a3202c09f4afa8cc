"""Append-only JSONL shard files in one folder, rolled by record count or size, never splitting a line.

`part-00000.jsonl, part-00001.jsonl, …` load with `datasets.load_dataset("json", data_files=…)`.
Reopening a folder repairs a torn last line (a crash mid-write) before anything is appended;
a bad line anywhere else is corruption and raises, never a silent skip.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import orjson

from agen.errors import StorageError
from agen.run import faults


class CorruptShardError(StorageError):
    """A line in the middle of a shard does not parse: a human must look."""


def fsync_dir(folder: Path) -> None:
    """Make a file's creation or rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shard_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


def shard_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.jsonl"))


def repair_torn_tail(path: Path) -> int:
    """Cut an unfinished last line (no trailing newline); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Walk back to the last newline; shards hold short lines, so a 64 KiB window is plenty.
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = pos - step + nl + 1
                break
            pos -= step
        else:
            keep = 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def read_records(folder: Path) -> Iterator[dict]:
    """Every record in every shard, in order, streamed line by line (a shard is never held whole);
    a bad line before the last one raises."""
    for path in shard_paths(folder):
        with open(path, "rb") as f:
            for i, line in enumerate(f):
                if line == b"\n":
                    continue
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    if not line.endswith(b"\n"):  # torn tail: repaired when the folder is opened for writing
                        continue
                    raise CorruptShardError(f"{path}:{i + 1}: line does not parse; the file is corrupt "
                                            f"in the middle, not just torn at the end", str(path)) from None


@dataclass
class _Open:
    index: int
    records: int
    size: int


def plan_rolls(start: _Open, line_sizes: list[int], max_records: int, max_bytes: int) -> list[tuple[int, int, int]]:
    """Split consecutive lines into (shard_index, first_line, end_line) runs; pure, for testing.

    A shard takes a line while it holds fewer than `max_records` lines and the line fits in
    `max_bytes`; an empty shard always takes one line, so an oversize line is never lost.
    """
    runs: list[tuple[int, int, int]] = []
    idx, records, size = start.index, start.records, start.size
    first = 0
    for i, n in enumerate(line_sizes):
        if records > 0 and (records >= max_records or size + n > max_bytes):
            if i > first:
                runs.append((idx, first, i))
            idx, records, size, first = idx + 1, 0, 0, i
        records += 1
        size += n
    if len(line_sizes) > first:
        runs.append((idx, first, len(line_sizes)))
    return runs


def _sync_file(fd: int) -> None:
    """Data and the size an append needs, without other metadata (fdatasync where there is one)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


class ShardWriter:
    """Writes batches of lines to a rolling shard set; `write_lines` returns after the data is synced.

    Plain blocking file I/O, meant to run in the sink's one writer thread (`Sink`): one thread hop
    per group commit, not one per write, flush and fsync.
    """

    def __init__(self, folder: Path, max_records: int, max_bytes: int) -> None:
        self.folder = folder
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._state = _Open(0, 0, 0)
        self._file: BinaryIO | None = None
        self._file_index = -1
        self.syncs = 0

    def open(self) -> None:
        """Create the folder, repair the last shard's torn tail, and find where to append."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            paths = shard_paths(self.folder)
            if paths:
                last = paths[-1]
                repair_torn_tail(last)
                with open(last, "rb") as f:
                    data = f.read()
                self._state = _Open(int(last.stem.split("-")[1]), data.count(b"\n"), len(data))
        except OSError as exc:
            raise StorageError(f"cannot open shards in {self.folder}: {exc.strerror}", str(self.folder)) from None

    def write_lines(self, lines: list[bytes]) -> None:
        """Append lines (each ending in \\n), rolling shards as needed, then sync (blocking)."""
        if not lines:
            return
        runs = plan_rolls(self._state, [len(x) for x in lines], self.max_records, self.max_bytes)
        path = self.folder
        try:
            for idx, a, b in runs:
                if idx != self._file_index:
                    self._close_file(sync=True)
                    path = self.folder / shard_name(idx)
                    is_new = not path.exists()
                    self._file = open(path, "ab")  # noqa: SIM115 - kept open across batches
                    if is_new:  # the new name must survive a crash too
                        faults.crashpoint("shard.after_create")
                        fsync_dir(self.folder)
                    self._file_index = idx
                    if idx != self._state.index:
                        self._state = _Open(idx, 0, 0)
                chunk = b"".join(lines[a:b])
                path = self.folder / shard_name(idx)
                if faults.ENOSPC_AFTER is not None and (room := faults.disk_room(len(chunk))) < len(chunk):
                    self._file.write(chunk[:room])  # type: ignore[union-attr]
                    self._file.flush()  # type: ignore[union-attr]
                    raise faults.enospc(str(path))
                self._file.write(chunk)  # type: ignore[union-attr]
                faults.crashpoint("shard.after_write")
                self._state.records += b - a
                self._state.size += len(chunk)
            self._sync()
        except OSError as exc:
            raise StorageError(f"writing {path} failed: {exc.strerror or exc}", str(path)) from None

    async def write_batch(self, lines: list[bytes]) -> None:
        """`write_lines` in a worker thread (for callers without a writer thread of their own)."""
        await asyncio.to_thread(self.write_lines, lines)

    def _sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            faults.crashpoint("shard.after_flush")
            _sync_file(self._file.fileno())
            self.syncs += 1
            faults.crashpoint("shard.after_fsync")

    def _close_file(self, sync: bool) -> None:
        if self._file is not None:
            if sync:
                self._sync()
            self._file.close()
            self._file = None
            self._file_index = -1

    def close(self) -> None:
        try:
            self._close_file(sync=True)
        except OSError as exc:
            raise StorageError(f"closing shards in {self.folder} failed: {exc.strerror}", str(self.folder)) from None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
