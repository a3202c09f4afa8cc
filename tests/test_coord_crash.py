"""Real `agen run --coordinator` worker processes on one sim and one real redis-server: kill -9 at
random moments, Redis lost mid-run; the run still ends with its targets met exactly, nothing lost,
nothing twice, and the ledgers agreeing with the sim's bill."""

from __future__ import annotations

import random
import sys
import time
import urllib.request
from collections import Counter

import pytest

from conftest import ROOT, need_redis_server

sys.path.insert(0, str(ROOT / "benchmarks"))
from coord_crash import scale_crash, start  # noqa: E402
from crash_resume import SimProcess, agen, committed_ids, kill_group, write_run_config, write_sim_config  # noqa: E402

from agen.app.status import snapshot_from_files  # noqa: E402
from agen.coord.layout import worker_dir  # noqa: E402
from agen.sim.redis_process import RedisProcess  # noqa: E402


@pytest.fixture(scope="module")
def sim_module(tmp_path_factory):
    with SimProcess(write_sim_config(tmp_path_factory.mktemp("sim") / "sim.yaml", latency_ms=60)) as s:
        yield s


@pytest.fixture
def sim(sim_module):
    sim_module.reset()
    return sim_module


def test_four_workers_killed_at_random_meet_the_target_once(sim, redis_url, tmp_path):
    """4 workers, 5 SIGKILLs of a random one (each restarted with `agen resume RUN_ROOT/workers/W`)."""
    res = scale_crash(tmp_path, sim.base_url, redis_url, workers=4, kills=5, target=250, rng=random.Random(3))
    assert res.kills == 5, res
    assert res.problems == [], res.problems
    assert res.accepted == {"propose": 8, "amplify": 250}
    assert res.duplicated == 0 and res.lost_during == 0
    assert "4 workers: w0, w1, w2, w3" in res.status


