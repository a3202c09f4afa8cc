"""Reading the ledger for reports and status streams it: a long run's calls are never all in memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import orjson

from agen.app.report import ledger_figures
from agen.run.rundir import read_ledger


def _write_ledger(root: Path, calls: int) -> None:
    folder = root / "ledger"
    folder.mkdir(parents=True)
    with open(folder / "part-00000.jsonl", "wb") as f:
        for i in range(calls):
            f.write(orjson.dumps({"ev": "begin", "session": 0, "req": i}) + b"\n")
            f.write(orjson.dumps({"ev": "call", "session": 0, "ts": 1000.0 + i / 100, "model": f"m{i % 2}",
                                  "stage": "amplify.vote", "task_id": f"t-{i:08d}/v0", "outcome":
                                  "ok" if i % 10 else "throttle", "status": 200 if i % 10 else 429,
                                  "usage": {"input": 300, "output": 100}, "cost_usd": 1e-5,
                                  "latency_s": 0.05 + (i % 7) / 100, "request_id": f"req-{i}"}) + b"\n")
            if i != 7:  # request 7 never ended: billing unknown
                f.write(orjson.dumps({"ev": "end", "session": 0, "req": i}) + b"\n")


def test_read_ledger_and_figures_hold_a_few_bytes_a_call(tmp_path: Path) -> None:
    """6,000 calls (~7.5 MB as dicts) are read and turned into report figures within 1.5 MB of
    Python allocations; the figures count every call and the one open request."""
    _write_ledger(tmp_path, 6_000)
    tracemalloc.start()
    try:
        ledger = read_ledger(tmp_path)
        throughput, latency = ledger_figures(ledger.calls, [1010.0, 1100.0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * 2**20, peak
    assert ledger.billing_unknown == 1 and list(ledger.open_requests) == ["0/7"]
    assert throughput["calls"] == 6_000 and throughput["throttled_429"] == 600
    assert sum(throughput["bins"]["ok"]) == 5_400 and sum(throughput["bins"]["accepted"]) == 2
    assert latency["m0"]["n"] + latency["m1"]["n"] == 5_400
    assert len(ledger.calls) == 6_000 and len(ledger.calls) == sum(1 for _ in ledger.calls)  # re-iterable
