"""Unit tests of batch mode's pure parts: the journal file, custom ids, line outcomes, stage modes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agen.config import ConfigError, parse_config
from agen.errors import StorageError
from agen.providers.batch_client import _anthropic_line, _openai_line, anthropic_custom_id
from agen.run.batches import FILE_NAME, BatchLine, BatchStore
from conftest import quick_raw


def test_store_survives_reopen_and_a_torn_tail(tmp_path):
    """Every event is on disk when its write returns; a torn last line (a crash mid-write) is cut on reopen."""
    async def write() -> None:
        s = BatchStore(tmp_path, session=1)
        e = await s.intent("cheap", "openai", [BatchLine("t/v0", "t/v0", 4, 7, "amplify.vote")])
        await s.record(e, "file", file_id="file-1")
        await s.record(e, "submitted", batch_id="batch_1")
        e2 = await s.intent("cheap", "openai", [BatchLine("u", "u", 1, None, "amplify")])
        await s.results(e2, {"u": {"ok": True, "texts": ["x"], "cost_usd": 0.1}})
        s.close()

    asyncio.run(write())
    with open(tmp_path / FILE_NAME, "ab") as f:
        f.write(b'{"ev": "submitted", "key": "b')  # killed mid-line
    s = BatchStore(tmp_path, session=2)
    (open_e,) = s.open_entries("cheap")
    assert (open_e.batch_id, open_e.file_id, open_e.lines[0].match) == ("batch_1", "file-1", ("t/v0", 4, 7))
    (done,) = s.kept_results("cheap")
    assert done.results == {"u": {"ok": True, "texts": ["x"], "cost_usd": 0.1}} and not done.open
    assert s.known_batch_ids() == {"batch_1"} and s.open_entries("strong") == []
    s.close()


def test_store_refuses_a_damaged_middle_line(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(b'not json\n{"ev": "void", "key": "x", "why": "y"}\n')
    with pytest.raises(StorageError, match="damaged"):
        BatchStore(tmp_path, session=1)


def test_anthropic_custom_ids_are_valid_and_unique():
    taken: set[str] = set()
    a = anthropic_custom_id("abcd1234-amplify-00000003/v8", taken)
    taken.add(a)
    b = anthropic_custom_id("abcd1234-amplify-00000003/v8", taken)
    assert a == "abcd1234-amplify-00000003_v8" and b == "abcd1234-amplify-00000003_v8-2"
    long = anthropic_custom_id("categorize/" + "é" * 100, set())
    assert len(long) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in long)


def test_line_outcomes_of_both_wires():
    ok = _openai_line({"custom_id": "a", "response": {"status_code": 200, "body": {"id": "x"}}, "error": None})
    assert ok.doc == {"id": "x"} and ok.error is None
    exp = _openai_line({"custom_id": "b", "response": None, "error": {"code": "batch_expired", "message": "late"}})
    assert (exp.error, exp.retryable) == ("expired", True)
    bad = _openai_line({"custom_id": "c", "response": {"status_code": 400, "body": {"error": {"message": "no"}}}})
    assert (bad.error, bad.retryable, bad.message) == ("http_400", False, "no")
    busy = _openai_line({"custom_id": "d", "response": {"status_code": 500, "body": {}}})
    assert busy.retryable
    assert _anthropic_line({"custom_id": "e", "result": {"type": "succeeded", "message": {"id": "m"}}}).doc == {"id": "m"}
    assert _anthropic_line({"custom_id": "f", "result": {"type": "expired"}}).error == "expired"
    inv = _anthropic_line({"custom_id": "g", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}}})
    assert (inv.error, inv.retryable) == ("invalid_request_error", False)
    api = _anthropic_line({"custom_id": "h", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "api_error", "message": "oops"}}}})
    assert api.retryable


def test_mode_for_stage_overrides_model():
    raw = quick_raw(Path("/tmp"), amplify={"mode": "batch"}, vote={"mode": "batch"})
    raw["models"]["strong"]["mode"] = "online"
    cfg = parse_config(raw)
    assert cfg.mode_for("propose", "strong") == "online"
    assert cfg.mode_for("amplify", "cheap") == "batch"
    assert cfg.mode_for("propose.vote", "cheap") == "batch"
    assert cfg.mode_for("categorize", "cheap") == "online"
    raw2 = quick_raw(Path("/tmp"))
    raw2["models"]["cheap"]["mode"] = "batch"
    cfg2 = parse_config(raw2)
    assert cfg2.uses_batch() and cfg2.mode_for("amplify.vote", "cheap") == "batch"
    assert cfg2.fingerprint() == parse_config(quick_raw(Path("/tmp"))).fingerprint()  # resumable


def test_bad_batch_settings_name_the_key():
    raw = quick_raw(Path("/tmp"), batch={"max_size": 0})
    with pytest.raises(ConfigError, match="batch.max_size"):
        parse_config(raw)
    raw = quick_raw(Path("/tmp"), vote={"mode": "later"})
    with pytest.raises(ConfigError, match="vote.mode"):
        parse_config(raw)


def test_kept_results_of_committed_tasks_are_not_loaded(tmp_path):
    async def write() -> None:
        s = BatchStore(tmp_path, session=1)
        e = await s.intent("cheap", "anthropic", [BatchLine("t1_v0", "t1/v0", 1, 3, "amplify.vote"),
                                                  BatchLine("t2", "t2", 1, 4, "amplify")])
        await s.results(e, {"t1_v0": {"ok": True, "texts": ["a"], "cost_usd": 0.1},
                            "t2": {"ok": True, "texts": ["b"], "cost_usd": 0.2}})
        assert e.results == {}  # on disk, not held by the session that wrote it
        s.close()

    asyncio.run(write())
    s = BatchStore(tmp_path, session=2, wanted=lambda sub_id: sub_id.split("/")[0] != "t1")
    (e,) = s.kept_results("cheap")
    assert list(e.results) == ["t2"]
    s.close()


def test_room_gate_probes_one_at_a_time_after_a_refusal_and_opens_after_a_streak():
    """After a refusal nobody submits until a cue (one of ours ended, or the backoff); then one probe
    at a time, each let through by the acceptance of the one before, until OPEN_AFTER in a row were
    taken and everyone goes again. A probe that ends without an answer closes the gate again."""
    from agen.providers.batch_room import OPEN_AFTER, RoomGate

    async def scenario() -> None:
        gate = RoomGate(backoff_min_s=0.01, backoff_max_s=60.0)
        assert await gate.enter() is False  # open: no probe
        gate.refused(None, ours_open=True)  # the fallback timer is 60 s: only a cue opens it
        waiters = [asyncio.ensure_future(gate.enter()) for _ in range(OPEN_AFTER + 2)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters)
        gate.room_likely()  # one of ours ended
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [w.result() for w in waiters if w.done()] == [True]  # exactly one probe
        for taken in range(1, OPEN_AFTER):
            gate.accepted()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert sum(w.done() for w in waiters) == taken + 1  # the next probe, one at a time
        gate.accepted()  # the OPEN_AFTER-th in a row: open for all
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert all(w.done() for w in waiters) and gate.is_open
        assert [w.result() for w in waiters].count(True) == OPEN_AFTER
        gate.refused(None, ours_open=False)  # none of ours open: the short backoff is the cue
        probe = await asyncio.wait_for(gate.enter(), 5)
        assert probe is True
        gate.probe_done()  # it ended without an answer: closed again, a later probe
        assert not gate.is_open and await asyncio.wait_for(gate.enter(), 5) is True
        gate.release_all()
        assert await gate.enter() is False and gate.refusals == 2

    asyncio.run(scenario())