def test_redis_lost_mid_run_stops_the_workers_and_a_restart_rebuilds_from_the_shards(sim, tmp_path):
    """Redis dies: every worker stops with exit 6 (never runs unlimited); a new, empty Redis: the
    resumed workers rebuild the state from their shards and finish without a duplicate."""
    need_redis_server()
    root = tmp_path / "run"
    first = RedisProcess()
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=8, target=200,
                           coordinator={"url": first.url, "worker_id": "unset", "lease_s": 3})
    procs = {w: start(cfg, root, w, first.url, tmp_path / f"{w}.log") for w in ("a", "b")}
    deadline = time.monotonic() + 60
    while len(committed_ids(worker_dir(root, "a"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.stop()
    codes = {w: p.wait(timeout=60) for w, p in procs.items()}
    assert codes == {"a": 6, "b": 6}, [(tmp_path / f"{w}.log").read_text()[-800:] for w in procs]
    assert "did not answer" in (tmp_path / "a.log").read_text()
    before = {w: set(committed_ids(worker_dir(root, w))) for w in procs}
    with RedisProcess() as second:  # empty: the run's state is gone
        procs = {w: agen(["resume", str(worker_dir(root, w)), "--coordinator", second.url], tmp_path / f"{w}.log")
                 for w in ("a", "b")}
        codes = {w: p.wait(timeout=180) for w, p in procs.items()}
    assert codes == {"a": 0, "b": 0}, [(tmp_path / f"{w}.log").read_text()[-800:] for w in procs]
    after = {w: committed_ids(worker_dir(root, w)) for w in procs}
    assert all(before[w] <= set(after[w]) for w in procs)  # nothing committed was lost
    ids = Counter(i for w in after for i in after[w])
    assert max(ids.values()) == 1  # no index ran in both workers, before or after the rebuild
    snap = snapshot_from_files(root)
    assert {s: v["accepted"] for s, v in snap["stages"].items()} == {"propose": 8, "amplify": 200}
    assert "coordinator_rebuilt" in (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()


def test_an_unreachable_coordinator_stops_before_anything_is_sent(sim, tmp_path):
    """A dead Redis at start: exit 6, one clear line naming it, no request sent to the provider."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, tmp_path / "run", proposals=2, target=4)
    out = subprocess.run([sys.executable, "-m", "agen", "run", str(cfg), "--coordinator", f"redis://127.0.0.1:{port}/0",
                          "--worker-id", "w1", "--no-preflight"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 6, out.stderr
    assert f"127.0.0.1:{port}/0 did not answer" in out.stderr and "agen resume" in out.stderr
    with urllib.request.urlopen(sim.base_url + "/sim/stats", timeout=10) as r:
        import json

        stats = json.loads(r.read())
    assert sum(sum(m["status"].values()) for m in stats.values() if isinstance(m, dict) and "status" in m) == 0


def _lease_key(owner_key: str) -> str:
    """A stage's lease ZSET beside its owner HASH (`agen:run:{name}:{stage}:owner` → `…:lease`)."""
    return owner_key.removesuffix("owner") + "lease"


def _claims_of(r, worker: str) -> dict[str, list[bytes]]:  # type: ignore[no-untyped-def]
    """{owner key: the indices `worker` holds on a lease now} (not those being committed: they never expire)."""
    keys = [k.decode() for k in r.scan_iter(match="agen:run:*:owner")]
    return {k: [i for i, w in r.hgetall(k).items() if w == worker.encode() and r.zscore(_lease_key(k), i) is not None]
            for k in keys}


def _until_leases_ran_out(r, held: dict[str, list[bytes]]) -> None:  # type: ignore[no-untyped-def]
    """Until every lease among `held` has ended on Redis's clock (the one the claim script reads)."""
    deadline = time.monotonic() + 60
    while True:
        secs, micros = r.time()
        ends = [r.zscore(_lease_key(k), i) for k, ids in held.items() for i in ids]
        if all(e < secs + micros / 1e6 for e in ends):  # stopped, nobody renews nor moves them
            return
        assert time.monotonic() < deadline, "the leases never ran out"
        time.sleep(0.05)


def _until_another_worker_takes_a_claim_of(r, held: dict[str, list[bytes]], worker: str, other) -> None:  # type: ignore[no-untyped-def]
    """Until some index of `held` is owned by another worker or done (paced by the coordinator's
    state, not a guessed sleep); `other`, the only worker running, must not exit first."""
    deadline = time.monotonic() + 120
    while not any(r.hget(k, i) != worker.encode() for k, ids in held.items() for i in ids):
        assert time.monotonic() < deadline, "no claim was taken over"
        assert other.poll() is None, f"the other worker exited ({other.returncode}) before taking a claim over"
        time.sleep(0.05)


def test_a_worker_stalled_past_its_lease_loses_its_claims_and_writes_no_duplicate(sim, redis_url, tmp_path):
    """SIGSTOP one worker for longer than lease_s: the other takes its claims over; when it wakes,
    its records for them are refused (`claims_lost`), so no id is committed twice."""
    import os
    import signal

    import redis

    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=8, target=200,
                           coordinator={"url": redis_url, "worker_id": "unset", "lease_s": 1.5})
    procs = {w: start(cfg, root, w, redis_url, tmp_path / f"{w}.log") for w in ("a", "b")}
    logs = lambda: {w: (tmp_path / f"{w}.log").read_text()[-1500:] for w in procs}  # noqa: E731
    r = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 60
        while len(committed_ids(worker_dir(root, "a"))) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Both stop, so b cannot meet the target with fresh indices before a's leases run out (it
        # would then never need a's); once they have, b alone wakes: its next claim takes one of a's.
        for p in procs.values():
            os.killpg(p.pid, signal.SIGSTOP)
        held = _claims_of(r, "a")
        assert any(held.values()), "a held no claims on a lease"
        _until_leases_ran_out(r, held)
        os.killpg(procs["b"].pid, signal.SIGCONT)
        try:
            _until_another_worker_takes_a_claim_of(r, held, "a", procs["b"])
        finally:
            os.killpg(procs["a"].pid, signal.SIGCONT)
        codes = {w: p.wait(timeout=180) for w, p in procs.items()}
    except BaseException as exc:
        for p in procs.values():
            kill_group(p, signal.SIGCONT)
            kill_group(p)
            p.wait(timeout=30)
        raise AssertionError(f"{exc!r}; logs: {logs()}") from exc
    finally:
        r.close()
    assert codes == {"a": 0, "b": 0}, logs()
    ids = Counter(i for w in procs for i in committed_ids(worker_dir(root, w)))
    assert max(ids.values()) == 1
    snap = snapshot_from_files(root)
    assert {s: v["accepted"] for s, v in snap["stages"].items()} == {"propose": 8, "amplify": 200}
    assert "claims_lost" in (tmp_path / "a.log").read_text()


def test_scale_out_quota_benchmark_smoke():
    """benchmarks/scale_out_quota.py on a short window: a table, a JSON line, both rows; the
    workers each limiting themselves ask for more than the limit, and the shared ones draw no more
    429s (how many more is the benchmark's figure: on a loaded machine a 6 s window may see none)."""
    import json
    import subprocess

    need_redis_server()
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_out_quota.py"), "--workers", "2",
                          "--seconds", "6", "--warm", "5", "--rpm", "300"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    doc = json.loads(lines[-1])
    assert doc["benchmark"] == "scale_out_quota" and len(lines) >= 4
    shared, local = doc["rows"]
    assert (shared["quota"], local["quota"]) == ("shared", "local")
    assert shared["ok"] > 0 and local["ok"] > 0
    assert local["demand"] > shared["demand"] and local["share_429"] >= shared["share_429"]


def test_the_budget_is_the_runs_not_each_workers(sim, redis_url, tmp_path):
    """budget.usd with 3 workers: together they stop near it (each alone would spend up to all of it)."""
    from agen.config import parse_config
    import yaml

    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=8, target=100_000,
                           budget={"usd": 0.15}, coordinator={"url": redis_url, "worker_id": "unset"})
    procs = {w: start(cfg, root, w, redis_url, tmp_path / f"{w}.log") for w in ("a", "b", "c")}
    codes = {w: p.wait(timeout=180) for w, p in procs.items()}
    assert codes == {"a": 0, "b": 0, "c": 0}, [(tmp_path / f"{w}.log").read_text()[-600:] for w in procs]
    assert all("the budget ($0.15 of the whole run" in (tmp_path / f"{w}.log").read_text() for w in procs)
    spent = snapshot_from_files(root)["costs"]["total"]["cost_usd"]
    # one worker alone overshoots a budget this small (it checks before admitting, and a stage's
    # start admits a burst: ~$0.21 measured); three budgets of their own would spend >= $0.45
    assert 0.1 < spent < 0.45, spent
    assert parse_config(yaml.safe_load((worker_dir(root, "a") / "config.yaml").read_text())).budget.usd == 0.15
