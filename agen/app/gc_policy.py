"""The garbage collector's settings for the length of a session.

A run allocates a few short-lived containers per request (dicts of a JSON body, ledger lines,
records); at CPython's default first-generation threshold (700) that starts a collection every
few requests, and each one walks every young object plus the import-time heap on the older
passes: ~10% of the engine's CPU per request in `benchmarks/engine_overhead.py`. During a session
the import-time and restored objects are frozen (`gc.freeze`: never scanned again), and
collections start after more allocations. Reference counting still frees almost everything at
once; the collector only finds cycles, which a larger young generation holds a little longer
(a few MB at most). Only the young generations are collected before the freeze: a cycle already
in the oldest one stays frozen until the session ends (import-time leftovers, a few KB), which is
cheaper than walking the whole heap at every start. Everything is put back as it was when the
session ends.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

SESSION_THRESHOLDS = (20_000, 20, 20)


@contextlib.contextmanager
def session_gc(thresholds: tuple[int, int, int] = SESSION_THRESHOLDS) -> Iterator[None]:
    """Freeze what exists now and collect less often until the block ends."""
    before = gc.get_threshold()
    froze = gc.isenabled() and gc.get_freeze_count() == 0  # never unfreeze what the caller froze
    if froze:
        gc.collect(1)  # the young garbage; a full pass over the import-time heap costs ~25 ms a session
        gc.freeze()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if froze:
            gc.unfreeze()
