"""Ctrl-C: the first stops sending (requests on the wire finish, cut tasks are journaled) and exits
130; the second exits at once; both resume."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import SimProcess, agen, check_run, committed_ids, sessions, write_run_config, write_sim_config  # noqa: E402

from agen.run.rundir import read_ledger  # noqa: E402
from agen.run.shards import read_records  # noqa: E402


@pytest.fixture
def sim(tmp_path):
    with SimProcess(write_sim_config(tmp_path / "sim.yaml", latency_ms=150)) as s:
        yield s


def _start_and_interrupt(cfg: Path, root: Path, log: Path, signals: int):
    proc = agen(["run", str(cfg)], log)
    deadline = time.monotonic() + 30
    while sessions(root) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)  # requests in flight
    t0 = time.monotonic()
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    rc = proc.wait(timeout=30)
    return rc, time.monotonic() - t0


def test_first_sigint_drains_in_flight_commits_and_exits_130(sim, tmp_path):
    """SIGINT once: exit 130, every request begun has ended, every task that spent money is committed
    or has its paid results journaled; resume finishes."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=6, target=400)
    rc, _ = _start_and_interrupt(cfg, root, tmp_path / "agen.log", 1)
    assert rc == 130, (tmp_path / "agen.log").read_text()[-3000:]
    ledger = read_ledger(root)
    assert ledger.billing_unknown == 0 and ledger.calls
    paid = {r["task_id"] for r in ledger.calls if r["cost_usd"] > 0}
    done = set(committed_ids(root))
    journaled = {r["task_id"] for r in read_records(root / "ledger") if r["ev"] == "paid"}
    assert {t for t in paid if t.split("/")[0] not in done} <= journaled  # nothing paid is abandoned
    assert [r for r in read_records(root / "ledger") if r["ev"] == "end" and r["cut"]] == []
    assert agen(["resume", str(root), "--grace", "5"], tmp_path / "agen.log").wait(timeout=90) == 0
    assert check_run(root, done, {"propose": 6, "amplify": 400}, sim.base_url).problems == []


def test_second_sigint_exits_promptly_and_the_run_still_resumes(sim, tmp_path):
    """SIGINT twice: exit 130 within seconds, cut requests count as billing unknown; resume finishes without loss."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=6, target=400)
    rc, took = _start_and_interrupt(cfg, root, tmp_path / "agen.log", 2)
    assert rc == 130 and took < 5.0
    done = set(committed_ids(root))
    assert agen(["resume", str(root)], tmp_path / "agen.log").wait(timeout=90) == 0
    assert check_run(root, done, {"propose": 6, "amplify": 400}, sim.base_url).problems == []
