"""The dedup index's storage: what grows with every kept question lives in files, not in RAM.

At a million kept questions the index holds 33M (key, item) pairs (one exact hash and 32 LSH
bands per question) and ~40M token codes: ~450 bytes a question, more than the whole engine is
allowed to grow. So each store keeps a bounded recent part in RAM and spills the rest to files in
a cache folder, read back with `os.pread` (the page cache, not this process's RSS):

- `MultiMap` (key → items): a buffer of arrays (nothing the cycle collector traverses) and a sorted numpy run in RAM, both bounded; a full
  run becomes an immutable sorted file (`_Run`, found through a sparse fence of every 64th key),
  and equal-sized files are merged in the background, streaming, so there are ~log2(N) of them;
- `ItemLog` (item → token codes + id): records appended to one file; in RAM 12 bytes an item
  (offset, length), and a record is read only for an LSH candidate the length bound lets through.

The files are a cache, never a source of truth: each `Deduper` starts with an empty folder and is
rebuilt from the shards on resume. Merges and spills run in one worker thread (numpy releases the
GIL); the caller's thread only swaps finished results in, so no add waits for work that grows with
the index. In the compiled build the buffer and every lookup (`gen/_keybuf.c`) and an item's
verification (`gen/_lcs.c`) are C; the Python here is the same computation for the pure build.
"""

from __future__ import annotations

import os
import sys
from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import compress, count, repeat
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rapidfuzz.distance import LCSseq

from agen.errors import StorageError
from agen.gen.spill_dir import SpillDir

try:  # the C helpers built with the compiled engine (setup.py); absent in a pure-Python install
    from agen.gen._keybuf import KeyBuffer, files_gather, sorted_gather, sorted_latest
    from agen.gen._lcs import best_match as _c_best_match
except ImportError:
    KeyBuffer = files_gather = sorted_gather = sorted_latest = _c_best_match = None

__all__ = ["ItemLog", "MultiMap", "SpillDir"]

_BLOCK = 64  # records between fence keys: a lookup reads ~one block (512-768 bytes) per file
# Keys a file merge holds at once (pieces, their concatenation, the sort order, the sorted copy):
# at 2^18 the first merge of two 2^18-key files held all of them, a 12-18 MB spike in peak RSS
# (benchmarks/memory.py); at 2^15 `merge+` measures ~4 MB, for 8x the reads of a merge that runs
# in a thread.
MERGE_CHUNK = 1 << 15
_MERGER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agen-dedup-merge")


