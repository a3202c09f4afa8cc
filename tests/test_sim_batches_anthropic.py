"""The sim's Anthropic Message Batches API, driven by the official `anthropic` SDK unchanged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from agen.sim import SimServer, start_sim

LIMITED = {"latency_ms": {"median": 0}, "rpm": 1, "tpm": 100}  # online: one tiny request a minute
CFG = {"batch": {"delay_s": 0.3}, "models": {"sim-small": LIMITED, "sim-large": {"latency_ms": {"median": 0}}}}
QUESTION = "Solve the problem. Tom has 3 apples and buys 4 more. How many apples does he have?"


def req(cid: str, model: str = "sim-small", **params: Any) -> dict[str, Any]:
    return {"custom_id": cid, "params": {"model": model, "max_tokens": 400, "system": "You solve problems.",
                                         "messages": [{"role": "user", "content": QUESTION}], **params}}


def client(sim: SimServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="x", max_retries=0)


async def wait_end(c: anthropic.AsyncAnthropic, bid: str) -> Any:
    deadline = time.monotonic() + 60  # only a batch that never ends gets there
    while time.monotonic() < deadline:
        b = await c.messages.batches.retrieve(bid)
        if b.processing_status == "ended":
            return b
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {bid} never ended")


async def results(c: anthropic.AsyncAnthropic, bid: str) -> dict[str, Any]:
    return {r.custom_id: r.result async for r in await c.messages.batches.results(bid)}


async def test_sdk_batch_round_trip_matches_online(sim: SimServer) -> None:
    """batches.create -> retrieve until ended -> results: each request succeeded with the message the online
    endpoint gives the same params (usage included), models may mix, counts stay `processing` until the end,
    and none of it is charged to the online RPM/TPM (1 request, 100 tokens a minute here)."""
    async with client(sim) as c:
        # Anthropic has no seed, but the sim honours one in the body (an unseeded sample is just the sim's next
        # one, and lines are answered in an order of their own), so `big` can be compared with online below
        reqs = [req("big", model="sim-large", seed=5)] + [req(f"q-{i}", temperature=0.7) for i in range(4)]
        b = await c.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
        assert b.type == "message_batch" and b.processing_status == "in_progress" and b.results_url is None
        assert b.request_counts.processing == 5 and b.request_counts.succeeded == 0
        assert b.expires_at > b.created_at
        done = await wait_end(c, b.id)
        assert done.request_counts.succeeded == 5 and done.request_counts.processing == 0
        assert done.ended_at is not None and done.results_url.endswith(f"/v1/messages/batches/{b.id}/results")
        got = await results(c, b.id)
    assert set(got) == {"q-0", "q-1", "q-2", "q-3", "big"}
    assert all(r.type == "succeeded" for r in got.values())
    msg = got["big"].message
    assert msg.model == "sim-large" and msg.content[0].text and msg.usage.output_tokens > 0
    async with await start_sim({"models": {"sim-large": {"latency_ms": {"median": 0}}}}) as online:
        async with client(online) as c2:
            params = dict(reqs[0]["params"])
            seed = params.pop("seed")
            same = await c2.messages.create(**params, extra_body={"seed": seed})
    assert same.content[0].text == msg.content[0].text
    assert (same.usage.input_tokens, same.usage.output_tokens) == (msg.usage.input_tokens, msg.usage.output_tokens)
    async with aiohttp.ClientSession() as http, http.get(sim.base_url + "/sim/batch_stats") as r:
        s = orjson.loads(await r.read())
    assert s["submitted"] == {"anthropic": 1} and s["by_model"]["sim-small"]["lines"] == 4
    assert s["by_model"]["sim-large"]["output_tokens"] == msg.usage.output_tokens


async def test_errored_lines(sim: SimServer) -> None:
    """params the online endpoint refuses (no max_tokens, an unknown model) are `errored` with its error body."""
    async with client(sim) as c:
        bad = req("no-max")
        del bad["params"]["max_tokens"]
        b = await c.messages.batches.create(requests=[req("ok"), bad, req("nomodel", model="claude-nope")])  # type: ignore[list-item]
        done = await wait_end(c, b.id)
        got = await results(c, b.id)
    assert (done.request_counts.succeeded, done.request_counts.errored) == (1, 2)
    assert got["ok"].type == "succeeded"
    assert got["no-max"].type == "errored" and got["no-max"].error.error.type == "invalid_request_error"
    assert got["nomodel"].error.error.type == "not_found_error"


async def test_create_validates_custom_ids(sim: SimServer) -> None:
    """A custom_id that breaks the pattern or repeats, or an empty list: a 400 at create, nothing submitted."""
    async with client(sim) as c:
        for reqs in ([req("a b")], [req("x"), req("x")], [req("x" * 65)], []):
            with pytest.raises(anthropic.BadRequestError):
                await c.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
        with pytest.raises(anthropic.NotFoundError):
            await c.messages.batches.retrieve("msgbatch_nope")
    async with aiohttp.ClientSession() as http, http.get(sim.base_url + "/sim/batch_stats") as r:
        assert orjson.loads(await r.read())["submitted"] == {}


async def test_results_before_the_end_are_refused(sim: SimServer) -> None:
    """The SDK itself refuses results without a results_url; the endpoint answers 400 while in progress."""
    async with client(sim) as c:
        b = await c.messages.batches.create(requests=[req("a")])  # type: ignore[list-item]
        with pytest.raises(anthropic.AnthropicError):
            await c.messages.batches.results(b.id)
        async with aiohttp.ClientSession() as http, http.get(
                f"{sim.base_url}/v1/messages/batches/{b.id}/results", headers={"anthropic-version": "2023-06-01"}) as r:
            assert r.status == 400
        await wait_end(c, b.id)


async def test_cancel_and_delete() -> None:
    """cancel -> canceling -> ended; unanswered requests are `canceled`; delete works once ended only."""
    async with await start_sim({"batch": {"delay_s": 2.0}, "models": {"sim-small": LIMITED}}) as s, client(s) as c:
        b = await c.messages.batches.create(requests=[req(f"c{i}") for i in range(40)])  # type: ignore[arg-type]
        with pytest.raises(anthropic.BadRequestError):
            await c.messages.batches.delete(b.id)
        await asyncio.sleep(0.5)
        cb = await c.messages.batches.cancel(b.id)
        assert cb.processing_status == "canceling" and cb.cancel_initiated_at is not None
        done = await wait_end(c, b.id)
        got = await results(c, b.id)
        assert done.request_counts.canceled > 0
        assert done.request_counts.canceled + done.request_counts.succeeded == 40
        assert sum(r.type == "canceled" for r in got.values()) == done.request_counts.canceled
        d = await c.messages.batches.delete(b.id)
        assert d.id == b.id and d.type == "message_batch_deleted"
        with pytest.raises(anthropic.NotFoundError):
            await c.messages.batches.retrieve(b.id)


async def test_expired_and_line_errors() -> None:
    """expire_p 1 with expire_done_share 0.5: half succeeded, half `expired`; line_error_p 1: every request
    errored with api_error."""
    cfg = {"batch": {"delay_s": 0.2, "expire_p": 1.0, "expire_done_share": 0.5}, "models": {"sim-small": LIMITED}}
    async with await start_sim(cfg) as s, client(s) as c:
        b = await c.messages.batches.create(requests=[req(f"e{i}") for i in range(10)])  # type: ignore[arg-type]
        done = await wait_end(c, b.id)
        got = await results(c, b.id)
    assert (done.request_counts.succeeded, done.request_counts.expired) == (5, 5)
    assert sorted(r.type for r in got.values()) == ["expired"] * 5 + ["succeeded"] * 5
    async with await start_sim({"batch": {"delay_s": 0.1, "line_error_p": 1.0},
                                "models": {"sim-small": LIMITED}}) as s, client(s) as c:
        b = await c.messages.batches.create(requests=[req("x"), req("y")])  # type: ignore[arg-type]
        await wait_end(c, b.id)
        got = await results(c, b.id)
    assert {r.error.error.type for r in got.values()} == {"api_error"}


async def test_list_pages(sim: SimServer) -> None:
    """batches.list pages newest first (limit, after_id); the SDK's auto-pagination sees every batch."""
    async with client(sim) as c:
        ids = [(await c.messages.batches.create(requests=[req(f"l{i}")])).id for i in range(5)]  # type: ignore[list-item]
        page = await c.messages.batches.list(limit=2)
        assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
        assert [b.id async for b in c.messages.batches.list(limit=2)] == ids[::-1]
        for bid in ids:
            await wait_end(c, bid)


