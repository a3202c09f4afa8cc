"""`agen report`: figures of a real (tiny) run as self-contained HTML with SVG charts and as JSON."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from agen.app.cli import cli
from agen.config import parse_config
from agen.app.report import build_report, render_html, write_report
from agen.app.report_svg import hbars, nice_ticks, vbars
from agen.run.rundir import open_run_dir
from agen.app.runner import EXIT_OK, run_session
from agen.app.summary import cost_rows
from conftest import quick_raw, sim_config_file

KEYS = {"run", "headline", "funnel", "cost", "throughput", "latency", "votes"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    sim = sim_config_file(tmp, latency_ms=2)
    cfg = parse_config(quick_raw(tmp, proposals=4, target=12, simulator={"config": str(sim)}))
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    return Path(cfg.output.dir)


def test_report_writes_html_with_svg_charts_and_json(tiny_run: Path) -> None:
    """The report of a finished run holds every chart as inline SVG and nothing fetched from the network."""
    json_path, html_path = write_report(tiny_run)
    html = html_path.read_text()
    assert html.count("<svg") >= 8
    for needle in ("acceptance funnel", "Cost per accepted example", "Requests per second",
                   "latency of successful calls", "Share of votes agreeing"):
        assert needle in html, needle
    assert "<script" not in html and not re.search(r"(src|href)=['\"]?https?:", html)
    doc = orjson.loads(json_path.read_bytes())
    assert KEYS <= set(doc)


def test_report_figures_agree_with_the_summary_and_ledger(tiny_run: Path) -> None:
    """Accepted counts, spend and call counts in report.json equal the run's records and ledger."""
    rep = build_report(tiny_run)
    assert rep["headline"]["accepted"] == sum(f["accepted"] for f in rep["funnel"].values()) >= 16
    total = sum(p["cost_usd"] for p in rep["cost"]["parts"])
    assert rep["headline"]["cost_usd"] == pytest.approx(total)
    assert rep["headline"]["calls"] == sum(p["calls"] for p in rep["cost"]["parts"])
    assert sum(rep["throughput"]["bins"]["ok"]) == rep["throughput"]["outcomes"].get("ok", 0)
    for f in rep["funnel"].values():
        s = f["steps"]
        assert s["finished"] >= s["generated"] >= s["parsed"] >= s["unique"] >= s["judged"] >= s["accepted"]
    assert {"strong", "cheap"} <= set(rep["latency"])
    assert all(m["p50_s"] <= m["p99_s"] <= m["max_s"] for m in rep["latency"].values())
    v = rep["votes"]
    assert v["voted"] == sum(sum(x) for x in v["agree_share"].values())
    assert v["samples_used"] <= v["samples_full_vote"]
    kinds = [p["cost_by_token_kind"] for p in rep["cost"]["parts"]]
    assert all(k is not None and sum(k.values()) == pytest.approx(p["cost_usd"], rel=1e-6)
               for k, p in zip(kinds, rep["cost"]["parts"]))
    all_row = rep["cost"]["per_stage"][-1]
    assert all_row["stage"] == "all" and all_row["accepted"] == rep["headline"]["accepted"]


def test_cli_report_command(tiny_run: Path) -> None:
    """`agen report RUN_DIR` exits 0 and names the files it wrote."""
    res = CliRunner().invoke(cli, ["report", str(tiny_run)])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.output and (tiny_run / "report.json").exists()


def test_cli_report_on_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    """A folder without a run in it is a clear error (exit 2), not a traceback."""
    res = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_report_of_a_run_that_has_not_committed_anything(tmp_path: Path) -> None:
    """A just-started run (config, no shards, no ledger) still renders, with empty figures."""
    cfg = parse_config(quick_raw(tmp_path))
    open_run_dir(cfg, Path(cfg.output.dir))
    rep = build_report(Path(cfg.output.dir))
    assert rep["headline"]["accepted"] == 0 and rep["headline"]["cost_per_accepted_usd"] is None
    assert "No calls in the ledger yet" in render_html(rep)


def test_chart_helpers_draw_every_value() -> None:
    """hbars/vbars emit one rect per positive value, with its value in the hover title; ticks cover the max."""
    svg = hbars([("a", [("x", 1.0), ("y", 2.0)]), ("b", [("x", 0.0)])])
    assert svg.count("<rect") == 2 + 2 and "a — y: 2" in svg  # 2 bars + 2 legend swatches
    svg = vbars([0, 1, 2, 3], [("n", [1.0, 0.0, 3.0])], integer=True)
    assert svg.count("<rect") == 2
    assert nice_ticks(7)[-1] >= 7 and nice_ticks(3, integer=True) == [0, 1, 2, 3]
    assert cost_rows({"stages": {}, "costs": {"by_stage": {}, "total": {"cost_usd": 0.0}}}) == [("all", 0.0, 0, None)]


def test_rip_figures_split_metrics_by_outcome():
    """RIP runs get histograms of the three metrics, kept vs rejected, with the frozen thresholds."""
    from agen.app.report import rip_figures

    recs = [{"status": "accepted" if i % 2 else "rejected",
             "rip": {"metrics": {"min_reward": float(i), "min_reward_len": 10 * i, "gap": 9.0 - i},
                     "thresholds": {"min_reward": 4.0, "min_len": 40.0, "max_gap": 5.0}, "judge_failures": 1}}
            for i in range(10)]
    fig = rip_figures(recs, bins=5)
    assert fig["judged"] == 10 and fig["judge_failures"] == 10
    assert fig["thresholds"]["min_reward"] == 4.0
    for metric in ("min_reward", "min_reward_len", "gap"):
        h = fig["metrics"][metric]
        assert sum(h["accepted"]) == 5 and sum(h["rejected"]) == 5 and len(h["edges"]) == 6
