"""ModelClient over real HTTP against the simulated provider (agen.sim), both wire formats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from agen.config import ModelConfig, load_prices
from agen.cost import CostBook, cost_usd
from agen.errors import ConfigError, FatalRunError, TaskFailedError
from agen.providers import Providers, check_api_keys
from agen.sim.server import SimServer, start_sim
from agen.types import CallRecord, ChatRequest, Usage

PRICES = load_prices()
LONG = "Context: " + " ".join(f"fact{i} is about apples and pears." for i in range(400))  # > 1024 sim tokens


def req(text: str = "Solve: 2+2?", n: int = 1, max_tokens: int = 64, seed: int | None = None,
        system: str | None = None, stage: str = "vote") -> ChatRequest:
    msgs: tuple[dict[str, str], ...] = ({"role": "user", "content": text},)
    if system:
        msgs = ({"role": "system", "content": system},) + msgs
    return ChatRequest(messages=msgs, max_tokens=max_tokens, n=n, seed=seed, stage=stage, task_id="t1")


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = await start_sim({"models": {"sim-large": {}, "sim-small": {},
                                         "sim-quota": {"faults": {"quota_after": 2}}}})
    try:
        yield server
    finally:
        await server.aclose()


async def sim_post(sim: SimServer, path: str, doc: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as s:
        if doc is None:
            async with s.get(sim.base_url + path) as r:
                return orjson.loads(await r.read())
        async with s.post(sim.base_url + path, data=orjson.dumps(doc)) as r:
            return orjson.loads(await r.read())


async def script(sim: SimServer, model: str, *items: dict[str, Any]) -> None:
    await sim_post(sim, "/sim/script", {"model": model, "responses": list(items)})


class Run:
    """Providers for one test, with a ledger list and a CostBook fed by on_call."""

    def __init__(self, sim: SimServer, **models: ModelConfig) -> None:
        self.records: list[CallRecord] = []
        self.book = CostBook()
        urls = {n: sim.base_url + ("/v1" if m.provider == "openai" else "") for n, m in models.items()}
        self.providers = Providers(models, base_urls=urls, on_call=self._on_call)

    def _on_call(self, rec: CallRecord) -> None:
        self.records.append(rec)
        self.book.add(rec)

    async def __aenter__(self) -> Providers:
        return await self.providers.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self.providers.__aexit__(None, None, None)


def oa(model: str = "sim-large", **kw: Any) -> ModelConfig:
    return ModelConfig(provider="openai", model=model, **kw)


def an(model: str = "sim-large", **kw: Any) -> ModelConfig:
    return ModelConfig(provider="anthropic", model=model, supports_n=False, **kw)


def sim_usage(stats: dict[str, Any], model: str) -> Usage:
    s = stats[model]
    return Usage(s["input_tokens"], s["cached_input_tokens"], s["cache_write_tokens"], s["output_tokens"],
                 s["reasoning_tokens"])


# ---------------------------------------------------------------- success, usage, cost

@pytest.mark.parametrize("make", [oa, an], ids=["openai", "anthropic"])
async def test_usage_and_cost_exact_to_the_token(sim: SimServer, make: Any) -> None:
    """Billed usage (incl. prompt-cache reads/writes) matches the sim's own totals exactly; cost follows.
    The long static system prompt is cached (Anthropic: because the client marks it cache_control)."""
    run = Run(sim, m=make())
    async with run as p:
        for i in range(3):
            c = await p["m"].complete(req(f"Question {i}: what is {i}+1?", system=LONG))
            assert c.texts and c.usage.output_tokens > 0
        await p["m"].complete(req("short one", system="You are terse."))
    billed = sim_usage(await sim_post(sim, "/sim/stats"), "sim-large")
    assert run.book.usage == billed
    assert billed.cached_input_tokens > 0  # the long shared prefix was cached
    if make is an:
        assert billed.cache_write_tokens > 0
    assert run.book.total_usd == pytest.approx(cost_usd(billed, PRICES["sim-large"]), rel=1e-12)
    assert [r.outcome for r in run.records] == ["ok"] * 4


async def test_openai_n_sampling_matches_fan_out_with_seeds(sim: SimServer) -> None:
    """n=4 in one call gives the same texts as four seeded single calls (seed s..s+3) on a no-n endpoint."""
    run = Run(sim, native=oa(), fan=oa(supports_n=False))
    async with run as p:
        a = await p["native"].complete(req(n=4, seed=100))
        b = await p["fan"].complete(req(n=4, seed=100))
    assert len(a.texts) == 4 and a.texts == b.texts
    assert a.usage.output_tokens == b.usage.output_tokens
    assert [r.model for r in run.records].count("fan") == 4 and [r.model for r in run.records].count("native") == 1


async def test_anthropic_n_is_fanned_out(sim: SimServer) -> None:
    """Anthropic has no `n`: n=3 becomes three calls, three texts, usage summed."""
    run = Run(sim, a=an())
    async with run as p:
        c = await p["a"].complete(req(n=3))
    stats = await sim_post(sim, "/sim/stats")
    assert len(c.texts) == 3 and stats["sim-large"]["requests"] == 3
    assert c.usage == sim_usage(stats, "sim-large")


# ---------------------------------------------------------------- error classes

@pytest.mark.parametrize("make,status", [(oa, 500), (oa, 502), (oa, 503), (an, 529), (an, 500)])
async def test_capacity_errors_are_retried(sim: SimServer, make: Any, status: int) -> None:
    """5xx and 529 are retried with backoff and the call then succeeds."""
    await script(sim, "sim-large", {"status": status})
    run = Run(sim, m=make())
    async with run as p:
        c = await p["m"].complete(req())
        stats = p["m"].statistics()
    assert c.attempts == 2 and [r.outcome for r in run.records] == ["capacity", "ok"]
    assert stats[f"retry/reason_count/{status}"] == 1


@pytest.mark.parametrize("make,status,code", [(oa, 400, "context_length_exceeded"), (oa, 413, None),
                                              (an, 400, None), (an, 413, None)])
async def test_task_errors_are_not_retried(sim: SimServer, make: Any, status: int, code: str | None) -> None:
    """400/413 fail the task at once (one request) and the client keeps serving other calls."""
    await script(sim, "sim-large", {"status": status, "code": code, "message": "bad input"})
    run = Run(sim, m=make())
    async with run as p:
        with pytest.raises(TaskFailedError) as ei:
            await p["m"].complete(req())
        assert ei.value.status == status and ei.value.request_id
        await p["m"].complete(req())  # still usable
    assert [r.outcome for r in run.records] == ["fatal_task", "ok"]


@pytest.mark.parametrize("make,status", [(oa, 401), (oa, 403), (oa, 402), (oa, 404), (an, 401), (an, 403)])
async def test_fatal_errors_stop_the_client(sim: SimServer, make: Any, status: int) -> None:
    """401/402/403/404 raise FatalRunError once; later calls are refused without being sent."""
    await script(sim, "sim-large", {"status": status})
    run = Run(sim, m=make())
    async with run as p:
        with pytest.raises(FatalRunError) as ei:
            await p["m"].complete(req())
        assert ei.value.status == status and ei.value.provider == make().provider and ei.value.request_id
        with pytest.raises(FatalRunError):
            await p["m"].complete(req())
    assert (await sim_post(sim, "/sim/stats"))["sim-large"]["requests"] == 1


@pytest.mark.parametrize("make", [oa, an], ids=["openai", "anthropic"])
async def test_quota_exhaustion_stops_run_without_retrying(sim: SimServer, make: Any) -> None:
    """insufficient_quota (OpenAI 429) / credit balance (Anthropic 400) is fatal: never retried; queued calls refused."""
    run = Run(sim, m=make("sim-quota", max_concurrency=1, price=PRICES["sim-small"]))
    async with run as p:
        results = await asyncio.gather(*(p["m"].complete(req(f"q{i}")) for i in range(8)), return_exceptions=True)
    fatal = [r for r in results if isinstance(r, FatalRunError)]
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 2 and len(fatal) == 6
    stats = (await sim_post(sim, "/sim/stats"))["sim-quota"]
    assert stats["requests"] == 3  # 2 ok + the one quota error: 0 retries, queued calls never sent
    first = next(r for r in run.records if r.outcome == "fatal_run")
    assert first.status == (429 if make is oa else 400)
    assert all(f.code in ("insufficient_quota", "invalid_request_error") for f in fatal)


async def test_bad_200_retried_and_billed(sim: SimServer) -> None:
    """An error object inside a 200 (with usage) is retried, and its usage is still billed."""
    bad = {"error": {"message": "oops", "type": "server_error"}, "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    await script(sim, "sim-large", {"status": 200, "body": orjson.dumps(bad).decode()}, {"status": 200, "body": "{not json"})
    run = Run(sim, m=oa(bad_response_retries=2))
    async with run as p:
        c = await p["m"].complete(req())
    assert [r.outcome for r in run.records] == ["bad_response", "bad_response", "ok"] and c.attempts == 3
    assert run.records[0].usage == Usage(input_tokens=7, output_tokens=3) and run.records[0].cost_usd > 0
    assert run.book.usage == c.usage + Usage(input_tokens=7, output_tokens=3)


async def test_bad_200_retries_exhausted(sim: SimServer) -> None:
    """After bad_response_retries unusable 200s the task fails."""
    await script(sim, "sim-large", *[{"status": 200, "body": '{"choices": []}'}] * 3)
    run = Run(sim, m=oa(bad_response_retries=1))
    async with run as p:
        with pytest.raises(TaskFailedError):
            await p["m"].complete(req())
    assert [r.outcome for r in run.records] == ["bad_response", "bad_response"]


async def test_read_timeout_on_hang_then_retry(sim: SimServer) -> None:
    """A server that stalls longer than read_timeout_s is cut off and the call is retried."""
    await script(sim, "sim-large", {"status": 200, "hang_s": 60})
    run = Run(sim, m=oa(read_timeout_s=2.0))  # the retry's normal answer has 2 s, the hang is 60 s
    async with run as p:
        c = await p["m"].complete(req())
    assert c.attempts == 2
    assert run.records[0].outcome == "capacity" and run.records[0].status is None
    # the client hung up on the stalled answer (the sim counts that as 499) rather than sitting out the hang
    while "499" not in (await sim_post(sim, "/sim/stats"))["sim-large"]["status"]:
        await asyncio.sleep(0.02)
    assert (await sim_post(sim, "/sim/stats"))["sim-large"]["status"] == {"499": 1, "200": 1}


async def test_connection_refused_exhausts_retries() -> None:
    """Nothing listening: capacity retries, then TaskFailedError (never a raw aiohttp error)."""
    models = {"m": oa(max_retries=1, connect_timeout_s=0.5)}
    async with Providers(models, base_urls={"m": "http://127.0.0.1:9/v1"}) as p:
        with pytest.raises(TaskFailedError) as ei:
            await p["m"].complete(req())
    assert "transport" in str(ei.value)


# ---------------------------------------------------------------- rate limits

def send_times(records: list[CallRecord]) -> list[float]:
    return sorted(r.ts - r.latency_s for r in records)


async def test_retry_after_honoured_by_the_whole_lane(sim: SimServer) -> None:
    """After a 429 with retry-after 0.4 s, no request of the lane is sent sooner than asked."""
    await script(sim, "sim-large", {"status": 429, "retry_after_s": 0.4, "retry_after_ms": 400})
    run = Run(sim, m=oa(max_concurrency=8))
    async with run as p:
        first = asyncio.ensure_future(p["m"].complete(req("first")))
        while not run.records:
            await asyncio.sleep(0.005)
        throttled_at = run.records[0].ts
        rest = await asyncio.gather(*(p["m"].complete(req(f"r{i}")) for i in range(5)))
        await first
        stats = p["m"].statistics()
    assert run.records[0].outcome == "throttle" and len(rest) == 5
    later = [r.ts - r.latency_s for r in run.records[1:]]
    assert min(later) >= throttled_at + 0.4 - 0.005  # 5 ms for clock granularity
    assert stats["lane/pauses"] == 1 and stats["retry/reason_count/429"] == 1


async def test_header_driven_slowdown(sim: SimServer) -> None:
    """A 200 saying remaining-requests=0, reset 400ms pauses the lane until then."""
    await script(sim, "sim-large", {"status": 200, "headers": {"x-ratelimit-remaining-requests": "0",
                                                                "x-ratelimit-reset-requests": "400ms"}})
    run = Run(sim, m=oa())
    async with run as p:
        await p["m"].complete(req())
        t_first = run.records[0].ts
        await p["m"].complete(req())
        stats = p["m"].statistics()
    assert send_times(run.records)[1] >= t_first + 0.4 - 0.005
    assert stats["lane/header_pauses"] == 1


async def test_server_rate_limit_learned_from_headers() -> None:
    """Configured 10x too high, the client learns the server's RPM from headers and gets no 429."""
    server = await start_sim({"models": {"sim-large": {"rpm": 1200}}})
    try:
        run = Run(server, m=oa(rpm=12000, max_concurrency=16))
        async with run as p:
            await asyncio.gather(*(p["m"].complete(req(f"x{i}")) for i in range(15)))
            stats = p["m"].statistics()
        assert stats["lane/rpm_effective"] == pytest.approx(1200 * 0.99, rel=0.01)
        assert stats.get("outcome/throttle", 0) == 0
    finally:
        await server.aclose()


