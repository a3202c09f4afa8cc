"""Pure parts of agen.providers: headers, wire parsing, classification, retry policy, pacer arithmetic."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agen.errors import (BadResponseError, CapacityError, FatalRunError, TaskFailedError, ThrottledError)
from agen.providers.headers import RateLimitInfo, parse_duration, parse_rate_limits, parse_retry_after
from agen.providers.lane import Lane
from agen.providers.pacer import Pacer
from agen.providers.retry import RetryPolicy, retry_delay
from agen.providers.transport import classify
from agen.providers.wire import (WireError, anthropic_body, estimate_tokens, openai_body, parse_anthropic,
                                 parse_openai)
from agen.types import ChatRequest, Usage


# ---------------------------------------------------------------- headers

@pytest.mark.parametrize("text,expected", [("6m0s", 360.0), ("12ms", 0.012), ("1m30.5s", 90.5), ("1s", 1.0),
                                           ("0.5", 0.5), ("2h", 7200.0), ("250us", 0.00025)])
def test_parse_duration_go_style(text: str, expected: float) -> None:
    """OpenAI's reset durations parse to seconds."""
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "abc", "5x", "m5", "1m junk"])
def test_parse_duration_junk_is_none(text: str) -> None:
    """Unparseable durations are None, never an exception."""
    assert parse_duration(text) is None


def test_retry_after_ms_wins_and_http_date_parses() -> None:
    """retry-after-ms is the precise wish; retry-after may be seconds or an HTTP date."""
    assert parse_retry_after({"retry-after": "1", "retry-after-ms": "300"}) == pytest.approx(0.3)
    assert parse_retry_after({"retry-after": "2.5"}) == pytest.approx(2.5)
    now = 1_800_000_000.0
    assert parse_retry_after({"retry-after": formatdate(now + 7, usegmt=True)}, now) == pytest.approx(7, abs=1)
    assert parse_retry_after({}) is None


def test_openai_rate_limit_headers() -> None:
    """x-ratelimit-* headers map to limit/remaining/reset for requests and tokens."""
    info = parse_rate_limits({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
                              "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
                              "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m30.5s"}, "openai")
    assert info == RateLimitInfo(500, 499, 0.12, 30000, 0, 90.5)


def test_anthropic_rate_limit_headers_rfc3339() -> None:
    """anthropic-ratelimit-* resets are RFC 3339 instants; the tightest token bucket wins."""
    now = 1_800_000_000.0
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3))
    info = parse_rate_limits({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "7",
                              "anthropic-ratelimit-requests-reset": at, "anthropic-ratelimit-tokens-remaining": "900",
                              "anthropic-ratelimit-output-tokens-remaining": "12",
                              "anthropic-ratelimit-output-tokens-reset": at}, "anthropic", now)
    assert info.limit_requests == 50 and info.remaining_requests == 7
    assert info.reset_requests_s == pytest.approx(3)
    assert info.remaining_tokens == 12 and info.reset_tokens_s == pytest.approx(3)


# ---------------------------------------------------------------- wire

REQ = ChatRequest(messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}),
                  max_tokens=50, n=3, temperature=0.7, top_p=0.9, seed=11, extra={"logprobs": False})


def test_openai_body_passes_everything_through() -> None:
    """n, temperature, top_p, max_tokens, seed, extra_params and ChatRequest.extra all reach the body."""
    body = openai_body(REQ, "gpt-x", {"presence_penalty": 0.1}, 3)
    assert body["n"] == 3 and body["seed"] == 11 and body["top_p"] == 0.9 and body["temperature"] == 0.7
    assert body["presence_penalty"] == 0.1 and body["logprobs"] is False and body["max_tokens"] == 50
    assert body["messages"][0]["role"] == "system"


def test_anthropic_body_moves_system_and_drops_n_seed() -> None:
    """System messages go to top-level `system`; Anthropic gets neither n nor seed."""
    body = anthropic_body(REQ, "claude-x", {})
    assert body["system"] == "Be brief." and [m["role"] for m in body["messages"]] == ["user"]
    assert "n" not in body and "seed" not in body


