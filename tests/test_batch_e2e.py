"""Batch mode end to end: real runs against the sim's batch APIs (both wires), mixed with online stages."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agen.app.runner import EXIT_OK, run_session
from agen.app.summary import render_summary
from agen.config import parse_config
from agen.run.batches import FILE_NAME
from agen.run.shards import read_records
from agen.sim.process import SimProcess
from conftest import ROOT, quick_raw, records


def sim_yaml(path: Path, **batch: Any) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for m in raw["models"].values():
        m["latency_ms"] = {"median": 2, "sigma": 0.2}
    raw["batch"] = {"delay_s": 0.3, **batch}
    path.write_text(yaml.safe_dump(raw))
    return path


def batch_cfg(tmp_path: Path, sim_url: str | None, *, proposals: int = 4, target: int = 30,
              provider: str = "openai", **sections: Any) -> Any:
    raw = quick_raw(tmp_path, proposals=proposals, target=target, **sections)
    raw["batch"] = {"max_size": 200, "max_wait_s": 0.2, "poll_s": 0.05, "poll_max_s": 0.2, **raw.get("batch", {})}
    for m in raw["models"].values():
        m["provider"] = provider
        if sim_url is not None:
            m["base_url"] = sim_url + ("/v1" if provider == "openai" else "")
    if sim_url is not None:
        raw["simulator"] = None
    raw["log_level"] = "warning"
    return parse_config(raw)


def batch_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/sim/batch_stats", timeout=10) as r:
        return json.loads(r.read())


def journal(run_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in (run_dir / FILE_NAME).read_bytes().splitlines()]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_amplify_and_votes_in_batch_proposer_online(tmp_path, provider):
    """The strong proposer online, the cheap amplifier and every vote in batches: the targets are met,
    batch lines are billed at the batch price in the ledger, every batch ended with its results kept,
    and no batch or custom_id was submitted twice."""
    with SimProcess(sim_yaml(tmp_path / "sim.yaml")) as sim:
        cfg = batch_cfg(tmp_path, sim.base_url, provider=provider, amplify={"mode": "batch"}, vote={"mode": "batch"})
        out = run_session(cfg, live=False)
        assert out.exit_code == EXIT_OK, out.message
        stats = batch_stats(sim.base_url)
    root = Path(cfg.output.dir)
    recs = records(root)
    accepted = Counter(r["stage"] for r in recs if r["status"] == "accepted")
    assert accepted["propose"] >= 4 and accepted["amplify"] >= 30
    assert not [i for i, n in Counter(r["id"] for r in recs).items() if n > 1]
    calls = [r for r in read_records(root / "ledger") if r["ev"] == "call"]
    batch_calls = [c for c in calls if c.get("mode") == "batch"]
    assert {c["stage"] for c in batch_calls} >= {"amplify", "amplify.vote", "propose.vote"}
    assert all(c.get("mode") != "batch" for c in calls if c["stage"] == "propose")  # the proposer stayed online
    rows = journal(root)
    submitted = {r["batch_id"] for r in rows if r["ev"] == "submitted"}
    assert submitted and len(submitted) == len({r["key"] for r in rows if r["ev"] == "results"})
    assert sum(stats["submitted"].values()) == len(submitted)
    assert stats["resubmitted_custom_ids"] == [] and stats["identical_batches"] == 0
    summary = " ".join(render_summary(out.snapshot).split())
    assert f"cheap: {len(submitted)} batches submitted" in summary


@pytest.mark.parametrize("provider,on_failed", [("openai", "batch"), ("anthropic", "online")])
def test_expired_and_failed_lines_are_retried(tmp_path, provider, on_failed):
    """Batches that expire half answered and lines answered with a 500 (the sim breaks 'a finished batch
    answered everything'): the failed lines go again (in a new batch, or online) and the run still
    meets its targets without writing an id twice."""
    with SimProcess(sim_yaml(tmp_path / "sim.yaml", expire_p=0.3, expire_done_share=0.5, line_error_p=0.05)) as sim:
        cfg = batch_cfg(tmp_path, sim.base_url, provider=provider, target=20, amplify={"mode": "batch"},
                        vote={"mode": "batch"}, batch={"on_failed_lines": on_failed, "line_retries": 4})
        out = run_session(cfg, live=False)
        assert out.exit_code == EXIT_OK, out.message
        stats = batch_stats(sim.base_url)
    root = Path(cfg.output.dir)
    recs = records(root)
    assert Counter(r["stage"] for r in recs if r["status"] == "accepted")["amplify"] >= 20
    assert not [i for i, n in Counter(r["id"] for r in recs).items() if n > 1]
    kept = [row for r in journal(root) if r["ev"] == "results" for row in r["rows"].values()]
    failed = [row for row in kept if not row["ok"]]
    assert failed and {row["error"] for row in failed} & {"expired", "http_500", "api_error"}
    calls = [r for r in read_records(root / "ledger") if r["ev"] == "call"]
    if on_failed == "online":  # a retried line went through the lane, billed at the online price
        assert any(c.get("mode") != "batch" and c["stage"] != "propose" for c in calls)
    else:  # the same custom_id went into a later batch
        assert stats["resubmitted_custom_ids"]



@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_full_batch_queue_waits_for_room_instead_of_failing_lines(tmp_path, provider):
    """The provider's enqueued-token limit holds about two of our batches (OpenAI fails the third with
    token_limit_exceeded, Anthropic refuses its create with a 429): the refused lines wait until one of
    our batches ends and go again, so the run meets its targets with no line failed, none sent online
    and no task failed; the summary says the queue was full."""
    with SimProcess(sim_yaml(tmp_path / "sim.yaml", delay_s=0.4, max_enqueued_tokens=6000)) as sim:
        cfg = batch_cfg(tmp_path, sim.base_url, provider=provider, target=30, amplify={"mode": "batch"},
                        vote={"mode": "batch"}, batch={"max_size": 10, "max_wait_s": 0.05, "line_retries": 1})
        out = run_session(cfg, live=False)
        assert out.exit_code == EXIT_OK, out.message
    root = Path(cfg.output.dir)
    recs = records(root)
    assert Counter(r["stage"] for r in recs if r["status"] == "accepted")["amplify"] >= 30
    assert not [r for r in recs if r["status"] == "failed"]
    calls = [r for r in read_records(root / "ledger") if r["ev"] == "call"]
    assert all(c.get("mode") == "batch" for c in calls if c["stage"] != "propose")  # nothing went online
    rows = journal(root)
    kept = [row for r in rows if r["ev"] == "results" for row in r["rows"].values()]
    assert kept and all(row["ok"] for row in kept)
    voids = [r for r in rows if r["ev"] == "void"]
    assert voids and all("queue" in r["why"] for r in voids)  # the limit was hit, and only that
    summary = " ".join(render_summary(out.snapshot).split())
    assert "batch queue was full" in summary, summary


def test_open_ended_rip_responses_and_judges_in_batch(tmp_path):
    """RIP with its K responses and every judge score in batches (`rip.mode: batch`), generation online:
    the run meets its targets and the responses and judges are billed as batch lines."""
    raw = yaml.safe_load((ROOT / "configs" / "open_ended.yaml").read_text())
    raw["seeds"]["path"] = str(ROOT / "data" / "self_instruct_prompts.jsonl")
    raw["propose"]["target"], raw["amplify"]["target"] = 3, 12
    raw["rip"].update(mode="batch", pilot=8, k=4)
    raw["output"]["dir"] = str(tmp_path / "run")
    raw["simulator"] = {"config": str(sim_yaml(tmp_path / "sim.yaml"))}
    raw["batch"] = {"max_size": 200, "max_wait_s": 0.2, "poll_s": 0.05, "poll_max_s": 0.2}
    raw["log_level"] = "warning"
    cfg = parse_config(raw)
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    root = Path(cfg.output.dir)
    accepted = Counter(r["stage"] for r in records(root) if r["status"] == "accepted")
    assert accepted["propose"] >= 3 and accepted["amplify"] >= 12
    modes = {(c["stage"], c.get("mode", "online")) for c in read_records(root / "ledger") if c["ev"] == "call"}
    assert {("amplify.respond", "batch"), ("amplify.judge", "batch")} <= modes
    assert ("amplify", "online") in modes and not any(m == "batch" for s, m in modes if s in ("propose", "amplify"))