# ---------------------------------------------------------------- keys

def _state(obj: object) -> dict[str, object]:
    """An object's attributes, whether it keeps them in a `__dict__` or is a compiled (mypyc) class."""
    return {k: getattr(obj, k, None) for k in dir(obj) if not k.startswith("__")}


async def test_api_key_never_in_errors_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong key gives FatalRunError whose text, repr and stats never contain the key."""
    secret = "sk-agen-test-SECRET-0123456789"
    monkeypatch.setenv("AGEN_TEST_KEY", secret)
    server = await start_sim({"require_api_key": "sk-right", "models": {"sim-large": {}}})
    try:
        for make in (oa, an):
            run = Run(server, m=make(api_key_env="AGEN_TEST_KEY"))
            async with run as p:
                with pytest.raises(FatalRunError) as ei:
                    await p["m"].complete(req())
                dumped = " ".join([str(ei.value), repr(ei.value), repr(p["m"]), repr(_state(p["m"])),
                                   str(p.statistics()), repr(run.records)])
            assert ei.value.status == 401
            assert secret not in dumped and secret[8:] not in dumped
    finally:
        await server.aclose()


async def test_right_key_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key from api_key_env reaches the server as Bearer (OpenAI) or x-api-key (Anthropic)."""
    monkeypatch.setenv("AGEN_TEST_KEY", "sk-right")
    server = await start_sim({"require_api_key": "sk-right", "models": {"sim-large": {}}})
    try:
        run = Run(server, o=oa(api_key_env="AGEN_TEST_KEY"), a=an(api_key_env="AGEN_TEST_KEY"))
        async with run as p:
            await p["o"].complete(req())
            await p["a"].complete(req())
    finally:
        await server.aclose()


