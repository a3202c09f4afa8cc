"""Claims, leases, accepted slots, the shared pool and duplicate set, and rebuilds, against a real
redis-server (each test its own), one `RedisCoordination` per simulated worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from agen.config import CoordinatorConfig
from agen.coord import CoordinatorUnreachableError, RedisCoordination
from agen.coord.layout import task_index, worker_dir
from agen.engine.coordination import Solo
from agen.errors import ConfigError

FP = "abcdef0123456789"


def tid(stage: str, i: int) -> str:
    return f"{FP[:8]}-{stage}-{i:08d}"


def rec(stage: str, i: int, status: str = "rejected", question: str | None = None) -> dict[str, Any]:
    return {"id": tid(stage, i), "stage": stage, "status": status, "reason": "vote:agree" if status == "accepted"
            else "vote:disagree", "question": question or f"question {stage} {i}?", "answer": "1", "cost_usd": 0.0}


def write_shard(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """A worker directory with these committed records (as the sink writes them)."""
    for stream in ("accepted", "rejected"):
        (run_dir / stream).mkdir(parents=True, exist_ok=True)
        lines = b"".join(orjson.dumps(r) + b"\n" for r in records if (r["status"] == "accepted") == (stream == "accepted"))
        (run_dir / stream / "part-00000.jsonl").write_bytes(lines)
    (run_dir / "run.json").write_bytes(orjson.dumps({"fingerprint": FP, "sessions": [{}]}))


async def joined(url: str, root: Path, worker: str, lease_s: float = 60.0) -> RedisCoordination:
    cfg = CoordinatorConfig(url=url, worker_id=worker, lease_s=lease_s, timeout_s=2.0)
    c = RedisCoordination(cfg, FP, root)
    own = worker_dir(root, worker)
    own.mkdir(parents=True, exist_ok=True)
    await c.open(own)
    return c


async def test_two_workers_never_claim_the_same_index(redis_url: str, tmp_path: Path) -> None:
    a, b = await joined(redis_url, tmp_path, "a"), await joined(redis_url, tmp_path, "b")
    got = []
    for _ in range(15):
        got += [await a.claim("propose", 50), await b.claim("propose", 50)]
    rest = [await a.claim("propose", 50) for _ in range(20)]
    assert sorted(got + rest) == list(range(50))
    assert await b.claim("propose", 50) is None  # all handed out
    assert await a.claim("amplify", 50) == 0  # stages are separate
    await a.aclose()
    await b.aclose()


async def test_a_dead_workers_claims_return_after_its_lease(redis_url: str, tmp_path: Path) -> None:
    dead = await joined(redis_url, tmp_path, "dead", lease_s=6.0)  # outlasts the next worker's start-up
    assert [await dead.claim("propose", 100) for _ in range(3)] == [0, 1, 2]
    await dead.close()  # killed: nothing given back, no more renewals
    other = await joined(redis_url, tmp_path, "other")
    assert await other.claim("propose", 100) == 3  # the leases still hold
    r = aioredis.from_url(redis_url)
    while await r.zcount(other.key("lease", "propose"), "-inf", "(" + str(await _now(r))) < 3:
        await asyncio.sleep(0.05)  # until the three leases are past their end (Redis clock)
    assert sorted([await other.claim("propose", 100) for _ in range(3)]) == [0, 1, 2]
    assert await other.claim("propose", 100) == 4
    await r.aclose()
    await other.aclose()


async def _now(r: aioredis.Redis) -> float:
    sec, usec = await r.time()
    return sec + usec / 1e6


async def test_a_restarted_worker_marks_its_shard_and_gives_the_rest_back_at_once(redis_url: str, tmp_path: Path) -> None:
    w = await joined(redis_url, tmp_path, "w")
    for _ in range(4):
        await w.claim("propose", 100)  # 0..3, lease 60 s
    assert await w.before_write([rec("propose", 1, "accepted"), rec("propose", 2)]) == set()
    await w.close()  # killed after the shard write of 1 and 2 ... but only 1 reached the shard
    write_shard(worker_dir(tmp_path, "w"), [rec("propose", 1, "accepted")])
    other = await joined(redis_url, tmp_path, "other")
    assert await other.claim("propose", 100) == 4  # w's claims are still leased to it
    w2 = await joined(redis_url, tmp_path, "w")  # the same worker id starts again
    got = sorted([await other.claim("propose", 100) for _ in range(3)])
    assert got == [0, 2, 3]  # 1 is committed; 2 was being committed but never reached the shard
    assert other.others_accepted("propose") == 0
    await other.tick({}, (0.0, 0))
    assert other.others_accepted("propose") == 1  # w's committed accepted record counts globally
    await w2.aclose()
    await other.aclose()


async def test_a_claim_taken_over_is_refused_at_commit(redis_url: str, tmp_path: Path) -> None:
    slow = await joined(redis_url, tmp_path, "slow", lease_s=1.0)
    assert await slow.claim("amplify", 10) == 0
    fast = await joined(redis_url, tmp_path, "fast", lease_s=60.0)
    index = None
    while index != 0:  # once slow's lease has run out, fast takes index 0 over
        index = await fast.claim("amplify", 10)
        if index is None:
            await asyncio.sleep(0.05)
    assert await slow.before_write([rec("amplify", 0)]) == {tid("amplify", 0)}  # not written twice
    assert await fast.before_write([rec("amplify", 0)]) == set()
    await slow.aclose()
    await fast.aclose()


async def test_a_workers_own_expired_lease_is_renewed_not_handed_back_to_it(redis_url: str, tmp_path: Path) -> None:
    """A worker that stalled past its lease still works on the index: its next claim must not return
    it (that would run one task twice in one worker)."""
    w = await joined(redis_url, tmp_path, "w", lease_s=1.0)
    assert await w.claim("propose", 100) == 0
    r = aioredis.from_url(redis_url)
    while await r.zcount(w.key("lease", "propose"), "-inf", "(" + str(await _now(r))) < 1:
        await asyncio.sleep(0.05)
    assert await w.claim("propose", 100) == 1
    assert await r.zcount(w.key("lease", "propose"), "-inf", "(" + str(await _now(r))) == 0  # 0 renewed
    await r.aclose()
    await w.aclose()


async def test_accepted_slots_hold_the_target_across_workers(redis_url: str, tmp_path: Path) -> None:
    a, b = await joined(redis_url, tmp_path, "a"), await joined(redis_url, tmp_path, "b")
    assert [await a.claim("amplify", 100) for _ in range(3)] + [await b.claim("amplify", 100) for _ in range(3)] \
        == [0, 1, 2, 3, 4, 5]
    fits = [await w.take_slot("amplify", i, 4) for w, i in ((a, 0), (b, 3), (a, 1), (b, 4), (a, 2), (b, 5))]
    assert fits == [True, True, True, True, False, False]  # 4 accepted verdicts fit, the rest are surplus
    assert await a.take_slot("amplify", 1, 4)  # a slot is its index's: asking again takes no second one
    assert await a.before_write([rec("amplify", 0, "accepted")]) == set()
    a.committed([rec("amplify", 0, "accepted")])
    await a.aclose()  # 0 is done (1 committed); a's other claims and slots (1, 2) go back
    await b.close()  # b killed: its slots (3, 4) are held until it restarts
    c = await joined(redis_url, tmp_path, "c")
    mine = [await c.claim("amplify", 100) for _ in range(5)]
    assert not await c.take_slot("amplify", 3, 4)  # b's index: only its owner takes its slot
    assert not await c.take_slot("amplify", 0, 4)  # done: no slot (a stalled worker's late verdict)
    assert [await c.take_slot("amplify", i, 4) for i in mine[:2]] == [True, False]  # 1 done + 3 held
    await (await joined(redis_url, tmp_path, "b")).aclose()  # b restarts (and stops): its slots go back
    assert [await c.take_slot("amplify", i, 4) for i in mine[2:]] == [True, True, False]
    await c.aclose()


async def test_proposals_and_exact_duplicates_are_shared(redis_url: str, tmp_path: Path) -> None:
    a, b = await joined(redis_url, tmp_path, "a"), await joined(redis_url, tmp_path, "b")
    a.committed([rec("propose", 0, "accepted", "What is 2+2?"), rec("propose", 1, "rejected")])
    await asyncio.gather(*a._background)  # the marks run in the background
    assert await a.tick({"propose": 1.5}, (1.25, 300)) == []  # its own proposals do not come back
    got = await b.tick({}, (0.5, 100))
    assert [(e.id, e.question) for e in got] == [(tid("propose", 0), "What is 2+2?")]
    assert b.others_in_flight("propose") == 1.5 and b.others_accepted("propose") == 1
    assert b.others_spent() == (1.25, 300)  # the budget is the run's: b counts a's spend
    assert await b.tick({}, (0.5, 100)) == []  # each proposal arrives once
    await a.tick({}, (1.25, 300))
    assert a.others_spent() == (0.5, 100)
    assert await a.seen(42, tid("amplify", 7)) is None
    assert await a.seen(42, tid("amplify", 7)) is None  # the same task again (a resume): not a duplicate
    assert await b.seen(42, tid("amplify", 9)) == tid("amplify", 7)
    await a.aclose()
    await b.aclose()


async def test_lost_state_stops_the_worker_and_a_restart_rebuilds_it_from_every_shard(
        redis_url: str, tmp_path: Path) -> None:
    a = await joined(redis_url, tmp_path, "a")
    await a.claim("propose", 100)
    r = aioredis.from_url(redis_url)
    await r.flushdb()  # Redis restarted without persistence
    with pytest.raises(CoordinatorUnreachableError, match="lost this run's state"):
        await a.claim("propose", 100)
    with pytest.raises(CoordinatorUnreachableError, match="lost this run's state"):
        await a.before_write([rec("propose", 0)])
    await a.close()
    write_shard(worker_dir(tmp_path, "a"), [rec("propose", 0, "accepted", "Q zero?"), rec("propose", 5)])
    write_shard(worker_dir(tmp_path, "b"), [rec("propose", 3, "accepted", "Q three?"), rec("amplify", 2, "accepted")])
    a2 = await joined(redis_url, tmp_path, "a")
    assert await a2.claim("propose", 100) == 6  # past every committed index: held ones are never re-issued
    assert await a2.claim("amplify", 100) == 3
    assert a2.others_accepted("propose") == 1 and a2.others_accepted("amplify") == 1
    assert {e.question for e in await a2.tick({}, (0.0, 0))} == {"Q three?"}
    from agen.gen.dedup import exact_key
    assert await a2.seen(exact_key("q  ZERO?"), tid("amplify", 50)) == tid("propose", 0)
    await a2.aclose()
    await r.aclose()


async def test_another_configs_run_under_the_same_name_is_refused(redis_url: str, tmp_path: Path) -> None:
    a = await joined(redis_url, tmp_path, "a")
    other = RedisCoordination(CoordinatorConfig(url=redis_url, worker_id="b", name=FP), "ffffffffffffffff", tmp_path)
    with pytest.raises(ConfigError, match="another config"):
        await other.open(tmp_path / "workers" / "b")
    await other.close()
    await a.aclose()


async def test_unreachable_redis_is_a_clear_exit_6_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    c = RedisCoordination(CoordinatorConfig(url=f"redis://127.0.0.1:{port}/0", worker_id="w", timeout_s=0.5),
                          FP, tmp_path)
    with pytest.raises(CoordinatorUnreachableError, match=f"127.0.0.1:{port}/0 did not answer") as err:
        await c.open(tmp_path / "workers" / "w")
    assert err.value.exit_code == 6
    await c.close()


async def test_solo_hands_out_indices_in_order_skipping_committed_ones() -> None:
    solo = Solo(FP, {tid("propose", 0), tid("propose", 2)})
    assert [await solo.claim("propose", 5) for _ in range(4)] == [1, 3, 4, None]
    assert await solo.take_slot("propose", 1, 0) and await solo.seen(1, "x") is None


def test_layout() -> None:
    root = Path("/runs/big")
    assert worker_dir(root, "w1") == root / "workers" / "w1"
    assert worker_dir(root / "workers" / "w1", "w1") == root / "workers" / "w1"  # agen resume on the worker dir
    assert task_index(tid("amplify", 12)) == ("amplify", 12)


@pytest.mark.parametrize("bad", ["redis://:pw@host:6379/0", "http://host:6379"])
def test_coordinator_url_is_checked_like_the_shared_quotas(bad: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CoordinatorConfig(url=bad, worker_id="w")
    with pytest.raises(ValidationError):
        CoordinatorConfig(url="redis://h:1/0", worker_id="has space")