class _Run:
    """An immutable sorted file of (key, item) records; in RAM only every `_BLOCK`-th key."""

    __slots__ = ("_fd", "fence", "n", "path", "rec")

    def __init__(self, path: Path, rec: np.dtype, n: int, fence: np.ndarray) -> None:
        self.path, self.rec, self.n, self.fence = path, rec, n, fence
        self._fd = os.open(path, os.O_RDONLY)

    @classmethod
    def write(cls, path: Path, records: np.ndarray) -> _Run:
        with open(path, "wb") as f:
            records.tofile(f)  # no bytes copy of the whole run
        return cls(path, records.dtype, len(records), records["k"][::_BLOCK].copy())

    def read(self, lo: int, hi: int) -> np.ndarray:
        size = self.rec.itemsize
        return np.frombuffer(os.pread(self._fd, (hi - lo) * size, lo * size), dtype=self.rec)

    def locate(self, key: int, side: str) -> int:
        """Position of `key` as `np.searchsorted(all_keys, key, side)` would give it."""
        a = int(np.searchsorted(self.fence, key, side))  # type: ignore[call-overload]
        if a == 0:
            return 0
        lo = (a - 1) * _BLOCK
        block = self.read(lo, min(a * _BLOCK, self.n))
        return lo + int(np.searchsorted(block["k"], key, side))  # type: ignore[call-overload]

    def windows(self, keys: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Per key, record positions [start, end) that hold its last `limit` records if it has any
        (empty where the key is below the first one)."""
        a = np.searchsorted(self.fence, keys, "left")
        b = np.searchsorted(self.fence, keys, "right")
        end = np.minimum(b * _BLOCK, self.n)
        start = np.maximum(np.maximum(a - 1, 0) * _BLOCK, end - _BLOCK - limit)
        return np.where(b > 0, start, end), end

    def close(self, unlink: bool) -> None:
        os.close(self._fd)
        if unlink:
            self.path.unlink(missing_ok=True)


def _records(keys: np.ndarray, vals: np.ndarray) -> np.ndarray:
    rec = np.empty(len(keys), dtype=[("k", keys.dtype), ("v", np.int32)])
    rec["k"], rec["v"] = keys, vals
    return rec


def _merge_runs(runs: list[_Run], path: Path, chunk: int = MERGE_CHUNK) -> _Run:
    """Merge sorted files (oldest first) into one, a key range at a time so memory stays bounded;
    equal keys keep file order then record order (older first), as one sorted array would."""
    big = max(runs, key=lambda r: r.n)
    bounds = np.unique(big.fence[max(1, chunk // _BLOCK) :: max(1, chunk // _BLOCK)]).tolist()
    starts = [0] * len(runs)
    fences, written = [], 0
    with open(path, "wb") as f:
        for bound in [*bounds, None]:
            parts = []
            for i, r in enumerate(runs):
                end = r.n if bound is None else r.locate(bound, "left")
                parts.append(r.read(starts[i], end))
                starts[i] = end
            merged = np.concatenate(parts)
            merged = merged[np.argsort(merged["k"], kind="stable")]
            merged.tofile(f)
            fences.append(merged["k"][(-written) % _BLOCK :: _BLOCK].copy())
            written += len(merged)
    return _Run(path, runs[0].rec, written, np.concatenate(fences))


class KeyBuffers(Protocol):
    """A `MultiMap`'s not-yet-merged part: `_Buffer`, or `_keybuf.KeyBuffer` (the same in C)."""

    def __len__(self) -> int: ...
    def add(self, keys: list[int], value: int) -> None: ...
    def newest(self, key: int, limit: int) -> list[int]: ...
    def latest(self, key: int) -> int | None: ...
    def gather(self, keys: list[int], need: list[int], out: list[int]) -> None: ...
    def arrays(self) -> tuple[Any, Any]: ...
    def nbytes(self) -> int: ...


class _Buffer:
    """The not-yet-merged part of a `_MultiMap`: append-only arrays plus a dict of chain heads.

    Each value is one slot in `keys`/`vals`/`prev` (`prev`: the slot of the key's previous value,
    -1 for none), and `head` maps a key to its newest slot. Nothing here is a container the cycle
    collector must traverse (a dict of ints is untracked, arrays hold no objects), so a buffer of
    131k values adds nothing to a full collection's pause; a dict of one-element lists made 100k+
    tracked lists and full collections of 200-400 ms on the event loop. The compiled build uses
    `_keybuf.KeyBuffer` instead, the same in C (an add of 32 keys: ~13 us here, ~1 us there).
    """

    __slots__ = ("head", "keys", "prev", "vals")

    def __init__(self, width: int) -> None:
        self.head: dict[int, int] = {}
        self.keys = array("Q" if width == 8 else "I")
        assert self.keys.itemsize == width
        self.vals = array("i")
        self.prev = array("i")

    def __len__(self) -> int:
        return len(self.vals)

    def add(self, keys: list[int], value: int) -> None:
        """Store `value` under each of `keys`, in C-level passes (no Python loop over the keys). A
        key repeated within `keys` keeps one chain entry: its other slot holds the same value."""
        head, slot = self.head, len(self.vals)
        self.prev.extend(map(head.get, keys, repeat(-1)))
        head.update(zip(keys, count(slot)))
        self.keys.extend(keys)
        self.vals.extend(array("i", (value,)) * len(keys))

    def newest(self, key: int, limit: int) -> list[int]:
        """Up to `limit` values stored under `key`, newest first."""
        out: list[int] = []
        slot = self.head.get(key, -1)
        prev, vals = self.prev, self.vals
        while slot >= 0 and len(out) < limit:
            out.append(vals[slot])
            slot = prev[slot]
        return out

    def latest(self, key: int) -> int | None:
        slot = self.head.get(key)
        return None if slot is None else self.vals[slot]

    def gather(self, keys: list[int], need: list[int], out: list[int]) -> None:
        """For each key i still needing values, its newest `need[i]` appended to `out`."""
        # one C-level pass finds the few keys the buffer holds; only their chains are walked
        for i in compress(range(len(keys)), map(self.head.__contains__, keys)):
            if need[i] > 0:
                take = self.newest(keys[i], need[i])
                out += take
                need[i] -= len(take)

    def arrays(self) -> tuple[array, array]:  # type: ignore[type-arg]
        """Every stored key and value, in insertion order (buffers numpy reads without a copy)."""
        return self.keys, self.vals

    def nbytes(self) -> int:
        return sys.getsizeof(self.head) + sum(a.itemsize * len(a) for a in (self.keys, self.vals, self.prev))


def _new_buffer(width: int) -> KeyBuffers:
    return _Buffer(width) if KeyBuffer is None else KeyBuffer(width)


def _merged(keys: np.ndarray, vals: np.ndarray, buf: KeyBuffers,
            dtype: type[np.unsignedinteger]) -> tuple[np.ndarray, np.ndarray]:
    """The sorted run with a buffer's keys inserted after equal older ones (pure: inputs untouched).

    Every step is a numpy call on the buffer's arrays (no Python loop), so the worker thread holds
    the GIL for microseconds at a time and the event loop's thread is not slowed while it runs."""
    raw_keys, raw_vals = buf.arrays()
    new_keys = np.frombuffer(raw_keys, dtype=dtype)
    new_vals = np.frombuffer(raw_vals, dtype=np.int32)
    order = np.argsort(new_keys, kind="stable")  # keeps each key's insertion order
    new_keys, new_vals = new_keys[order], new_vals[order]
    at = np.searchsorted(keys, new_keys, side="right")  # new items after old ones
    return np.insert(keys, at, new_keys), np.insert(vals, at, new_vals)


def _get_files(runs: tuple[_Run, ...], keys: np.ndarray, need: list[int], out: list[int]) -> int:
    """Each key's window in each file (one pread each, issued together), then the hits' values,
    newest file first and newest record first, at most `need[i]` for key i; returns the preads
    (`_keybuf.files_gather` does the same in C)."""
    windows = [r.windows(keys, max(need)) for r in runs]  # oldest file first
    start = np.concatenate([w[0] for w in windows])
    end = np.concatenate([w[1] for w in windows])
    live = np.flatnonzero(end > start)
    if not len(live):
        return 0
    size = runs[0].rec.itemsize
    fds = [r._fd for r in runs for _ in range(len(keys))]
    chunks = [os.pread(fds[i], (e - s) * size, s * size)
              for i, s, e in zip(live.tolist(), start[live].tolist(), end[live].tolist())]
    recs = np.frombuffer(b"".join(chunks), dtype=runs[0].rec)
    owner = np.repeat(live % len(keys), end[live] - start[live])
    hit = np.flatnonzero(recs["k"] == keys[owner])
    if not len(hit):
        return len(chunks)
    vals = recs["v"][hit].tolist()
    owners = owner[hit].tolist()
    for j in range(len(vals) - 1, -1, -1):  # walking back: newest file, newest record first
        i = owners[j]
        if need[i] > 0:
            out.append(vals[j])
            need[i] -= 1
    return len(chunks)


def _run_gather(mem_keys: np.ndarray, mem_vals: np.ndarray, keys: np.ndarray, need: list[int], out: list[int]) -> None:
    """Each key's last `need[i]` values in the sorted in-RAM run (`_keybuf.sorted_gather` in C)."""
    lo = mem_keys.searchsorted(keys, "left")
    found = np.flatnonzero(mem_keys.take(lo, mode="clip") == keys)
    if len(found):  # few keys are in the run: only their ends are searched for
        hi = mem_keys.searchsorted(keys[found], "right").tolist()
        for i, a, b in zip(found.tolist(), lo[found].tolist(), hi, strict=True):
            if need[i] > 0:
                take = mem_vals[max(a, b - need[i]) : b].tolist()
                out += take
                need[i] -= len(take)


_State = tuple[np.ndarray, np.ndarray, tuple[_Run, ...]]  # in-RAM run (keys, vals), files oldest first


def _absorb(state: _State, buf: KeyBuffers, dtype: type[np.unsignedinteger], spill_at: int,
            spill: SpillDir, prefix: str) -> tuple[_State, list[_Run]]:
    """The next state after merging a frozen buffer (worker thread): into the in-RAM run, which
    goes to a file once it reaches `spill_at`; files of equal size class are merged. Returns the
    new state and the files it made obsolete (closed by the caller once swapped in)."""
    keys, vals, runs = state
    keys, vals = _merged(keys, vals, buf, dtype)
    if len(keys) < spill_at:
        return (keys, vals, runs), []
    files = [*runs, _Run.write(spill.new_file(prefix), _records(keys, vals))]
    obsolete: list[_Run] = []
    while len(files) >= 2 and files[-2].n <= 2 * files[-1].n:  # a binary counter: ~log2 files
        pair = files[-2:]
        files[-2:] = [_merge_runs(pair, spill.new_file(prefix))]
        obsolete += [r for r in pair if r in runs]
        for r in pair:
            if r not in runs:  # made in this call, never seen by a reader
                r.close(unlink=True)
    return (np.empty(0, dtype=dtype), np.empty(0, dtype=np.int32), tuple(files)), obsolete


class MultiMap:
    """Append-only key → item multimap: array buffer + sorted numpy run in RAM, sorted files beyond.

    A full buffer is frozen (lookups still read it) and merged in the worker thread; its result is
    swapped in at a later `add`. RAM is bounded by `merge_at` (buffer, ~40 bytes a key) and
    `spill_at` (sorted run, 8–12 bytes a key, twice during a merge) whatever the size of the index;
    the files cost a fence of 1/64 of their keys.
    """

    __slots__ = ("_buf", "_dtype", "_frozen", "_merge_at", "_merging", "_prefix", "_spill",
                 "_spill_at", "_state", "_width", "reads")

    def __init__(self, dtype: type[np.unsignedinteger], merge_at: int = 1 << 15, spill_at: int = 1 << 18,
                 spill: SpillDir | None = None, prefix: str = "map") -> None:
        self._dtype = dtype
        self._state: _State = (np.empty(0, dtype=dtype), np.empty(0, dtype=np.int32), ())
        self._width = np.dtype(dtype).itemsize
        self._buf = _new_buffer(self._width)
        self._frozen: KeyBuffers | None = None  # being merged; older than _buf
        self._merging: Future[tuple[_State, list[_Run]]] | None = None
        self._merge_at = merge_at
        self._spill_at = spill_at
        self._spill = spill if spill is not None else SpillDir()
        self._prefix = prefix
        self.reads = 0  # preads of the files (benchmarks read it)

    def add(self, keys: list[int], value: int) -> None:
        buf = self._buf
        buf.add(keys, value)
        if self._merging is not None and self._merging.done():
            self._swap()
        if len(buf) >= self._merge_at:
            if self._merging is not None:
                if len(buf) < 4 * self._merge_at:  # a long merge (of files) is running: keep buffering
                    return
                self._swap()  # waits: the buffer's bound wins over the loop (does not happen in practice)
            self._frozen, self._buf = buf, _new_buffer(self._width)
            self._merging = _MERGER.submit(_absorb, self._state, self._frozen, self._dtype, self._spill_at,
                                           self._spill, self._prefix)

    def _swap(self) -> None:
        try:
            self._state, obsolete = self._merging.result()  # type: ignore[union-attr]
        except OSError as exc:
            raise StorageError(f"dedup index: writing {exc.filename or 'its files'} failed: {exc.strerror}",
                               str(exc.filename or "")) from None
        self._merging = self._frozen = None
        for r in obsolete:
            r.close(unlink=True)

    def wait_merged(self) -> None:
        """Block until a background merge is in (tests, and measuring memory)."""
        if self._merging is not None:
            self._swap()

    def get(self, keys: list[int], limit: int) -> list[int]:
        """Values stored under any of `keys`, at most `limit` (the most recent) per key, in no
        particular order."""
        out: list[int] = []
        need = [limit] * len(keys)
        for buf in (self._buf, self._frozen):  # newest first
            if buf is not None:
                buf.gather(keys, need, out)
        mem_keys, mem_vals, runs = self._state
        if len(mem_keys):
            if sorted_gather is not None:
                sorted_gather(mem_keys, mem_vals, keys, need, out)
            else:
                _run_gather(mem_keys, mem_vals, np.array(keys, dtype=self._dtype), need, out)
        if runs and max(need) > 0:
            if files_gather is not None:
                self.reads += files_gather([(r.fence, r.n, r._fd) for r in runs], keys, need, out, _BLOCK)
            else:
                self.reads += _get_files(runs, np.array(keys, dtype=self._dtype), need, out)
        return out

    def newest(self, key: int) -> int | None:
        """The most recent value stored under `key`, or None (one key: no arrays built)."""
        for buf in (self._buf, self._frozen):
            if buf is not None and (hit := buf.latest(key)) is not None:
                return hit
        mem_keys, mem_vals, runs = self._state
        if len(mem_keys):
            if sorted_latest is not None:
                if (hit := sorted_latest(mem_keys, mem_vals, key)) is not None:
                    return hit
            else:
                i = int(mem_keys.searchsorted(key, "right"))
                if i and mem_keys[i - 1] == key:
                    return int(mem_vals[i - 1])
        if runs:
            hits = self.get([key], 1)
            return hits[0] if hits else None
        return None

    def nbytes(self) -> int:
        """Bytes in RAM for the sorted part (in-RAM run and the files' fences); excludes buffers."""
        mem_keys, mem_vals, runs = self._state
        return mem_keys.nbytes + mem_vals.nbytes + sum(r.fence.nbytes for r in runs)

    def buffer_nbytes(self) -> int:
        """Bytes of the not-yet-merged buffer (bounded by `merge_at`)."""
        return self._buf.nbytes()

    def file_bytes(self) -> int:
        return sum(r.n * r.rec.itemsize for r in self._state[2])

    def close(self) -> None:
        """Close the files (lookups end here; the sizes can still be asked for)."""
        if self._merging is not None:
            self._swap()
        for r in self._state[2]:
            r.close(unlink=False)


class ItemLog:
    """Item i's token codes (UTF-32-LE) and id, appended to a file past a RAM tail of `flush_at` bytes.

    In RAM per item: its record's offset (8 bytes) and its code count (4); a record is read back
    (one pread) only when asked for, which the deduper does for LSH candidates the length bound
    lets through. `reads` counts those reads (tests hold the deduper to it).
    """

    def __init__(self, spill: SpillDir | None = None, flush_at: int = 1 << 20) -> None:
        self._off = array("Q", [0])
        self._len = array("I")
        self._tail = bytearray()
        self._flushed = 0  # bytes of the log already in the file
        self._flush_at = flush_at
        self._spill = spill if spill is not None else SpillDir()
        self._fd: int | None = None
        self.reads = 0

    def __len__(self) -> int:
        return len(self._len)

    def append(self, text: str, item_id: str) -> None:
        """Append an item: `text` is its token codes, one a character (stored as UTF-32-LE)."""
        self._tail += text.encode("utf-32-le")
        self._tail += item_id.encode()
        self._len.append(len(text))
        self._off.append(self._flushed + len(self._tail))
        if len(self._tail) >= self._flush_at:
            path = None
            try:
                if self._fd is None:
                    path = self._spill.new_file("items")
                    self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                os.write(self._fd, self._tail)  # type: ignore[arg-type]  # page cache: ~0.1 ms a MB, once a MB
            except OSError as exc:
                raise StorageError(f"dedup index: writing {exc.filename or path or 'its item log'} failed: "
                                   f"{exc.strerror}", str(exc.filename or path or "")) from None
            self._flushed += len(self._tail)
            self._tail = bytearray()

    @property
    def lengths(self) -> array:  # type: ignore[type-arg]
        """Each item's token count (RAM only), indexed by item."""
        return self._len

    def _record(self, i: int) -> bytes:
        a, b = self._off[i], self._off[i + 1]
        if a >= self._flushed:
            return bytes(self._tail[a - self._flushed : b - self._flushed])
        self.reads += 1
        assert self._fd is not None
        return os.pread(self._fd, b - a, a)

    def texts(self, items: list[int]) -> list[str]:
        """The token codes of `items`, one code a character (as `append` was given them)."""
        return [self._record(i)[: 4 * self._len[i]].decode("utf-32-le") for i in items]

    def item_id(self, i: int) -> str:
        return self._record(i)[4 * self._len[i] :].decode()

    def best_match(self, query: str, cands: list[int], threshold: float) -> tuple[int, float, int]:
        """The candidate with the highest ROUGE-L F1 against `query` (the oldest of equal ones; -1
        if none scores above 0), its score, and how many were compared: only candidates a full
        overlap could bring to `threshold` are read. One C call in the compiled build (`_lcs.c`)."""
        if _c_best_match is not None:
            best_idx, best, checked, reads = _c_best_match(query, cands, self._len, self._off, self._tail,
                                                           self._flushed, -1 if self._fd is None else self._fd,
                                                           threshold)
            self.reads += reads
            return best_idx, best, checked
        n, lengths = len(query), self._len
        near = [j for j in sorted(set(cands)) if 2 * min(n, m := lengths[j]) >= threshold * (n + m)]
        best, best_idx = 0.0, -1
        lcs = LCSseq.similarity
        for j, other in zip(near, self.texts(near), strict=True):
            score = 2 * lcs(query, other) / (n + len(other))
            if score > best:
                best, best_idx = score, j
        return best_idx, best, len(near)

    def nbytes(self) -> int:
        return self._off.itemsize * len(self._off) + self._len.itemsize * len(self._len) + len(self._tail)

    def file_bytes(self) -> int:
        return self._flushed

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