def test_openai_usage_with_cache_and_reasoning() -> None:
    """cached_tokens and reasoning_tokens are subsets, read from the details objects."""
    p = parse_openai({"id": "x", "choices": [{"index": 1, "message": {"content": "b"}, "finish_reason": "stop"},
                                             {"index": 0, "message": {"content": "a"}, "finish_reason": "length"}],
                      "usage": {"prompt_tokens": 100, "completion_tokens": 40,
                                "prompt_tokens_details": {"cached_tokens": 64},
                                "completion_tokens_details": {"reasoning_tokens": 30}}})
    assert p.texts == ("a", "b") and p.finish_reasons == ("length", "stop")
    assert p.usage == Usage(input_tokens=100, cached_input_tokens=64, output_tokens=40, reasoning_tokens=30)


def test_anthropic_usage_adds_cache_tokens_into_input() -> None:
    """Anthropic's cache reads and writes are outside input_tokens: they are added in."""
    p = parse_anthropic({"id": "m", "type": "message", "content": [{"type": "text", "text": "hi"}],
                         "stop_reason": "end_turn",
                         "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 1024,
                                   "cache_creation_input_tokens": 128}})
    assert p.usage == Usage(input_tokens=1162, cached_input_tokens=1024, cache_write_tokens=128, output_tokens=5)


@pytest.mark.parametrize("doc", [{"choices": []}, {"error": {"message": "boom", "type": "server_error"}},
                                 {"choices": [{"message": {}}]}, [1, 2]])
def test_bad_200_bodies_raise_wire_error(doc: object) -> None:
    """No choices, an error object, a choice without content: unusable 200s."""
    with pytest.raises(WireError):
        parse_openai(doc)


