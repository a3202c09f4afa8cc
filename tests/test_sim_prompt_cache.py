"""The sim's prompt cache over real HTTP: OpenAI's automatic prefixes, Anthropic's breakpoints and
per-model minimum, and the options that break agen's assumptions (no cache, small capacity, TTL)."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson

from agen.sim import SimServer
from agen.sim.model import count_tokens
from agen.sim.prompt_cache import PromptCache, Segment
from conftest import FAST

CFG: dict[str, Any] = {
    "models": {
        "m": FAST,
        "haiku": {**FAST, "cache_min_tokens": 2048},
        "nocache": {**FAST, "prompt_cache": False},
        "tiny": {**FAST, "cache_capacity": 1},
    },
}
AV = {"anthropic-version": "2023-06-01"}
LONG = " ".join(f"w{i}" for i in range(1500))  # 1,500 sim tokens
LONGER = " ".join(f"v{i}" for i in range(2500))
EPH = {"type": "ephemeral"}


async def oai(http: aiohttp.ClientSession, sim: SimServer, model: str, system: str, user: str) -> dict[str, Any]:
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "system", "content": system},
                                                          {"role": "user", "content": user}]}
    async with http.post(sim.openai_base_url + "/chat/completions", json=body) as r:
        assert r.status == 200
        return orjson.loads(await r.read())["usage"]  # type: ignore[no-any-return]


async def ant(http: aiohttp.ClientSession, sim: SimServer, model: str, system: Any, user: Any) -> dict[str, Any]:
    body = {"model": model, "max_tokens": 8, "system": system, "messages": [{"role": "user", "content": user}]}
    async with http.post(sim.base_url + "/v1/messages", json=body, headers=AV) as r:
        assert r.status == 200
        return orjson.loads(await r.read())["usage"]  # type: ignore[no-any-return]


def marked(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": EPH}]


async def test_openai_reads_longest_shared_prefix_in_128_steps(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A second prompt sharing the first 1,500 tokens reads 1,408 (1,024 + 3*128) of them."""
    first = await oai(http, sim, "m", LONG, "question one")
    second = await oai(http, sim, "m", LONG, "question two, different")
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == 1408
    assert second["prompt_tokens"] == count_tokens(LONG) + count_tokens("question two, different")
    short = await oai(http, sim, "m", "Be brief.", "hi")
    again = await oai(http, sim, "m", "Be brief.", "hi")
    assert short["prompt_tokens_details"]["cached_tokens"] == again["prompt_tokens_details"]["cached_tokens"] == 0


