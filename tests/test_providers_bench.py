"""Smoke run of the rate-limit benchmark (--quick): it runs end to end and reports every scenario."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_rate_limits_benchmark_quick_smoke() -> None:
    """benchmarks/rate_limits.py --quick prints a table and a JSON line with every scenario (no timing asserted)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rate_limits.py"), "--quick"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)  # a hang guard
    assert out.returncode == 0, out.stderr[-2000:]
    doc = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert doc["benchmark"] == "rate_limits"
    assert set(doc["results"]) == {"rpm", "tpm", "rpm-3x", "rpm-3x-aimd", "rpm-asyncio-throttle"}
    assert all(r["ok"] > 0 for r in doc["results"].values())
    assert set(doc["wild"]) == {"tpm-usage", "tpm-usage-naive", "tpm-upfront", "fixed-2proc",
                                "ignore-n"}
    assert doc["wild"]["fixed-2proc"]["failed"] == 0  # throttling never fails a call, whatever the timing
    assert doc["wild"]["ignore-n"]["seeds_inside_k"] is True
