"""Prompt caching end to end on the sim's Anthropic wire: the layout's system prompt is marked
cache_control, the sim caches it, and the summary, ledger and report show the hit share and savings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agen.app.report import write_report
from agen.app.runner import EXIT_OK, run_session
from agen.app.summary import render_summary
from agen.config import parse_config
from agen.run.rundir import read_ledger
from conftest import quick_raw, sim_config_file

PRICES = {"sim-large": {"input": 2.5, "cached_input": 0.25, "cache_write": 3.125, "output": 10.0},
          "sim-small": {"input": 0.15, "cached_input": 0.015, "cache_write": 0.1875, "output": 0.6}}


def run(tmp_path: Path, layout: bool) -> tuple[Any, Path]:
    raw = quick_raw(tmp_path / str(layout), proposals=2, target=4)
    for m in raw["models"].values():
        m.update(provider="anthropic", price=PRICES[m["model"]])
    raw["vote"].update(template="verifiable_solve_worked.txt", k=6)
    raw["prompts"] = {"cache_layout": layout}
    raw["simulator"] = {"config": str(sim_config_file(tmp_path, latency_ms=1))}
    out = run_session(parse_config(raw), live=False)
    assert out.exit_code == EXIT_OK, out.message
    return out, Path(raw["output"]["dir"])


@pytest.mark.parametrize("layout", [True, False])
def test_anthropic_caches_the_layouts_static_prefix(tmp_path: Path, layout: bool) -> None:
    """With the layout, votes read the worked-example prefix from the cache (written once per vote
    model), the summary and report show a hit share and net savings, and the ledger's saved_usd adds
    up to them; without it (one user message, no breakpoint) Anthropic caches nothing."""
    out, root = run(tmp_path, layout)
    costs = out.snapshot["costs"]
    vote = costs["by_stage"]["amplify.vote"]
    text = " ".join(render_summary(out.snapshot).split())
    report = orjson.loads(write_report(root)[0].read_bytes())["cost"]["cache"]
    if not layout:
        assert costs["total"]["cached_input_tokens"] == costs["total"]["cache_write_tokens"] == 0
        assert "Prompt cache: 0% of prompt tokens" in text and report["hit_share"] == 0
        return
    assert vote["cached_input_tokens"] > 0.5 * vote["input_tokens"]
    assert costs["total"]["cache_write_tokens"] > 0 and costs["total"]["cache_saved_usd"] > 0
    share = costs["total"]["cache_hit_share"]
    assert f"Prompt cache: {share:.0%} of prompt tokens read from cache" in text
    assert report["hit_share"] == share and report["by_stage"]["amplify.vote"]["hit_share"] == vote["cache_hit_share"]
    saved = sum(c.get("saved_usd", 0.0) for c in read_ledger(root).calls)
    assert saved == pytest.approx(costs["total"]["cache_saved_usd"]) and report["saved_usd"] == pytest.approx(saved)
    assert "prompt tokens read from cache" in (root / "report.html").read_text()
