"""Run health over real HTTP: a run that cannot make progress stops (exit 5), says why, and resumes.

Each test breaks the simulated provider in one way the code must not assume away, checks the exit
code and the words of the final line, then heals the sim and resumes the same run directory to
its targets with `agen resume`.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import yaml
from click.testing import CliRunner

from agen.app.cli import cli
from agen.app.runner import EXIT_NO_PROGRESS, EXIT_OK, run_session
from agen.config import parse_config
from agen.engine.watchdog import Watchdog
from agen.config import WatchdogConfig
from agen.sim.process import SimProcess
from conftest import ROOT, quick_raw, records, sim_config_file

sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import write_run_config  # noqa: E402

NO_RETRIES = {"max_retries": 0}


def _no_retries(raw: dict) -> dict:
    for m in raw["models"].values():
        m.update(NO_RETRIES)
    return raw


def _resume(run_dir: Path):
    return CliRunner().invoke(cli, ["resume", str(run_dir), "--grace", "5"])


def _heal(sim_yaml: Path) -> None:
    """Rewrite the sim config the run directory's snapshot names with healthy, fast models."""
    sim_yaml.write_text(sim_config_file(sim_yaml.parent / "healthy", latency_ms=2).read_text())


def _accepted(run_dir: Path, stage: str) -> int:
    return sum(1 for r in records(run_dir) if r["stage"] == stage and r["status"] == "accepted")


def test_every_call_500_stops_with_exit_5_and_resumes(tmp_path):
    """error_5xx_p=1: every generation fails; the run stops naming the cause instead of ending 'done'."""
    (tmp_path / "healthy").mkdir()
    sim_yaml = sim_config_file(tmp_path, faults={"error_5xx_p": 1.0}, latency_ms=2)
    raw = _no_retries(quick_raw(tmp_path, proposals=4, target=12, simulator={"config": str(sim_yaml)}))
    out = run_session(parse_config(raw), live=False)
    assert out.exit_code == EXIT_NO_PROGRESS, out.message
    assert "generate_failed" in out.message and "every generation request fails" in out.message
    assert "base_url" in out.message and "agen resume" in out.message
    recs = records(tmp_path / "run")
    assert recs and all(r["status"] == "failed" for r in recs)
    _heal(sim_yaml)
    res = _resume(tmp_path / "run")
    assert res.exit_code == EXIT_OK, res.output
    assert _accepted(tmp_path / "run", "amplify") == 12


def test_same_question_every_time_stops_as_duplicates_and_resumes(tmp_path):
    """A proposer that ignores seed and temperature: every candidate is duplicate:exact, stop with advice."""
    text = ("Plan: reuse.\n[New Question Begin]A farmer has 3 cows and buys 4 more. How many cows does he "
            "have?[New Question End]\n[Final Answer to New Question Begin]\\boxed{7}[Final Answer to New "
            "Question End]")
    body = {"id": "chatcmpl-same", "object": "chat.completion", "created": 0, "model": "sim-large",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 40, "total_tokens": 90}}
    with SimProcess(sim_config_file(tmp_path, latency_ms=2)) as sim:
        req = urllib.request.Request(sim.base_url + "/sim/script", method="POST",
                                     data=json.dumps({"model": "sim-large", "responses": [{"body": body}] * 300}).encode())
        urllib.request.urlopen(req).close()
        cfg_path = write_run_config(tmp_path / "run.yaml", sim.base_url, tmp_path / "run", proposals=4, target=12)
        res = CliRunner().invoke(cli, ["run", str(cfg_path)])
        assert res.exit_code == EXIT_NO_PROGRESS, res.output
        assert "duplicate:*" in res.output and "duplicate:exact" in res.output
        assert "raise temperature" in res.output
        sim.reset()
        res = _resume(tmp_path / "run")
        assert res.exit_code == EXIT_OK, res.output
    assert _accepted(tmp_path / "run", "propose") == 4 and _accepted(tmp_path / "run", "amplify") == 12


