"""The reward-model client over real HTTP against the sim's /pooling: values, ledger hook, error handling."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from agen.config import ModelConfig, Price
from agen.errors import FatalRunError, TaskFailedError
from agen.providers.retry import RetryPolicy
from agen.providers.reward import RewardClient, parse_pooling, pooling_url
from agen.sim import SimServer, response_quality
from agen.types import CallRecord
from conftest import FAST, script

CFG: dict[str, Any] = {"models": {"rm": {**FAST, "reward_noise": 0.0}, "noisy": {**FAST, "reward_noise": 0.3}}}
PRICE = Price(input=1.0, output=0.0)
GOOD = ("Here is my response.\n- Concretely, the plan part should be handled first.\n"
        "- For example, take the plan and work through one case.\n- Specifically, each point ties back to it.\n"
        "- In practice, compare two options.\n- A useful check: list the edge cases.")
BAD = "Here is my response.\n- It depends on many factors.\n- This is a complex topic."


def client(sim: SimServer, http: aiohttp.ClientSession, calls: list[CallRecord], model: str = "rm",
           **cfg: Any) -> RewardClient:
    mc = ModelConfig(model=model, base_url=sim.openai_base_url, **cfg)
    return RewardClient("judge-rm", mc, session=http, base_url=sim.openai_base_url, price=PRICE,
                        on_call=calls.append, policy=RetryPolicy(max_retries=3, bad_response_retries=1, base_s=0.01))


def test_pooling_url_and_shapes() -> None:
    """The URL drops /v1; the reward is the last number of a scalar, [x] or per-token rows."""
    assert pooling_url("http://h:8000/v1/") == "http://h:8000/pooling"
    assert pooling_url("http://h:8000") == "http://h:8000/pooling"
    usage = {"prompt_tokens": 5, "total_tokens": 5, "completion_tokens": 0}
    for data, want in ((2.5, 2.5), ([1.5], 1.5), ([[0.1], [0.2], [3.0]], 3.0)):
        assert parse_pooling({"data": [{"index": 0, "data": data}], "usage": usage})[0] == want
    for doc in ({"data": [], "usage": usage}, {"data": [{"data": ["x"]}], "usage": usage}, {"data": [{"data": [1]}]}):
        with pytest.raises(ValueError):
            parse_pooling(doc)


async def test_reward_tracks_quality_and_reports_the_call(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A better response gets a higher reward; the attempt reaches on_call with stage, task id, usage and cost."""
    calls: list[CallRecord] = []
    c = client(sim, http, calls)
    good = await c.score("Plan a trip.", GOOD, stage="propose.rip", task_id="t1/r0")
    bad = await c.score("Plan a trip.", BAD, stage="propose.rip", task_id="t1/r1")
    assert good.value == pytest.approx(8 * (response_quality(GOOD) - 0.5))
    assert good.value > bad.value
    assert [(r.stage, r.task_id, r.outcome, r.status) for r in calls] == [
        ("propose.rip", "t1/r0", "ok", 200), ("propose.rip", "t1/r1", "ok", 200)]
    assert calls[0].usage.input_tokens > 0 and calls[0].usage.output_tokens == 0
    assert calls[0].cost_usd == pytest.approx(calls[0].usage.input_tokens / 1e6)
    assert good.request_id and calls[0].request_id == good.request_id


async def test_reward_is_deterministic(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A noisy reward model still gives the same number for the same text (like a real one)."""
    c = client(sim, http, [], model="noisy")
    a = await c.score("p", GOOD)
    b = await c.score("p", GOOD)
    assert a.value == b.value


async def test_capacity_and_throttle_are_retried(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A 500 and a 429 are retried; every attempt is reported with its outcome."""
    calls: list[CallRecord] = []
    await script(http, sim, "rm", {"status": 500}, {"status": 429, "retry_after_ms": 10})
    r = await client(sim, http, calls).score("p", GOOD, task_id="x")
    assert r.attempts == 3
    assert [(c.outcome, c.status) for c in calls] == [("capacity", 500), ("throttle", 429), ("ok", 200)]


async def test_bad_body_is_retried_then_fails_the_task(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """An unusable 200 is retried bad_response_retries times, then the task fails (not the run)."""
    calls: list[CallRecord] = []
    junk = {"body": {"object": "list", "data": []}}
    await script(http, sim, "rm", junk, junk)
    with pytest.raises(TaskFailedError):
        await client(sim, http, calls).score("p", GOOD)
    assert [c.outcome for c in calls] == ["bad_response", "bad_response"]


async def test_fatal_and_task_errors(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """400 fails the task; 401 is fatal and every later call refuses without a request."""
    calls: list[CallRecord] = []
    c = client(sim, http, calls)
    await script(http, sim, "rm", {"status": 400}, {"status": 401})
    with pytest.raises(TaskFailedError):
        await c.score("p", GOOD)
    with pytest.raises(FatalRunError):
        await c.score("p", GOOD)
    with pytest.raises(FatalRunError):
        await c.score("p", GOOD)
    assert [c.outcome for c in calls] == ["fatal_task", "fatal_run"]
    assert c.failed is not None


async def test_sim_pooling_input_form_and_errors(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """The sim's /pooling takes `input` (string or list) too, and rejects a conversation with no answer."""
    async with http.post(sim.base_url + "/pooling", json={"model": "rm", "input": [GOOD, BAD]}) as r:
        doc = await r.json()
    assert r.status == 200 and [d["index"] for d in doc["data"]] == [0, 1]
    assert doc["data"][0]["data"][0] > doc["data"][1]["data"][0]
    assert doc["usage"]["prompt_tokens"] > 0 and doc["usage"]["completion_tokens"] == 0
    async with http.post(sim.base_url + "/pooling",
                         json={"model": "rm", "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 400
    async with http.post(sim.base_url + "/pooling", json={"model": "nope", "input": "x"}) as r:
        assert r.status == 404
