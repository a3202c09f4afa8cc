"""kill -9 at random moments and at every deliberate crash point, then resume: nothing lost, nothing twice."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import (SimProcess, agen, check_run, committed_ids, crash_loop, write_run_config,  # noqa: E402
                          write_sim_config)

from agen.run.faults import CRASH_EXIT  # noqa: E402


@pytest.fixture(scope="module")
def sim_module(tmp_path_factory):
    with SimProcess(write_sim_config(tmp_path_factory.mktemp("sim") / "sim.yaml", latency_ms=30)) as s:
        yield s


@pytest.fixture
def sim(sim_module):
    """The module's sim with its stats cleared, so its bill is this test's alone."""
    sim_module.reset()
    return sim_module


def test_kill9_at_random_moments_loses_and_duplicates_nothing(sim, tmp_path):
    """10 random SIGKILLs with a resume after each: every committed id survives, none twice, ledger and bill agree."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=8, target=200)
    res = crash_loop(cfg, root, tmp_path / "agen.log", kills=10, target=200, rng=random.Random(7))
    assert res.kills == 10 and res.exit_codes[-1] == 0
    assert res.lost_during == 0
    chk = check_run(root, res.ever, {"propose": 8, "amplify": 200}, sim.base_url)
    assert chk.problems == [] and chk.lost == 0 and chk.duplicated == 0 and chk.ledger_duplicates == 0
    status = subprocess.run([sys.executable, "-m", "agen", "status", str(root)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and "Status: complete" in " ".join(status.stdout.split())
    if chk.billing_unknown:
        assert f"{chk.billing_unknown} requests cut off (billing unknown)" in " ".join(status.stdout.split())


CRASH_POINTS = [
    "shard.after_write:5", "shard.after_flush:7", "shard.after_fsync:9", "shard.after_create:4",
    "sink.after_ledger:6", "sink.before_on_commit:8", "sink.after_on_commit:3", "atomic.before_rename:1",
]


def test_every_crash_point_resumes_without_loss_or_duplicates(sim, tmp_path):
    """Dying between write, flush, fsync, rename and on_commit (one point per session) never loses or repeats an id."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=6, target=100,
                           output={"shard_max_records": 20})
    log = tmp_path / "agen.log"
    ever: set[str] = set()
    for point in CRASH_POINTS:
        args = ["resume", str(root)] if (root / "run.json").exists() else ["run", str(cfg)]
        rc = agen(args, log, env={"AGEN_CRASHPOINT": point}).wait(timeout=60)
        assert rc == CRASH_EXIT, f"{point}: exit {rc} (crash point never reached?)"
        if (root / "accepted").exists():
            now = set(committed_ids(root))
            assert ever <= now, f"{point}: lost {sorted(ever - now)[:5]}"
            ever = now
    assert agen(["resume", str(root)], log).wait(timeout=90) == 0, log.read_text()[-3000:]
    chk = check_run(root, ever, {"propose": 6, "amplify": 100}, sim.base_url)
    assert chk.problems == []
    assert len(list((root / "accepted").glob("part-*.jsonl"))) > 1  # shards rolled across the crashes