def test_check_api_keys_names_model_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing key is a ConfigError naming the model and the variable."""
    monkeypatch.delenv("AGEN_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"models\.solver.*AGEN_MISSING_KEY"):
        check_api_keys({"solver": oa(api_key_env="AGEN_MISSING_KEY")})


def test_a_key_with_a_line_end_is_refused_without_being_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key pasted with its newline cannot go in a header: said at start, naming the variable, not the key."""
    monkeypatch.setenv("AGEN_NL_KEY", "sk-abc123\n")
    with pytest.raises(ConfigError, match=r"models\.solver.*AGEN_NL_KEY.*line break") as e:
        check_api_keys({"solver": oa(api_key_env="AGEN_NL_KEY")})
    assert "sk-abc123" not in str(e.value)


async def test_cancelled_call_gives_its_slot_back(sim: SimServer) -> None:
    """Cancelling a call mid-request releases its lane slot (no leaked concurrency)."""
    await script(sim, "sim-large", {"status": 200, "hang_s": 60})
    run = Run(sim, m=oa(max_concurrency=1))
    async with run as p:
        task = asyncio.ensure_future(p["m"].complete(req()))
        while (await sim_post(sim, "/sim/received"))["count"] == 0:  # on the wire, hanging
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert p["m"].statistics()["lane/in_flight"] == 0
        # the single slot is free again (a leaked slot would wait forever: the limit only ends that)
        await asyncio.wait_for(p["m"].complete(req()), 60)


