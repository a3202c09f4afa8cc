"""Endpoints in the wild, over real HTTP: the client learns what each sim quirk does and adapts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from agen.config import ModelConfig, Price
from agen.errors import EndpointUnreachableError, FatalRunError
from agen.providers import Providers
from agen.providers.client import endpoint_url
from agen.sim.server import SimServer, start_sim
from agen.types import CallRecord, ChatRequest

FREE = Price(input=0.0, output=0.0)
FAST = {"latency_ms": {"median": 0, "sigma": 0}}
PROMPT = "Write a short story about owls and the moon. " * 4
MODELS: dict[str, Any] = {
    "plain": {**FAST},
    "no-n": {**FAST, "quirks": {"ignore_n": True}},
    "usage": {"latency_ms": {"median": 20}, "tpm": 60_000, "quirks": {"charges": "usage"}},
    "upfront": {"latency_ms": {"median": 20}, "tpm": 600_000},
    "fixed": {**FAST, "rpm": 600, "quirks": {"window": "fixed", "window_s": 2, "headers": "litellm"}},
}


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = await start_sim({"models": MODELS})
    yield server
    await server.aclose()


def req(n: int = 1, seed: int | None = None, max_tokens: int = 300, stage: str = "vote", text: str = PROMPT
        ) -> ChatRequest:
    return ChatRequest(({"role": "user", "content": text},), max_tokens, n=n, seed=seed, temperature=1.0,
                       stage=stage, task_id="t")


class Run:
    """Providers on the sim, every model at its wire id; records and learned facts collected."""

    def __init__(self, base_url: str, **models: dict[str, Any]) -> None:
        self.records: list[CallRecord] = []
        self.facts: list[dict[str, Any]] = []
        cfgs = {name: ModelConfig(model=kw.pop("wire", name), price=FREE, **kw) for name, kw in models.items()}
        self.p = Providers(cfgs, base_urls={n: base_url for n in cfgs}, on_call=self.records.append)

    async def __aenter__(self) -> Providers:
        p = await self.p.__aenter__()
        for name in p:
            p[name].facts.on_fact = lambda lane, ev: self.facts.append(ev)
        return p

    async def __aexit__(self, *exc: object) -> None:
        await self.p.__aexit__(None, None, None)


async def direct(sim: SimServer, model: str, seed: int) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 300, "seed": seed,
            "temperature": 1.0}
    async with aiohttp.ClientSession() as s, s.post(sim.openai_base_url + "/chat/completions", json=body) as r:
        return orjson.loads(await r.read())["choices"][0]["message"]["content"]  # type: ignore[no-any-return]


async def test_ignored_n_is_learned_and_filled_with_seeds_inside_the_range(sim: SimServer) -> None:
    """n=4 on a server returning one choice: 4 texts, exactly those of seeds s..s+3, one fact; the next
    n=3 call goes out as 3 single requests from the start (≤ K requests per K samples)."""
    run = Run(sim.openai_base_url, x={"wire": "no-n"})
    async with run as p:
        c = await p["x"].complete(req(n=4, seed=100))
        assert len(run.records) == 4
        c2 = await p["x"].complete(req(n=3, seed=200))
        facts = p.facts()
    assert list(c.texts) == [await direct(sim, "no-n", 100 + i) for i in range(4)]
    assert len(c2.texts) == 3 and len(run.records) == 7
    assert facts["x"]["supports_n"] is False and facts["x"]["source"]["supports_n"] == "learned"
    assert [f["fact"] for f in run.facts].count("supports_n") == 1
    assert not p["x"].supports_n


async def test_honoured_n_stays_one_request(sim: SimServer) -> None:
    run = Run(sim.openai_base_url, x={"wire": "plain"})
    async with run as p:
        c = await p["x"].complete(req(n=4, seed=100))
        facts = p.facts()
    assert len(c.texts) == 4 and len(run.records) == 1 and "supports_n" not in facts["x"]
    assert facts["x"]["headers"] == ["none"]  # no limits configured: the sim sends no rate-limit headers


async def drive(p: Providers, name: str, calls: int, workers: int, max_tokens: int) -> None:
    queue = list(range(calls))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await p[name].complete(req(seed=i, max_tokens=max_tokens, stage="propose"))

    await asyncio.gather(*(worker() for _ in range(workers)))


@pytest.mark.parametrize(("wire", "charges"), [("usage", "usage"), ("upfront", "max_tokens")])
async def test_charging_model_is_learned(sim: SimServer, wire: str, charges: str) -> None:
    """From remaining-token deltas: a usage-charging server is told apart from a max_tokens one within
    a few dozen responses; on the usage one, reservations drop to the observed output quantile."""
    run = Run(sim.openai_base_url, x={"wire": wire})
    async with run as p:
        await drive(p, "x", calls=48, workers=4, max_tokens=2000)
        facts = p.facts()
        reserve = p["x"].reserve.per_choice("propose", 2000, facts["x"].get("charges") == "usage")  # type: ignore
    assert facts["x"]["charges"] == charges
    assert [f["fact"] for f in run.facts].count("charges") == 1
    assert all(r.outcome == "ok" for r in run.records)
    if charges == "usage":
        assert reserve < 2000
    else:
        assert reserve == 2000



async def test_a_headerless_upfront_server_is_not_undercounted() -> None:
    """A server that charges `max_tokens` at admission and sends no rate-limit headers (so the lane can
    learn neither its bucket nor how it charges), its TPM stated in the config: the lane settles each
    call at the real prompt plus the output it reserved (what such a server charged), not the real
    usage, so it never over-admits into 429s. Settling at usage refunded the unused output and ran
    into the limit within seconds."""
    server = await start_sim({"models": {"quiet": {"latency_ms": {"median": 5}, "tpm": 600_000,
                                                   "buckets_start": "empty", "quirks": {"headers": "none"}}}})
    try:
        run = Run(server.openai_base_url, x={"wire": "quiet", "tpm": 600_000, "max_concurrency": 16})
        async with run as p:
            await drive(p, "x", calls=40, workers=8, max_tokens=1000)
            facts = p.facts()
    finally:
        await server.aclose()
    assert facts["x"]["headers"] == ["none"] and facts["x"].get("charges") is None
    assert sum(r.outcome == "ok" for r in run.records) == 40
    assert sum(r.outcome == "throttle" for r in run.records) <= 1


@pytest.mark.parametrize("stated", [False, True])
async def test_a_headerless_usage_server(stated: bool) -> None:
    """A server that charges real usage and sends no rate-limit headers: nothing to learn how it
    charges from. Unstated, the lane settles at prompt + reserved output (safe, and it under-uses
    the TPM); with `charges: usage` stated, it settles at usage and reserves the observed output
    quantile instead of `max_tokens`. Either way the lane's accounting pushes no call into the limit
    (measured: 0-5 throttles, all within the first 0.2 s, none later). That cluster pauses the lane
    once (1 s), not once per throttled call (it paused 4 s for three)."""
    server = await start_sim({"models": {"quiet": {"latency_ms": {"median": 5}, "tpm": 600_000,
                                                   "buckets_start": "empty",
                                                   "quirks": {"headers": "none", "charges": "usage"}}}})
    try:
        run = Run(server.openai_base_url, x={"wire": "quiet", "tpm": 600_000, "max_concurrency": 16,
                                             **({"charges": "usage"} if stated else {})})
        async with run as p:
            await drive(p, "x", calls=40, workers=8, max_tokens=1000)
            facts = p.facts()
            reserve = p["x"].reserve.per_choice("propose", 1000, facts["x"].get("charges") == "usage")  # type: ignore
    finally:
        await server.aclose()
    assert facts["x"]["headers"] == ["none"] and facts["x"].get("charges") == ("usage" if stated else None)
    assert sum(r.outcome == "ok" for r in run.records) == 40
    # The sim's bucket starts empty (someone else used the quota): the lane's start-up burst (half a
    # second of TPM) can meet 429s, at most one per worker, in one cluster. Its accounting never
    # does later: every throttled call was sent before the first 429 came back (the same burst).
    throttles = [r for r in run.records if r.outcome == "throttle"]
    if throttles:
        first_back = min(r.ts for r in throttles)
        assert len(throttles) <= 8 and all(r.ts - r.latency_s <= first_back for r in throttles)
    assert (reserve < 1000) if stated else (reserve == 1000)


async def test_stated_facts_win_and_are_not_relearned(sim: SimServer) -> None:
    run = Run(sim.openai_base_url, x={"wire": "usage", "charges": "usage", "supports_n": False})
    async with run as p:
        await drive(p, "x", calls=8, workers=2, max_tokens=500)
        facts = p.facts()
    assert facts["x"]["charges"] == "usage" and facts["x"]["source"]["charges"] == "config"
    assert facts["x"]["supports_n"] is False and "charges" not in [f["fact"] for f in run.facts]


async def test_fixed_window_litellm_429s_never_fail_a_call(sim: SimServer) -> None:
    """Two clients sharing a fixed-window proxy with LiteLLM-style 429s (only llm_provider-retry-after,
    negative remaining, no reset): with max_retries=0 every call still succeeds, and both learn the
    window is fixed (their remaining jumps back up at each window's start)."""
    runs = [Run(sim.openai_base_url, x={"wire": "fixed", "max_retries": 0, "max_concurrency": 6}) for _ in range(2)]

    async def one(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
        async with run as p:
            await drive(p, "x", calls=30, workers=6, max_tokens=50)
            return p.facts()["x"], p.statistics()

    for (facts, stats), run in zip(await asyncio.gather(*(one(r) for r in runs)), runs):
        assert sum(r.outcome == "ok" for r in run.records) == 30 and stats.get("x/retry/exhausted", 0) == 0
        assert facts["window"] == "fixed"
        assert {"llm_provider", "x-ratelimit-remaining"} <= set(facts["headers"])


async def test_throttles_do_not_use_the_retry_budget(sim: SimServer) -> None:
    """Twelve 429s in a row on a call allowed no retries: it waits them out and succeeds."""
    async with aiohttp.ClientSession() as s:
        await s.post(sim.base_url + "/sim/script", json={"model": "plain", "responses": [
            {"status": 429, "retry_after_ms": 5}] * 12})
    run = Run(sim.openai_base_url, x={"wire": "plain", "max_retries": 0})
    async with run as p:
        c = await p["x"].complete(req())
        stats = p.statistics()
    assert c.texts and [r.outcome for r in run.records] == ["throttle"] * 12 + ["ok"]
    assert stats["x/retry/throttled"] == 12


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_endpoint_stops_the_run() -> None:
    """Refused connections for the breaker's window: a distinct fatal error naming the endpoint and the
    last error; every later call refuses at once."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    run = Run(url, x={"wire": "plain", "unreachable_after_s": 0.3, "max_retries": 50})
    async with run as p:
        with pytest.raises(EndpointUnreachableError) as e:
            await p["x"].complete(req())
        with pytest.raises(EndpointUnreachableError):
            await p["x"].complete(req())
    assert isinstance(e.value, FatalRunError) and e.value.exit_code == 6
    assert url in e.value.message and "ConnectionRefusedError" in e.value.message
    assert all(r.status is None for r in run.records) and len(run.records) >= 3


async def test_unreachable_after_attempts() -> None:
    run = Run(f"http://127.0.0.1:{closed_port()}/v1", x={"wire": "plain", "unreachable_after_attempts": 2})
    async with run as p:
        with pytest.raises(EndpointUnreachableError):
            await p["x"].complete(req())
    assert len(run.records) == 2


async def test_recovering_endpoint_keeps_the_run_going() -> None:
    """Refusals for a while, then the server comes up: calls succeed, nothing fatal."""
    port = closed_port()
    run = Run(f"http://127.0.0.1:{port}/v1", x={"wire": "plain", "unreachable_after_s": 5.0, "max_retries": 50})
    async with run as p:
        calls = [asyncio.create_task(p["x"].complete(req(seed=i))) for i in range(4)]
        while sum(r.status is None for r in run.records) < 4:  # refused (not a fixed time: under load
            await asyncio.sleep(0.01)                         # the first attempts may take that long)
        server = await start_sim({"models": MODELS}, port=port)
        try:
            done = await asyncio.gather(*calls)
        finally:
            await server.aclose()
    assert all(c.texts for c in done) and p["x"].failed is None
    assert any(r.status is None for r in run.records)


def test_endpoint_url_keeps_the_query_string() -> None:
    azure = "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-06-01"
    assert endpoint_url("openai", azure) == \
        "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01"
    assert endpoint_url("openai", "http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert endpoint_url("anthropic", "https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert endpoint_url("anthropic", "https://gw/v1?x=1") == "https://gw/v1/messages?x=1"


async def test_azure_style_base_url_over_http(sim: SimServer) -> None:
    run = Run(sim.openai_base_url + "?api-version=2024-06-01", x={"wire": "plain"})
    async with run as p:
        c = await p["x"].complete(req())
    assert c.texts and run.records[0].outcome == "ok"
