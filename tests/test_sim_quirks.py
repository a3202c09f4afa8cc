"""The sim's per-model quirks over real HTTP: each breaks one assumption a client might make."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import openai
import orjson

from agen.sim import SimServer
from agen.sim.model import count_tokens
from conftest import FAST

LONG = "Write a long story about owls. " * 3
CFG: dict[str, Any] = {"models": {
    "plain": {**FAST, "tpm": 100_000, "rpm": 1000},
    "no_n": {**FAST, "quirks": {"ignore_n": True}},
    "no_seed": {**FAST, "quirks": {"ignore_seed": True}},
    "usage": {**FAST, "tpm": 100_000, "quirks": {"charges": "usage"}},
    "fixed": {**FAST, "rpm": 3, "quirks": {"window": "fixed", "window_s": 60, "headers": "litellm"}},
    "bare": {**FAST, "rpm": 1, "quirks": {"headers": "none"}},
}}


async def post(http: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any], path: str = "/v1/chat/completions",
               headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with http.post(sim.base_url + path, json=body, headers=headers) as r:
        return r.status, orjson.loads(await r.read()), r.headers


def chat(model: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": LONG}], "max_tokens": 400, **kw}


async def test_ignore_n_returns_one_choice(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s, d, _ = await post(http, sim, chat("no_n", n=3, seed=5))
    assert s == 200 and len(d["choices"]) == 1
    s, d, _ = await post(http, sim, chat("plain", n=3, seed=5))
    assert len(d["choices"]) == 3


async def test_ignore_seed_is_not_repeatable(sim: SimServer, http: aiohttp.ClientSession) -> None:
    texts = {(await post(http, sim, chat("no_seed", seed=7, temperature=1.0)))[1]["choices"][0]["message"]["content"]
             for _ in range(4)}
    assert len(texts) > 1
    same = {(await post(http, sim, chat("plain", seed=7)))[1]["choices"][0]["message"]["content"] for _ in range(3)}
    assert len(same) == 1


async def test_usage_charging_reports_real_usage(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A usage-charging server's remaining drops by prompt + real completion, not by max_tokens."""
    t0 = time.monotonic()
    _, d1, h1 = await post(http, sim, chat("usage", max_tokens=4000))
    _, d2, h2 = await post(http, sim, chat("usage", max_tokens=4000))
    refill = 100_000 / 60 * (time.monotonic() - t0) + 2  # tokens refilled between the two reports, at most
    drop = int(h1["x-ratelimit-remaining-tokens"]) - int(h2["x-ratelimit-remaining-tokens"])
    used = d2["usage"]["total_tokens"]
    assert used < 4000 and used - refill <= drop <= used + 2
    _, _, p1 = await post(http, sim, chat("plain", max_tokens=4000))
    _, _, p2 = await post(http, sim, chat("plain", max_tokens=4000))
    assert int(p1["x-ratelimit-remaining-tokens"]) - int(p2["x-ratelimit-remaining-tokens"]) >= 4000 - 5


async def test_fixed_window_litellm_429(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """LiteLLM-style: no reset header, 429 names only llm_provider-retry-after, remaining goes negative."""
    seen = []
    for _ in range(5):
        s, d, h = await post(http, sim, chat("fixed"))
        seen.append((s, int(h["x-ratelimit-remaining-requests"])))
        assert not any(k.startswith("x-ratelimit-reset") for k in h)
        if s == 429:
            assert "retry-after" not in h and "retry-after-ms" not in h
            assert 0 < int(h["llm_provider-retry-after"]) <= 60
    assert [s for s, _ in seen] == [200, 200, 200, 429, 429]
    assert [r for _, r in seen] == [2, 1, 0, -1, -2]


async def test_no_rate_limit_headers(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s1, _, h1 = await post(http, sim, chat("bare"))
    s2, _, h2 = await post(http, sim, chat("bare"))
    assert (s1, s2) == (200, 429)
    for h in (h1, h2):
        assert not any(k.lower().startswith(("x-ratelimit", "retry-after", "llm_provider")) for k in h)


async def test_truncation_both_wires(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, d, _ = await post(http, sim, chat("plain", max_tokens=3, n=2))
    assert [c["finish_reason"] for c in d["choices"]] == ["length", "length"]
    assert d["usage"]["completion_tokens"] == 6
    _, a, _ = await post(http, sim, chat("plain", max_tokens=3), "/v1/messages", {"anthropic-version": "2023-06-01"})
    assert a["stop_reason"] == "max_tokens" and a["usage"]["output_tokens"] == 3


async def test_openai_sdk_streaming(sim: SimServer) -> None:
    """The official SDK's streaming call assembles the same text and usage as the non-streamed answer."""
    async with openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0) as client:
        kw: dict[str, Any] = {"model": "plain", "messages": [{"role": "user", "content": LONG}], "seed": 3,
                              "max_tokens": 300}
        whole = await client.chat.completions.create(**kw)
        parts, usage, finish = [], None, None
        stream = await client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                parts.append(c.delta.content or "")
                finish = c.finish_reason or finish
    assert "".join(parts) == whole.choices[0].message.content and len(parts) > 2
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


async def test_anthropic_streaming_events(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """Anthropic's event sequence, text deltas that add up, and the stop reason in message_delta."""
    body = {"model": "plain", "messages": [{"role": "user", "content": LONG}], "max_tokens": 5, "stream": True}
    async with http.post(sim.base_url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}) as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = (await r.read()).decode()
    events = [blk.split("\n") for blk in raw.strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"] and names[-2:] == ["message_delta",
                                                                                            "message_stop"]
    datas = [orjson.loads(e[1].removeprefix("data: ")) for e in events]
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert count_tokens(text) == 5
    assert datas[-2]["delta"]["stop_reason"] == "max_tokens" and datas[-2]["usage"]["output_tokens"] == 5
