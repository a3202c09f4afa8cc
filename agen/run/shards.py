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
from typing import Iterator

import aiofiles
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
    """Every record in every shard, in order; a bad line before the last one raises."""
    for path in shard_paths(folder):
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        last = len(lines) - 1
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                if i == last:  # torn tail: repaired when the folder is opened for writing
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


class ShardWriter:
    """Writes batches of lines to a rolling shard set; `write_batch` returns after fsync."""

    def __init__(self, folder: Path, max_records: int, max_bytes: int) -> None:
        self.folder = folder
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._state = _Open(0, 0, 0)
        self._file: aiofiles.threadpool.binary.AsyncBufferedIOBase | None = None
        self._file_index = -1

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

    async def write_batch(self, lines: list[bytes]) -> None:
        """Append lines (each ending in \\n), rolling shards as needed, then fsync."""
        if not lines:
            return
        runs = plan_rolls(self._state, [len(x) for x in lines], self.max_records, self.max_bytes)
        path = self.folder
        try:
            for idx, a, b in runs:
                if idx != self._file_index:
                    await self._close_file(sync=True)
                    path = self.folder / shard_name(idx)
                    is_new = not path.exists()
                    self._file = await aiofiles.open(path, "ab")
                    if is_new:  # the new name must survive a crash too
                        faults.crashpoint("shard.after_create")
                        await asyncio.to_thread(fsync_dir, self.folder)
                    self._file_index = idx
                    if idx != self._state.index:
                        self._state = _Open(idx, 0, 0)
                chunk = b"".join(lines[a:b])
                path = self.folder / shard_name(idx)
                if faults.ENOSPC_AFTER is not None and (room := faults.disk_room(len(chunk))) < len(chunk):
                    await self._file.write(chunk[:room])  # type: ignore[union-attr]
                    await self._file.flush()  # type: ignore[union-attr]
                    raise faults.enospc(str(path))
                await self._file.write(chunk)  # type: ignore[union-attr]
                faults.crashpoint("shard.after_write")
                self._state.records += b - a
                self._state.size += len(chunk)
            await self._sync()
        except OSError as exc:
            raise StorageError(f"writing {path} failed: {exc.strerror or exc}", str(path)) from None

    async def _sync(self) -> None:
        if self._file is not None:
            await self._file.flush()
            faults.crashpoint("shard.after_flush")
            await asyncio.to_thread(os.fsync, self._file.fileno())
            faults.crashpoint("shard.after_fsync")

    async def _close_file(self, sync: bool) -> None:
        if self._file is not None:
            if sync:
                await self._sync()
            await self._file.close()
            self._file = None
            self._file_index = -1

    async def aclose(self) -> None:
        try:
            await self._close_file(sync=True)
        except OSError as exc:
            raise StorageError(f"closing shards in {self.folder} failed: {exc.strerror}", str(self.folder)) from None
