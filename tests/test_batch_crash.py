"""kill -9 and Ctrl-C around provider batches (real `agen run` processes, one sim serving every session):
resume ends with nothing lost, nothing twice, and no batch submitted twice (the sim counts submissions)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT
from test_batch_e2e import batch_stats, journal, sim_yaml

sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import SimProcess, agen, check_run, committed_ids, write_run_config  # noqa: E402

from agen.run.faults import CRASH_EXIT  # noqa: E402
from agen.run.shards import read_records  # noqa: E402

TARGETS = {"propose": 4, "amplify": 40}
BATCH = {"max_size": 100, "max_wait_s": 0.2, "poll_s": 0.05, "poll_max_s": 0.3}


@pytest.fixture(scope="module")
def sim_module(tmp_path_factory):
    with SimProcess(sim_yaml(tmp_path_factory.mktemp("sim") / "sim.yaml", delay_s=1.0)) as s:
        yield s


@pytest.fixture
def sim(sim_module):
    sim_module.reset()
    return sim_module


def run_config(tmp_path: Path, sim_url: str, provider: str) -> Path:
    cfg = write_run_config(tmp_path / "run.yaml", sim_url, tmp_path / "run", proposals=TARGETS["propose"],
                           target=TARGETS["amplify"], amplify={"mode": "batch"}, vote={"mode": "batch"},
                           batch=BATCH)
    if provider == "anthropic":
        text = cfg.read_text().replace("provider: openai", "provider: anthropic").replace(sim_url + "/v1", sim_url)
        cfg.write_text(text)
    return cfg


def finish(root: Path, log: Path, sim_url: str, ever: set[str]) -> dict:
    proc = agen(["resume", str(root)], log)
    assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    chk = check_run(root, ever, TARGETS)
    assert chk.problems == [] and chk.lost == 0 and chk.duplicated == 0
    stats = batch_stats(sim_url)
    assert stats["resubmitted_custom_ids"] == [] and stats["identical_batches"] == 0, stats
    rows = journal(root)
    ids = [r["batch_id"] for r in rows if r["ev"] == "submitted"]
    assert len(ids) == len(set(ids)) == sum(stats["submitted"].values())  # every batch known once, none unknown
    assert {r["key"] for r in rows if r["ev"] == "results"} == {r["key"] for r in rows if r["ev"] == "submitted"}
    # every batch line the sim billed is in the ledger exactly once, however often its results were read
    wire = {"cheap": "sim-small", "strong": "sim-large"}
    ledger: Counter[str] = Counter()
    for r in read_records(root / "ledger"):
        if r["ev"] == "call" and r.get("mode") == "batch":
            ledger[wire[r["model"]]] += r["usage"]["output"]
    assert dict(ledger) == {m: u["output_tokens"] for m, u in stats["by_model"].items() if u["output_tokens"]}
    return stats


@pytest.mark.parametrize("provider,point", [
    ("openai", "batch_after_create:1"),  # created at the provider, its id not yet recorded
    ("anthropic", "batch_after_create:1"),
    ("openai", "batch_polled:3"),  # while polling
    ("anthropic", "batch_polled:3"),
    ("openai", "batch_downloaded:1"),  # results downloaded, not yet kept
    ("openai", "batch_before_results:2"),  # results' call lines durable, results not yet kept
])
def test_kill9_around_a_batch_resumes_without_resubmitting(sim, tmp_path, provider, point):
    root, log = tmp_path / "run", tmp_path / "agen.log"
    cfg = run_config(tmp_path, sim.base_url, provider)
    proc = agen(["run", str(cfg)], log, env={"AGEN_CRASHPOINT": point})
    assert proc.wait(timeout=180) == CRASH_EXIT, log.read_text()[-3000:]
    before = batch_stats(sim.base_url)
    assert sum(before["submitted"].values()) >= 1
    ever = set(committed_ids(root)) if (root / "accepted").exists() else set()
    finish(root, log, sim.base_url, ever)
    rows = journal(root)
    if point.startswith("batch_after_create"):  # the batch the dead session created was found, not resubmitted
        assert any(r.get("adopted") for r in rows if r["ev"] == "submitted")


@pytest.fixture
def slow_batch_sim(tmp_path):
    """Batches that take 2.5 s (the module's take 1 s): the signal below lands while one waits even on a
    slow machine, and the resume's rounds of batches stay short."""
    with SimProcess(sim_yaml(tmp_path / "slow.yaml", delay_s=2.5)) as s:
        yield s


def test_ctrl_c_while_batches_wait_then_resume_polls_them(slow_batch_sim, tmp_path):
    """SIGINT with batches submitted and unfinished: exit 130 at once (nobody waits for the batch), the
    batches stay open in the journal, and the resumed session polls them instead of resubmitting."""
    sim = slow_batch_sim
    root, log = tmp_path / "run", tmp_path / "agen.log"
    cfg = run_config(tmp_path, sim.base_url, "openai")
    proc = agen(["run", str(cfg)], log)
    deadline = time.monotonic() + 60
    waiting = False
    while not waiting and time.monotonic() < deadline and proc.poll() is None:
        if (root / "batches.jsonl").exists():
            ev = Counter(r["ev"] for r in journal(root))
            waiting = ev["submitted"] > ev["results"]
        time.sleep(0.02)
    assert waiting, log.read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    rows = journal(root)
    open_keys = {r["key"] for r in rows if r["ev"] == "submitted"} - {r["key"] for r in rows if r["ev"] == "results"}
    assert open_keys, "the interrupt came after every batch had ended"
    finish(root, log, sim.base_url, set(committed_ids(root)) if (root / "accepted").exists() else set())


def test_resume_after_the_provider_forgot_the_batches(sim, tmp_path):
    """kill -9 while polling, then the provider forgets every batch (`/sim/reset`, as a restarted server
    without a batch_dir): the resumed session gets 404 for the recorded ids, voids those batches and
    sends their requests again instead of stopping the run; nothing is lost or written twice."""
    root, log = tmp_path / "run", tmp_path / "agen.log"
    cfg = run_config(tmp_path, sim.base_url, "openai")
    proc = agen(["run", str(cfg)], log, env={"AGEN_CRASHPOINT": "batch_polled:2"})
    assert proc.wait(timeout=180) == CRASH_EXIT, log.read_text()[-3000:]
    sim.reset()
    ever = set(committed_ids(root)) if (root / "accepted").exists() else set()
    proc = agen(["resume", str(root)], log)
    assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    chk = check_run(root, ever, TARGETS)
    assert chk.problems == [] and chk.lost == 0 and chk.duplicated == 0
    assert any(r["ev"] == "void" and "gone" in r["why"] for r in journal(root))
