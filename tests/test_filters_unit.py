"""Filter mechanics without HTTP: settling parallel calls, pilot freezing rules, seed categorisation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agen.config import CategoriesConfig, RipConfig
from agen.errors import FatalRunError, TaskFailedError
from agen.filters import gather_settled
from agen.filters.rip import RipFilter
from agen.gen import solutions
from agen.gen.rip_metrics import RipMetrics
from agen.types import Completion, Example, Usage


async def test_gather_settled_lets_every_call_end_then_raises_the_fatal_one():
    """No call is left running when one fails, and a run-fatal error wins over a task error."""
    ended = []

    async def ok(i: int) -> int:
        await asyncio.sleep(0.01 * i)
        ended.append(i)
        return i

    async def fail(exc: Exception) -> None:
        raise exc

    assert await gather_settled(ok(1), ok(2)) == [1, 2]
    with pytest.raises(FatalRunError):
        await gather_settled(fail(TaskFailedError("x")), ok(3), fail(FatalRunError("quota")))
    assert 3 in ended


def _rip(tmp_path: Path) -> RipFilter:
    cfg = RipConfig(model="p", judge_model="j", pilot=3, concurrency=3)
    return RipFilter(cfg, policy=None, judge=None, call=None, thresholds_path=tmp_path / "t.json")  # type: ignore[arg-type]


def test_pilot_cut_short_by_a_stop_is_never_frozen(tmp_path):
    """After abort_pilot (Ctrl-C, budget), finish_pilot must not freeze a half-collected pilot."""
    f = _rip(tmp_path)
    f._stage("propose").metrics.append(RipMetrics(5, 8, 3, 40, 6.5, 8))
    f.abort_pilot()
    f.finish_pilot()
    assert f.frozen_for("propose") is None and not (tmp_path / "t.json").exists()
    g = _rip(tmp_path)
    g._stage("propose").metrics.append(RipMetrics(5, 8, 3, 40, 6.5, 8))
    g.finish_pilot()  # attempts exhausted, no stop: freeze on what there is
    assert g.frozen_for("propose") is not None
    assert orjson.loads((tmp_path / "t.json").read_bytes())["stages"]["propose"]["pilot"] == 1


def test_each_stage_freezes_on_its_own_pilot_and_resumes_by_it(tmp_path):
    """Two stages with different score levels get their own thresholds, intervals and keep rates;
    a new filter on the same file judges each stage by them; a legacy file applies to all."""
    f = _rip(tmp_path)
    for stage, base in (("propose", 7.0), ("amplify", 4.0)):
        for i in range(3):
            f._stage(stage).metrics.append(RipMetrics(base + i, base + i + 1, 1, 30 + i, base + i, 8))
        f._freeze(stage)
    doc = orjson.loads((tmp_path / "t.json").read_bytes())["stages"]
    assert doc["propose"]["thresholds"]["min_reward"] == 9.0 and doc["amplify"]["thresholds"]["min_reward"] == 6.0
    for d in doc.values():
        lo, hi = d["interval_90"]["min_reward"]
        assert d["pilot"] == 3 and lo <= d["thresholds"]["min_reward"] <= hi and 0 <= d["pilot_keep_rate"] <= 1
    again = _rip(tmp_path)
    assert again.frozen_for("amplify") == f.frozen_for("amplify") != f.frozen_for("propose")
    assert again.min_in_flight("amplify") == 0 and again.min_in_flight("other") == 3
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "t.json").write_bytes(orjson.dumps(
        {"pilot": 3, "thresholds": {"min_reward": 1, "min_len": 2, "max_gap": "inf"}}))
    old = _rip(legacy)
    assert old.frozen_for("amplify") == old.frozen_for("propose") and old.min_in_flight("amplify") == 0


async def test_categorisation_survives_failed_calls_and_caches_results(tmp_path):
    """A seed whose call fails for good gets the keyword fallback; results are cached for resume."""
    from agen.engine.seed_categories import categorize_seeds

    class Client:
        name = "cheap"

    async def call(client, req):
        if "broken" in req.messages[0]["content"]:
            raise TaskFailedError("400 context too long")
        return Completion(("Category: Technical & Programming",), Usage(), 0.0, "cheap")

    seeds = [Example("s1", "Write a Python function that reverses a list.", None),
             Example("s2", "broken: write a poem about the sea", None)]
    cache = tmp_path / "cats.json"
    out = await categorize_seeds(seeds, CategoriesConfig(model="cheap"), Client(), call, cache)
    assert out[0].category == "technical_programming" and out[1].category  # fallback guess
    assert len(orjson.loads(cache.read_bytes())) == 2
    again = await categorize_seeds(seeds, CategoriesConfig(model="cheap"), Client(), None, cache)  # type: ignore[arg-type]
    assert [s.category for s in again] == [s.category for s in out]  # no call needed


# -- the solutions a vote record keeps --------------------------------------------------------

_PIECES = st.sampled_from([" ", "\n", "x", "Step.", "\\boxed{", "\\fbox{", "}", "{", "\\{", "42", "\\boxed{7}",
                           "\\boxed{3} then", "  \\boxed{\\frac{1}{2}}", "\\boxed"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=12).map("".join), max_size=9), st.integers(2, 60))
def test_keep_solutions_is_the_shortest_cuts_in_order(agreeing: list[str], cap: int) -> None:
    """Cutting only the solutions that can still be among the shortest keeps exactly what cutting
    all of them and sorting (stable: the earliest of equal lengths first) keeps."""
    old = solutions.MAX_SOLUTION_CHARS
    solutions.MAX_SOLUTION_CHARS = cap
    try:
        every = sorted((solutions.through_final_box(t) for t in agreeing), key=len)
        assert solutions.keep_solutions(agreeing) == [t for t in every if len(t) <= cap][:solutions.MAX_SOLUTIONS]
    finally:
        solutions.MAX_SOLUTION_CHARS = old