def test_outputs_that_never_parse_stop_with_exit_5_and_resume(tmp_path):
    """format_broken_p=1 (a model that ignores the markers): stop as parse:*, resume once it is fixed."""
    (tmp_path / "healthy").mkdir()
    sim_yaml = sim_config_file(tmp_path, latency_ms=2, format_broken_p=1.0)
    raw = quick_raw(tmp_path, proposals=4, target=12, simulator={"config": str(sim_yaml)})
    out = run_session(parse_config(raw), live=False)
    assert out.exit_code == EXIT_NO_PROGRESS, out.message
    assert "parse:*" in out.message and "do not parse" in out.message and "max_tokens" in out.message
    _heal(sim_yaml)
    res = _resume(tmp_path / "run")
    assert res.exit_code == EXIT_OK, res.output


def test_watchdog_unit_families_share_and_reachability():
    wd = Watchdog(WatchdogConfig(window=10, share=0.9))
    rec = lambda reason, status="rejected": {"stage": "amplify", "reason": reason, "status": status}  # noqa: E731
    for _ in range(9):
        assert wd.observe(rec("vote:majority_disagrees")) is None  # a strict filter is slow, not stuck
    for _ in range(7):
        assert wd.observe(rec("duplicate:near")) is None
    assert wd.observe(rec("duplicate:exact")) is None  # 8 of the last 10
    stall = wd.observe(rec("duplicate:near"))
    assert stall is not None and stall.cause == "duplicate" and "duplicate:near" in stall.message
    # reachability: 1 accepted of 20 finished this session, 50 attempts left, 100 wanted
    wd2 = Watchdog(WatchdogConfig(window=10, share=1.0))
    for i in range(20):
        wd2.observe(rec("vote:agree", "accepted") if i == 0 else rec("vote:majority_disagrees"))
    stall = wd2.check_reachable("amplify", 1, 100, 50, 70, "amplify.max_attempts")
    assert stall is not None and "amplify.max_attempts=70" in stall.message
    assert wd2.check_reachable("amplify", 1, 3, 50, 70, "amplify.max_attempts") is None


def test_watchdog_reads_its_window_in_admission_order():
    """A wide stage's first commits are its fast rejections (a parse failure needs no vote): read in
    commit order, 38 of the first 40 were parse:* and a healthy 256-wide run stopped (exit 5). In
    admission order they are spread among the votes still running; a model that never parses still
    stops."""
    rec = lambda i, reason: {"stage": "amplify", "id": f"f-amplify-{i:08d}", "reason": reason,  # noqa: E731
                             "status": "rejected"}
    wd = Watchdog(WatchdogConfig(window=40, share=0.9))
    for i in range(256):
        wd.admitted("amplify", i)
    broken = set(range(0, 256, 12))  # ~8% of the outputs do not parse: they commit first
    for i in sorted(broken):
        assert wd.observe(rec(i, "parse:no_question")) is None
    for i in range(256):
        if i not in broken:
            assert wd.observe(rec(i, "vote:cannot_win")) is None
    assert len(wd._held["amplify"]) == 0 and not wd._admitted["amplify"]
    never = Watchdog(WatchdogConfig(window=40, share=0.9))
    for i in range(100):
        never.admitted("amplify", i)
    stalls = [never.observe(rec(i, "parse:no_question")) for i in reversed(range(100))]
    assert stalls[-1] is not None and stalls[-1].cause == "parse"


def test_watchdog_section_is_validated_and_resumable(tmp_path):
    raw = quick_raw(tmp_path, watchdog={"window": 2})
    try:
        parse_config(raw)
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        assert "watchdog.window" in str(exc)
    else:
        raise AssertionError("window=2 accepted")
    assert yaml.safe_dump(quick_raw(tmp_path, watchdog={"window": 30, "share": 0.9}))
