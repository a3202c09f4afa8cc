"""The official `openai` SDK talks to the sim unchanged."""

from __future__ import annotations

import aiohttp
import openai
import orjson
import pytest

from agen.sim import SimServer

CFG = {"models": {"sim-small": {"latency_ms": {"median": 0}}}}


async def test_sdk_chat_completion(sim: SimServer) -> None:
    """chat.completions.create returns a parsed completion with n choices and usage matching /sim/stats."""
    async with openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="x", max_retries=0) as client:
        resp = await client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "Say something about owls."}],
            n=2, seed=4, max_tokens=64, temperature=0.7)
        models = await client.models.list()
    assert len(resp.choices) == 2 and resp.choices[0].message.content
    assert resp.choices[1].finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.prompt_tokens > 0
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 0
    assert [m.id for m in models.data] == ["sim-small"]
    async with aiohttp.ClientSession() as http, http.get(sim.base_url + "/sim/stats") as r:
        s = orjson.loads(await r.read())["sim-small"]
    assert (s["input_tokens"], s["output_tokens"]) == (resp.usage.prompt_tokens, resp.usage.completion_tokens)


async def test_sdk_maps_errors(sim: SimServer) -> None:
    """The SDK raises its own typed errors for the sim's 429, quota and 404 bodies."""
    async with aiohttp.ClientSession() as http:
        await http.post(sim.base_url + "/sim/script", json={"model": "sim-small", "responses": [
            {"status": 429, "retry_after_s": 1}]})
    async with openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as rl:
            await client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "hi"}])
        assert rl.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.NotFoundError) as nf:
            await client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
        assert nf.value.code == "model_not_found"
