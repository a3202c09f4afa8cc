"""Answer equivalence off the loop: a pathological comparison completes or times out in a worker
process while HTTP requests to the simulated provider keep flowing on the same event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from agen.filters.equivalence_pool import EquivalencePool, VoteFeed
from agen.gen.vote import Tally

# The sim runs in this process, on this event loop: if the comparison blocked the loop, no
# request could be answered until it ended.
CFG: dict[str, Any] = {"models": {"sim-small": {"latency_ms": {"median": 0, "sigma": 0}}}}
HARD = "2^{2^{2^{2^{10}}}}"  # math-verify gives up on this against "3" only by its own timeouts (~10 s)


async def test_pathological_pair_times_out_while_requests_keep_flowing(sim, http):
    """The comparison runs in a worker; meanwhile the loop answers and sends requests; past the
    time limit the sample is undecidable: counted towards K for no class, listed with its answer."""
    pool = EquivalencePool(workers=2, timeout_s=1.0)
    try:
        feed = VoteFeed(Tally("3", 10, 0.5), "3", pool)
        hard = asyncio.create_task(feed.add(HARD))
        flowed = 0
        body = {"model": "sim-small", "messages": [{"role": "user", "content": "Solve: 2+2?"}], "max_tokens": 16}
        while not hard.done():
            async with http.post(sim.base_url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200
                flowed += 1
        await hard
        assert flowed >= 5  # requests completed while the comparison was under way
        if feed.undecidable:
            assert feed.undecidable == [{"sample": 0, "answer": HARD}] and feed.tally.votes == (None,)
            assert pool.stats["timeouts"] == 1
        else:  # a fast machine decided it in time: then it is simply another answer
            assert feed.tally.votes == (HARD,)
        # The same answer again, in this vote or another, is not tried again: undecidable at once.
        asked = pool.stats["offloaded"]
        if feed.undecidable:
            await feed.add(HARD)
            other = VoteFeed(Tally("7", 10, 0.5), "7", pool)
            await other.add(HARD)
            assert pool.stats["offloaded"] == asked and len(feed.undecidable) == 2 and len(other.undecidable) == 1
    finally:
        await pool.aclose()


async def test_hard_answers_are_decided_in_the_pool_and_numbers_inline():
    """A radical equal to the candidate joins its class via a worker; plain numbers never leave the loop."""
    # a limit no ordinary comparison reaches even on a loaded machine, where a nice-10 worker's
    # first comparison can take seconds of wall time: this checks where answers are decided
    pool = EquivalencePool(workers=1, timeout_s=60)
    try:
        feed = VoteFeed(Tally("2", 3, 0.5), "2", pool)
        await feed.add("2.0")
        await feed.add("5")
        assert pool.stats["offloaded"] == 0  # numbers among numbers: the µs path
        await feed.add("\\sqrt{4}")
        assert pool.stats["offloaded"] == 1
        decision = feed.tally.decision()
        assert decision is not None and decision.accepted and decision.agree == 2 and decision.samples == 3
        assert feed.undecidable == []
    finally:
        await pool.aclose()


async def test_a_worker_starved_of_cpu_is_waited_for_not_killed(monkeypatch):
    """The limit is the worker's CPU time: a worker that gets no CPU (SIGSTOP stands for a loaded
    machine, where the nice-10 workers wait for a core) past the limit in wall time still decides
    its sample once it runs, instead of being killed and the sample called undecidable."""
    import os
    import signal

    from agen.filters import equivalence_pool

    # 2 s of CPU; the wall-time give-up moved far past the 4 s stop, so a slow machine's own
    # delays after SIGCONT are not what is tested
    monkeypatch.setattr(equivalence_pool, "WALL_FACTOR", 20)
    pool = EquivalencePool(workers=1)
    try:
        feed = VoteFeed(Tally("2", 3, 0.5), "2", pool)
        limit, pool.timeout_s = pool.timeout_s, 60.0  # the first comparison imports the LaTeX parser
        await feed.add("\\sqrt{4}")  # starts the worker and warms it up
        pool.timeout_s = limit
        worker = pool._idle[0]
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            pending = asyncio.create_task(feed.add("\\frac{4}{\\sqrt{4}}"))
            await asyncio.sleep(2 * pool.timeout_s)  # twice the limit in wall time, no CPU at all
            assert not pending.done()
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        assert await pending is True
        assert feed.undecidable == [] and pool.stats["timeouts"] == 0 and pool.stats["started"] == 1
    finally:
        await pool.aclose()