def test_bad_200_keeps_usage() -> None:
    """A bad 200 that reported usage keeps it, so it can be billed."""
    with pytest.raises(WireError) as ei:
        parse_openai({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    assert ei.value.usage == Usage(input_tokens=7, output_tokens=3)


def test_estimate_tokens_reserves_n_times_max_tokens() -> None:
    """The TPM reservation is prompt chars/4 (+ per-message overhead) plus n x max_tokens."""
    assert estimate_tokens(REQ, 3) >= 150 and estimate_tokens(REQ, 3) - estimate_tokens(REQ, 1) == 100


# ---------------------------------------------------------------- classification

def _err(status: int, code: str | None = None, type_: str | None = None, message: str = "m",
         headers: dict[str, str] | None = None, provider: str = "openai") -> object:
    body = orjson.dumps({"error": {"message": message, "type": type_, "code": code}})
    return classify(provider, "m", status, body, headers or {"x-request-id": "req_1"})


@pytest.mark.parametrize("status,code,type_,message,cls", [
    (429, "rate_limit_exceeded", "requests", "Rate limit reached", ThrottledError),
    (429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota", FatalRunError),
    (401, "invalid_api_key", None, "bad key", FatalRunError),
    (402, None, None, "payment", FatalRunError),
    (403, None, "permission_error", "no", FatalRunError),
    (404, "model_not_found", None, "no model", FatalRunError),
    (400, None, "invalid_request_error", "Your credit balance is too low to access the Anthropic API.", FatalRunError),
    (400, "context_length_exceeded", None, "too long", TaskFailedError),
    (413, "request_too_large", None, "big", TaskFailedError),
    (422, None, None, "odd", TaskFailedError),
    (500, None, "server_error", "x", CapacityError),
    (502, None, None, "x", CapacityError),
    (503, None, None, "x", CapacityError),
    (504, None, None, "x", CapacityError),
    (529, None, "overloaded_error", "x", CapacityError),
])
def test_classify_status_to_error_class(status: int, code: str | None, type_: str | None, message: str,
                                        cls: type) -> None:
    """Each HTTP status / error code maps to exactly one class of the error tree."""
    err = _err(status, code, type_, message)
    assert type(err) is cls
    assert err.status == status and err.request_id == "req_1"  # type: ignore[attr-defined]


def test_classify_reads_retry_after_and_redacts_key() -> None:
    """A 429 carries the server's wait; a key echoed in the message is scrubbed."""
    err = _err(429, "rate_limit_exceeded", headers={"retry-after-ms": "250"})
    assert err.retry_after_s == pytest.approx(0.25)  # type: ignore[attr-defined]
    body = orjson.dumps({"error": {"message": "Incorrect API key provided: sk-SECRET123", "code": "invalid_api_key"}})
    e2 = classify("openai", "m", 401, body, {}, redact="sk-SECRET123")
    assert "sk-SECRET123" not in str(e2)


def test_classify_unparseable_error_body() -> None:
    """An HTML 502 page still classifies, with a short message."""
    err = classify("openai", "m", 502, b"<html>bad gateway</html>", {})
    assert isinstance(err, CapacityError) and "bad gateway" in err.message


# ---------------------------------------------------------------- retry policy

POLICY = RetryPolicy(max_retries=3, bad_response_retries=1, base_s=1.0, cap_s=8.0)


def test_retry_never_retries_fatal() -> None:
    """FatalRunError and TaskFailedError are never retried."""
    for e in (FatalRunError("x"), TaskFailedError("x")):
        assert retry_delay(e, retries_done=0, bad_responses_done=0, policy=POLICY) is None


def test_retry_throttle_waits_exactly_server_time() -> None:
    """A 429 with retry-after waits exactly what the server asked."""
    e = ThrottledError("x", retry_after_s=2.5)
    assert retry_delay(e, retries_done=0, bad_responses_done=0, policy=POLICY) == 2.5


@given(st.integers(0, 2), st.floats(0, 100), st.floats(0, 1))
def test_retry_capacity_never_sooner_than_server(done: int, server: float, r: float) -> None:
    """Capacity retries wait at least retry-after and at least half the backoff step."""
    e = CapacityError("x", retry_after_s=server)
    d = retry_delay(e, retries_done=done, bad_responses_done=0, policy=POLICY, rand=lambda: r)
    assert d is not None and d >= server and d >= min(8.0, 2 ** done) / 2


def test_retry_budgets_exhaust() -> None:
    """max_retries bounds all retries; bad_response_retries bounds bad 200s separately."""
    assert retry_delay(CapacityError("x"), retries_done=3, bad_responses_done=0, policy=POLICY) is None
    assert retry_delay(BadResponseError("x"), retries_done=1, bad_responses_done=1, policy=POLICY) is None
    assert retry_delay(BadResponseError("x"), retries_done=0, bad_responses_done=0, policy=POLICY) is not None


# ---------------------------------------------------------------- pacer (fake clock)

def _drain(p: Pacer, est: int, until: float) -> list[float]:
    """Admit as fast as the pacer allows from t=0 to `until`; return admission times."""
    now, out = 0.0, []
    while True:
        t = max(now, p.ready_at(now, est))
        if t >= until:
            return out
        p.admit(t, est)
        out.append(t)
        now = t


def test_pacer_holds_rpm() -> None:
    """At 600 rpm for 60 s the pacer admits ~600 x margin, plus at most the burst."""
    p = Pacer(rpm=600, tpm=None, margin=0.99, burst_s=0.5)
    n = len(_drain(p, 10, 60.0))
    assert 0.99 * 600 <= n <= 0.99 * 600 + 6


def test_pacer_holds_tpm_weighted() -> None:
    """Requests reserving 1,000 tokens under 60,000 tpm go at ~1/s."""
    p = Pacer(rpm=None, tpm=60_000, margin=1.0, burst_s=0.5)
    assert len(_drain(p, 1000, 30.0)) in (30, 31)


def test_pacer_settle_refunds_unused_tokens() -> None:
    """Settling with real usage below the reservation frees budget at once."""
    p = Pacer(rpm=None, tpm=60_000, margin=1.0, burst_s=0.0)
    p.admit(0.0, 1000)
    assert p.ready_at(0.0, 1000) == pytest.approx(1.0)
    p.settle(0.0, 1000, 100)
    assert p.ready_at(0.0, 1000) == pytest.approx(0.1)


def test_pacer_429_pauses_and_halves_then_recovers() -> None:
    """A 429 pauses the lane for retry-after, halves the rate once per generation, recovers linearly."""
    p = Pacer(rpm=600, tpm=None, recover_s=10.0)
    p.admit(0.0, 1)
    p.admit(0.1, 1)
    p.throttled(1.0, admitted_at=0.0, wait_s=2.0)
    assert p.ready_at(1.0, 1) >= 3.0
    assert p.factor(1.0) == pytest.approx(0.5)
    p.throttled(1.1, admitted_at=0.1, wait_s=2.0)  # same generation: no second halving
    assert p.factor(1.1) == pytest.approx(0.51)
    assert p.factor(6.0) == pytest.approx(1.0)
    assert p.decreases == 1 and p.pauses == 2



def test_pacer_hintless_429s_of_one_burst_share_one_pause() -> None:
    """429s without a wait hint double the pause, but once per generation: requests sent together
    before the first 429 came back do not double it again each (a burst of 3 once paused 4 s)."""
    p = Pacer(rpm=None, tpm=600_000, default_pause_s=1.0)
    for _ in range(3):  # all admitted at 0.1, answered at 0.2
        p.throttled(0.2, admitted_at=0.1, wait_s=None)
    assert p.pause_until == pytest.approx(1.2)
    p.throttled(1.3, admitted_at=1.25, wait_s=None)  # admitted after the pause: the next generation doubles
    assert p.pause_until == pytest.approx(3.3)
    p.throttled(1.35, admitted_at=1.25, wait_s=None)  # its sibling: the same 2 s, not 4 s
    assert p.pause_until == pytest.approx(3.35)


def test_pacer_backs_off_an_overloaded_server_but_not_a_few_random_500s() -> None:
    """5xx among successes at a healthy server's rate (1 in 20) never cut the lane; a storm of them
    (an overloaded server) cuts it to OVERLOAD_CUT once per generation, and it then recovers by
    doubling, not all at once."""
    from agen.providers.pacer import OVERLOAD_CUT, OVERLOAD_DOUBLING_S

    p = Pacer(rpm=None, tpm=None)
    t = 0.0
    for i in range(2000):  # a healthy server's occasional 500
        t += 0.01
        p.overloaded(t, admitted_at=t - 0.1) if i % 20 == 0 else p.succeeded()
    assert p.factor(t) == 1.0 and p.overload_decreases == 0
    for _ in range(10):  # most answers are 5xx now, all of one generation
        t += 0.01
        p.overloaded(t, admitted_at=0.0)
    assert p.overload_decreases == 1 and p.factor(t) == pytest.approx(OVERLOAD_CUT, rel=0.01)
    p.overloaded(t + 0.01, admitted_at=t)  # a request sent after the cut failed too: cut again
    assert p.overload_decreases == 2
    cut = p.factor(t + 0.01)
    assert cut == pytest.approx(OVERLOAD_CUT ** 2, rel=0.01)
    assert p.factor(t + 0.01 + OVERLOAD_DOUBLING_S) == pytest.approx(min(1.0, 2 * cut), rel=0.01)

def test_pacer_mirrors_server_bucket_from_headers() -> None:
    """With limit headers the server's own bucket is mirrored: remaining 0 means wait for refill."""
    p = Pacer(rpm=6000, tpm=None, margin=1.0)  # configured far too high
    t = p.admit(0.0, 1)
    p.observe(0.1, RateLimitInfo(limit_requests=60, remaining_requests=0, reset_requests_s=60.0), t)
    assert p.learned_rpm == 60
    assert p.ready_at(0.1, 1) == pytest.approx(1.1)  # one request refills in 1 s


def test_pacer_header_pause_without_limit() -> None:
    """remaining == 0 with no limit header pauses until the announced reset."""
    p = Pacer(rpm=None, tpm=None)
    p.observe(5.0, RateLimitInfo(remaining_requests=0, reset_requests_s=0.5))
    assert p.ready_at(5.0, 1) == pytest.approx(5.5) and p.header_pauses == 1


# ---------------------------------------------------------------- lane (real loop, short)

async def test_lane_is_fifo_and_caps_concurrency() -> None:
    """Waiters are admitted in arrival order and never more than max_concurrency at once."""
    lane = Lane("m", max_concurrency=2, pacer=Pacer(rpm=None, tpm=None))
    order: list[int] = []
    peak = 0
    active = 0

    async def one(i: int) -> None:
        nonlocal peak, active
        t = await lane.acquire(1)
        order.append(i)
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005)
        active -= 1
        lane.release(t, 1)

    async with asyncio.TaskGroup() as tg:
        for i in range(10):
            tg.create_task(one(i))
            await asyncio.sleep(0)
    assert order == list(range(10)) and peak == 2


async def test_lane_close_fails_queued_waiters() -> None:
    """Closing a lane fails every queued waiter with the given error, without admitting it."""
    lane = Lane("m", max_concurrency=1, pacer=Pacer(rpm=None, tpm=None))
    t = await lane.acquire(1)
    waiter = asyncio.ensure_future(lane.acquire(1))
    await asyncio.sleep(0)
    lane.close(FatalRunError("quota", status=429))
    with pytest.raises(FatalRunError):
        await waiter
    with pytest.raises(FatalRunError):
        await lane.acquire(1)
    lane.release(t, 0)
    assert lane.admitted == 1
