"""Ctrl-C: the first stops sending (requests on the wire finish, cut tasks are journaled) and exits
130; the second exits at once; both resume."""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import SimProcess, agen, check_run, committed_ids, write_run_config, write_sim_config  # noqa: E402

from agen.run.rundir import read_ledger  # noqa: E402
from agen.run.shards import read_records  # noqa: E402


SIM_MODELS = list(yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())["models"])


@pytest.fixture
def sim(tmp_path):
    with SimProcess(write_sim_config(tmp_path / "sim.yaml", latency_ms=150)) as s:
        yield s


def _ledger_count(root: Path, needle: bytes) -> int:
    """Occurrences of `needle` in the ledger so far (a cheap byte count; torn tails do not matter)."""
    return sum(p.read_bytes().count(needle) for p in (root / "ledger").glob("*.jsonl"))


def _wait_for_calls(proc, root: Path, calls: int) -> None:  # type: ignore[no-untyped-def]
    """Until the run has finished `calls` HTTP attempts (paced by progress, not a fixed sleep)."""
    deadline = time.monotonic() + 120
    while _ledger_count(root, b'"ev":"call"') < calls and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it was interrupted"


def _delivered(pid: int, sig: int) -> bool:
    """`sig` is no longer pending for `pid` (Linux: /proc's ShdPnd mask; elsewhere assumed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    pending = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("ShdPnd:")), 0)
    return not pending & (1 << (sig - 1))


def _interrupt(proc, signals: int, timeout: float) -> int:  # type: ignore[no-untyped-def]
    """Send SIGINT `signals` times, each once the one before was delivered: two sent while the
    process is not scheduled (a loaded machine) would merge into one pending signal."""
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while not _delivered(proc.pid, signal.SIGINT) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
    return proc.wait(timeout=timeout)


def test_first_sigint_drains_in_flight_commits_and_exits_130(sim, tmp_path):
    """SIGINT once: exit 130, every request begun has ended, every task that spent money is committed
    or has its paid results journaled; resume finishes."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=6, target=400)
    proc = agen(["run", str(cfg)], tmp_path / "agen.log")
    _wait_for_calls(proc, root, 20)  # requests in flight
    rc = _interrupt(proc, 1, timeout=60)
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
    """SIGINT twice: exit 130 without waiting for the requests on the wire, which count as billing
    unknown; resume finishes without loss. Those requests hang (scripted, 10 min) and the drain's
    grace is an hour, so only the second signal can end the session within the wait."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=6, target=400)
    proc = agen(["run", str(cfg), "--grace", "3600"], tmp_path / "agen.log")
    _wait_for_calls(proc, root, 20)
    for model in SIM_MODELS:  # every request from now on hangs
        _post(sim.base_url + "/sim/script", {"model": model, "responses": [{"hang_s": 600}] * 400})
    # Until a request is on the wire, stuck: the sim has taken a hang off the script for it (a
    # ledger's begin line is written before its send, so it does not tell). One is enough for the
    # drain to wait for the second signal.
    deadline = time.monotonic() + 60
    while not _hanging(sim.base_url, 400) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _hanging(sim.base_url, 400), "no request reached the sim after the hang was scripted"
    rc = _interrupt(proc, 2, timeout=120)
    assert rc == 130, (tmp_path / "agen.log").read_text()[-3000:]
    assert read_ledger(root).billing_unknown > 0  # the requests it did not wait for
    for model in SIM_MODELS:  # the hangs nobody was sent are dropped (the bill stays)
        _post(sim.base_url + "/sim/script", {"model": model, "responses": [], "replace": True})
    done = set(committed_ids(root))
    assert agen(["resume", str(root)], tmp_path / "agen.log").wait(timeout=90) == 0
    assert check_run(root, done, {"propose": 6, "amplify": 400}, sim.base_url).problems == []


def _hanging(base_url: str, scripted: int) -> int:
    """Requests the sim is holding: the hangs it took off each model's script of `scripted`."""
    return sum(scripted - _post(base_url + "/sim/script", {"model": m, "responses": []})["queued"] for m in SIM_MODELS)


def _post(url: str, doc: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())
