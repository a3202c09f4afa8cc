"""Endpoints in the wild, end to end: whole runs against sim quirks (truncation, ignored `n`)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import orjson

from agen.app.report import write_report
from agen.app.runner import EXIT_NO_PROGRESS, EXIT_OK, run_session
from agen.app.summary import render_summary
from agen.run.rundir import read_ledger
from conftest import quick_cfg, records, sim_config_file


def test_truncated_generations_are_rejected_as_truncated_with_a_hint(tmp_path: Path) -> None:
    """Proposals cut at max_tokens are `parse:truncated` with finish_reason `length`, never voted on,
    and the summary says which stage to raise max_tokens for."""
    cfg = quick_cfg(tmp_path, proposals=3, target=0, propose={"max_tokens": 40, "max_attempts": 10},
                    simulator={"config": str(sim_config_file(tmp_path, latency_ms=1))})
    out = run_session(cfg, live=False)
    assert out.exit_code in (EXIT_OK, EXIT_NO_PROGRESS), out.message  # max_attempts may end it short
    recs = records(Path(cfg.output.dir))
    cut = [r for r in recs if r["reason"] == "parse:truncated"]
    assert cut and all(r["finish_reason"] == "length" and "vote" not in r for r in cut)
    assert all(r.get("finish_reason") == "stop" for r in recs if r["reason"].startswith("vote:"))
    share = round(100 * len(cut) / len(recs))
    assert f"{share}% of propose outputs hit max_tokens=40 — raise it" in render_summary(out.snapshot)


def test_ignored_n_keeps_votes_inside_k(tmp_path: Path) -> None:
    """A server that ignores `n`: learned after the first vote request; every candidate's vote uses
    at most K requests and sample ids (seeds) /v0../v{K-1}; the fact shows in the summary."""
    k = 6
    cfg = quick_cfg(tmp_path, proposals=6, target=0, vote={"k": k}, propose={"max_attempts": 8},
                    simulator={"config": str(sim_config_file(tmp_path, latency_ms=1, quirks={"ignore_n": True}))})
    out = run_session(cfg, live=False)
    assert out.exit_code in (EXIT_OK, EXIT_NO_PROGRESS), out.message  # max_attempts may end it short
    root = Path(cfg.output.dir)
    voted = [r for r in records(root) if r["reason"].startswith("vote:")]
    assert voted
    per_candidate: dict[str, list[int]] = defaultdict(list)
    for c in read_ledger(root).calls:
        m = re.fullmatch(r"(.+)/v(\d+)", c["task_id"])
        if c["stage"].endswith(".vote") and m:
            per_candidate[m.group(1)].append(int(m.group(2)))
    for r in voted:
        sample_ids = per_candidate[r["id"]]
        assert len(sample_ids) <= k and all(0 <= j < k for j in sample_ids), (r["id"], sample_ids)
        assert r["vote"]["samples"] + r["vote"]["truncated"] <= k
    vote_model = cfg.vote.model
    assert out.snapshot["endpoints"][vote_model]["supports_n"] is False
    assert "supports_n=False" in render_summary(out.snapshot)
    json_path, html_path = write_report(root)
    assert orjson.loads(json_path.read_bytes())["endpoints"][vote_model]["supports_n"] is False
    assert "<h2>Endpoints</h2>" in html_path.read_text()


def test_endpoint_dying_mid_run_stops_with_exit_6_and_resumes(tmp_path: Path) -> None:
    """No preflight, nothing listening: the breaker stops the run (exit 6) naming the endpoint and the
    last error, and the run directory is left to resume."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    models = {name: {"provider": "openai", "model": wire, "base_url": url, "unreachable_after_s": 0.5}
              for name, wire in (("strong", "sim-large"), ("cheap", "sim-small"))}
    cfg = quick_cfg(tmp_path, proposals=3, target=0, models=models)
    out = run_session(cfg, live=False, probe=False)
    assert out.exit_code == 6, out.message
    assert url in out.message and "ConnectionRefusedError" in out.message and "agen resume" in out.message
    assert (Path(cfg.output.dir) / "run.json").exists()
