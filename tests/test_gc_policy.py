"""The session's collector settings are applied inside the block and put back after it."""

from __future__ import annotations

import gc

from agen.app.gc_policy import SESSION_THRESHOLDS, session_gc


def test_session_gc_freezes_raises_thresholds_and_restores() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with session_gc():
        assert gc.get_threshold() == SESSION_THRESHOLDS
        assert gc.get_freeze_count() > 0  # the start-up heap is no longer scanned
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_session_gc_leaves_a_callers_freeze_alone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with session_gc((5000, 10, 10)):
            assert gc.get_threshold() == (5000, 10, 10)
        assert gc.get_freeze_count() == frozen  # not unfrozen by the session
    finally:
        gc.unfreeze()