async def test_anthropic_caches_only_at_a_breakpoint(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """Without cache_control nothing is cached, however often the prompt repeats; with it, the first
    use writes the prefix and later uses read it, input_tokens counting only the uncached rest."""
    for _ in range(2):
        u = await ant(http, sim, "m", LONG, "q")
        assert (u["cache_creation_input_tokens"], u["cache_read_input_tokens"]) == (0, 0)
        assert u["input_tokens"] == count_tokens(LONG) + 1
    w = await ant(http, sim, "m", marked(LONG), "q")
    r = await ant(http, sim, "m", marked(LONG), "another question")
    assert (w["cache_creation_input_tokens"], w["cache_read_input_tokens"], w["input_tokens"]) == (1500, 0, 1)
    assert (r["cache_creation_input_tokens"], r["cache_read_input_tokens"]) == (0, 1500)
    assert r["input_tokens"] == count_tokens("another question")


async def test_anthropic_two_breakpoints_read_one_write_the_rest(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A request whose first breakpoint is cached reads it and writes up to its second breakpoint."""
    await ant(http, sim, "m", marked(LONG), "q")
    user = [{"type": "text", "text": "shared examples " * 100, "cache_control": EPH}, {"type": "text", "text": "task"}]
    u = await ant(http, sim, "m", marked(LONG), user)
    assert u["cache_read_input_tokens"] == 1500
    assert u["cache_creation_input_tokens"] == 200 and u["input_tokens"] == 1


async def test_anthropic_minimum_is_per_model(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A 1,500-token breakpoint caches on a 1,024-minimum model, not on a 2,048-minimum one (Haiku)."""
    for _ in range(2):
        u = await ant(http, sim, "haiku", marked(LONG), "q")
        assert (u["cache_creation_input_tokens"], u["cache_read_input_tokens"]) == (0, 0)
    await ant(http, sim, "haiku", marked(LONGER), "q")
    u = await ant(http, sim, "haiku", marked(LONGER), "q")
    assert u["cache_read_input_tokens"] == 2500


async def test_no_prefix_caching_model(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """prompt_cache: false (vLLM without prefix caching) reports nothing cached on either wire."""
    for _ in range(2):
        assert (await oai(http, sim, "nocache", LONG, "q"))["prompt_tokens_details"]["cached_tokens"] == 0
        u = await ant(http, sim, "nocache", marked(LONG), "q")
        assert (u["cache_creation_input_tokens"], u["cache_read_input_tokens"]) == (0, 0)
    async with http.get(sim.base_url + "/sim/stats") as resp:
        s = orjson.loads(await resp.read())["nocache"]
    assert s["cached_input_tokens"] == s["cache_write_tokens"] == 0


async def test_small_capacity_evicts(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """With room for one prefix, two alternating long prompts never hit; one prompt repeated does."""
    for _ in range(2):
        assert (await ant(http, sim, "tiny", marked(LONG), "q"))["cache_read_input_tokens"] == 0
        assert (await ant(http, sim, "tiny", marked(LONGER), "q"))["cache_read_input_tokens"] == 0
    assert (await ant(http, sim, "tiny", marked(LONGER), "q"))["cache_read_input_tokens"] == 2500


def test_entry_expires_ttl_after_last_use() -> None:
    """An entry lives ttl_s after its last use: a use inside the TTL extends it, a later one misses."""
    cache = PromptCache(capacity=10, ttl_s=300.0)
    seg = [Segment("system", LONG, breakpoint=True)]
    assert cache.breakpoints(seg, 1024, now=0.0).write == 1500
    assert cache.breakpoints(seg, 1024, now=299.0).read == 1500
    assert cache.breakpoints(seg, 1024, now=598.0).read == 1500  # extended by the use at 299
    miss = cache.breakpoints(seg, 1024, now=1000.0)
    assert (miss.read, miss.write) == (0, 1500)


async def test_openai_sdk_sees_cached_tokens(sim: SimServer) -> None:
    """The official openai SDK parses the sim's usage.prompt_tokens_details.cached_tokens."""
    async with openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0) as client:
        usages = []
        for q in ("first", "second"):
            resp = await client.chat.completions.create(
                model="m", max_tokens=8, messages=[{"role": "system", "content": LONG}, {"role": "user", "content": q}])
            assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
            usages.append(resp.usage)
    assert usages[0].prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
    assert usages[1].prompt_tokens_details.cached_tokens == 1408  # type: ignore[union-attr]
    assert usages[1].prompt_tokens == 1501


async def test_anthropic_sdk_sees_cache_writes_and_reads(sim: SimServer) -> None:
    """The official anthropic SDK, a system block marked cache_control: the first call reports a
    cache write, the second a read, input_tokens only the uncached rest."""
    import anthropic

    async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="x", max_retries=0) as client:
        usages = []
        for q in ("first question", "second"):
            msg = await client.messages.create(
                model="m", max_tokens=8, system=[{"type": "text", "text": LONG, "cache_control": EPH}],
                messages=[{"role": "user", "content": q}])
            usages.append(msg.usage)
    assert (usages[0].cache_creation_input_tokens, usages[0].cache_read_input_tokens) == (1500, 0)
    assert (usages[1].cache_creation_input_tokens, usages[1].cache_read_input_tokens) == (0, 1500)
    assert usages[1].input_tokens == 1
