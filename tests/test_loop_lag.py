"""The loop-lag monitor: lag percentiles in flat memory, and a warning naming the code that blocked the loop."""

from __future__ import annotations

import asyncio
import time

from structlog.testing import capture_logs

from agen.engine.loop_lag import LagHistogram, LoopLagMonitor


def test_histogram_quantiles_bound_the_samples():
    h = LagHistogram()
    for _ in range(98):
        h.add(0.001)
    h.add(0.2)
    h.add(3.0)
    assert 0.001 <= h.quantile(0.5) < 0.0013  # a bucket's upper edge, within ~12%
    assert 0.2 <= h.quantile(0.99) < 0.23
    assert h.max_s == 3.0 and h.n == 100 and len(h.counts) < 200  # fixed size, whatever the run length


def _block_the_loop() -> None:
    time.sleep(0.6)  # stands for CPU work done on the loop


async def test_a_stall_is_reported_with_the_blocking_stack():
    mon = LoopLagMonitor(interval_s=0.01, warn_s=0.2)
    with capture_logs() as logs:
        mon.start()
        await asyncio.sleep(0.05)
        while mon.hist.n < 2:  # beating: a stall of the machine's own before the first beat would
            await asyncio.sleep(0.01)  # otherwise take the report the block is named in
        _block_the_loop()
        await asyncio.sleep(0.05)
        mon.close()
    blocked = [e for e in logs if e["event"] == "event_loop_blocked"]
    # one report names the blocking code; a loaded machine may add a stall of its own (the process
    # not scheduled for warn_s), which is reported too but names nothing of ours
    assert len([e for e in blocked if "_block_the_loop" in e["stack"]]) == 1
    snap = mon.snapshot()
    assert snap["stalls"] == len(blocked) and snap["max_ms"] >= 500 and snap["samples"] >= 2