async def test_enqueued_token_limit_is_a_429() -> None:
    """max_enqueued_tokens: a batch that would exceed what unfinished batches hold is refused at create."""
    cfg = {"models": {"sim-small": {**LIMITED, "batch": {"delay_s": 0.3, "max_enqueued_tokens": 60}}}}
    async with await start_sim(cfg) as s, client(s) as c:
        first = await c.messages.batches.create(requests=[req("a")])  # type: ignore[list-item]
        with pytest.raises(anthropic.RateLimitError):
            await c.messages.batches.create(requests=[req("b"), req("c")])  # type: ignore[arg-type]
        await wait_end(c, first.id)
        await c.messages.batches.create(requests=[req("b")])  # type: ignore[list-item]


async def test_needs_key_and_version() -> None:
    async with await start_sim({"require_api_key": "sk-sim-secret", "models": {"sim-small": LIMITED}}) as s:
        async with anthropic.AsyncAnthropic(base_url=s.base_url, api_key="wrong", max_retries=0) as c:
            with pytest.raises(anthropic.AuthenticationError):
                await c.messages.batches.list()
        async with aiohttp.ClientSession() as http, http.get(s.base_url + "/v1/messages/batches",
                                                             headers={"x-api-key": "sk-sim-secret"}) as r:
            assert r.status == 400  # no anthropic-version


async def test_results_order_is_not_request_order(sim: SimServer) -> None:
    """As the docs warn, results come in an order of their own: only custom_id ties them to requests."""
    async with client(sim) as c:
        b = await c.messages.batches.create(requests=[req(f"o{i:02d}") for i in range(30)])  # type: ignore[arg-type]
        await wait_end(c, b.id)
        order = list(await results(c, b.id))
    assert sorted(order) == [f"o{i:02d}" for i in range(30)] and order != sorted(order)
