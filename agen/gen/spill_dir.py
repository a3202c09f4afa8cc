"""The folder the dedup index spills its files to (`gen/dedup_store`), removed when it is done.

Its own module, not compiled with the stores (`agen/native.py`): a compiled class cannot be
weakly referenced, and `weakref.finalize` is what removes the folder if `close` never runs."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from itertools import count
from pathlib import Path

__all__ = ["SpillDir"]


class SpillDir:
    """The folder a deduper's files go in, created on first use (small runs never touch disk).

    Given a folder, it is removed at once (left-overs of an earlier session are stale: the index is
    rebuilt from the shards); without one, a private temporary folder is used. `close` removes it.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self._given = folder
        self._path: Path | None = None
        self._names = count()
        self._finalizer: weakref.finalize | None = None
        if folder is not None:  # now, at start-up, not on the loop at the first spill
            shutil.rmtree(folder, ignore_errors=True)

    def new_file(self, prefix: str) -> Path:
        if self._path is None:
            if self._given is not None:
                self._given.mkdir(parents=True, exist_ok=True)
                self._path = self._given
            else:
                self._path = Path(tempfile.mkdtemp(prefix="agen-dedup-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._path), True)
        return self._path / f"{prefix}-{next(self._names):06d}.bin"

    @property
    def used(self) -> bool:
        return self._path is not None

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