@pytest.mark.parametrize("reused", [False, True])
async def test_halt_refuses_a_request_past_its_lane_before_its_bytes_leave(sim: SimServer, reused: bool) -> None:
    """After `halt`, a request that already has its lane ticket (it goes straight to the run's
    session) is refused by the connector once it gets its connection, a new or a pooled one: the
    sim never receives it."""
    run = Run(sim, m=oa())
    stop = FatalRunError("interrupted", provider="openai", model="m")
    async with run as p:
        if reused:
            await p["m"].complete(req())  # leaves a pooled connection
        before = (await sim_post(sim, "/sim/stats")).get("sim-large", {}).get("requests", 0)
        p.halt(stop)
        session = p._session
        assert session is not None
        with pytest.raises(FatalRunError, match="interrupted"):
            await session.post(sim.base_url + "/v1/chat/completions", data=b"{}")
        with pytest.raises(FatalRunError):
            await p["m"].complete(req())  # and the lane refuses it first
    assert (await sim_post(sim, "/sim/stats")).get("sim-large", {}).get("requests", 0) == before


async def test_an_overloaded_server_is_backed_off_not_stormed() -> None:
    """A server that answers 8 requests at once and an immediate 503 beyond (`faults.capacity`), asked
    for 64 at once: the lane cuts its concurrency on the 5xx storm, so every call succeeds and 5xx
    are a small share of what was sent (70% when the lane kept asking 64)."""
    server = await start_sim({"models": {"sim-small": {"latency_ms": {"median": 40},
                                                       "faults": {"capacity": 8}}}})
    try:
        run = Run(server, m=oa("sim-small", max_concurrency=64))
        async with run as p:
            await asyncio.gather(*(p["m"].complete(req(f"Solve: {i}+1?")) for i in range(400)))
            stats = p["m"].statistics()
    finally:
        await server.aclose()
    codes = [r.status for r in run.records]
    assert codes.count(200) == 400
    share = sum(1 for c in codes if c is not None and c >= 500) / len(codes)
    assert stats["lane/overload_decreases"] >= 1
    assert share < 0.4, share  # 0.26 measured; 0.70 before lanes backed off
