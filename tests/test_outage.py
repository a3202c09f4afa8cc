"""Bursty server errors over real HTTP: an outage (every answer a 5xx) stops the run resumably with
exit 6; a short outage that recovers does not stop it. The sim's `faults.outage` answers every
request of a model with one status for a window, which per-request fault draws cannot do."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from agen.app.cli import cli
from agen.app.runner import EXIT_OK, EXIT_UNREACHABLE, run_session
from agen.config import parse_config
from agen.run.shards import read_records
from conftest import quick_raw, records, sim_config_file


def _raw(tmp_path: Path, sim_yaml: Path, failing_after_s: float) -> dict:
    raw = quick_raw(tmp_path, proposals=4, target=12, simulator={"config": str(sim_yaml)})
    for m in raw["models"].values():
        m["failing_after_s"] = failing_after_s
    return raw


def _statuses(run_dir: Path) -> list[int | None]:
    return [r["status"] for r in read_records(run_dir / "ledger") if r["ev"] == "call"]


def test_an_outage_stops_the_run_with_exit_6_and_it_resumes(tmp_path):
    (tmp_path / "sim").mkdir()
    sim_yaml = sim_config_file(tmp_path / "sim", latency_ms=2,
                               faults={"outage": {"after_s": 0, "for_s": 3600, "status": 503}})
    out = run_session(parse_config(_raw(tmp_path, sim_yaml, 1.5)), live=False)
    assert out.exit_code == EXIT_UNREACHABLE, out.message
    assert "failing" in out.message and "server error" in out.message and "HTTP 503" in out.message
    assert "agen resume" in out.message
    assert set(_statuses(tmp_path / "run")) == {503}
    assert not [r for r in records(tmp_path / "run") if r["status"] == "failed"]  # no task burnt its retries
    sim_yaml.write_text(sim_config_file(tmp_path, latency_ms=2).read_text())  # the endpoint recovers
    res = CliRunner().invoke(cli, ["resume", str(tmp_path / "run"), "--grace", "5"])
    assert res.exit_code == EXIT_OK, res.output


def test_a_short_outage_that_recovers_does_not_stop_the_run(tmp_path):
    """A 1 s outage against the default 30 s `failing_after_s`: only a 5xx answered at least 30 s
    after the first one, with no other answer between, could stop the run. (With 5 s, a loaded
    machine's backed-off retries and event-loop stalls came close enough to stop it.)"""
    sim_yaml = sim_config_file(tmp_path, latency_ms=2, faults={"outage": {"after_s": 0, "for_s": 1.0, "status": 500}})
    out = run_session(parse_config(_raw(tmp_path, sim_yaml, 30.0)), live=False)
    assert out.exit_code == EXIT_OK, out.message
    statuses = _statuses(tmp_path / "run")
    assert 500 in statuses and 200 in statuses  # it did see the outage, and came through it
