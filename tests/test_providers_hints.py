"""Retry hints and rate-limit headers as real servers send them, and the pacer's answer to each (pure)."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timezone

from agen.providers.facts import ChargeProbe, EndpointFacts
from agen.providers.headers import header_families, parse_rate_limits, parse_retry_after, retry_hint
from agen.providers.pacer import Pacer
from agen.providers.reserve import KEEP, WARM, OutputReserve
from agen.providers.transport import classify
from agen.errors import ThrottledError

NOW = 1_800_000_000.0


def test_every_retry_header() -> None:
    assert parse_retry_after({"retry-after": "7"}, NOW) == 7.0
    date = format_datetime(datetime.fromtimestamp(NOW + 30, timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": date}, NOW) == 30.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "1"}, NOW) == 0.25
    assert parse_retry_after({"llm_provider-retry-after": "60"}, NOW) == 60.0
    assert parse_retry_after({"x-ratelimit-remaining-requests": "0"}, NOW) is None


def test_reset_headers_are_a_hint_only_for_a_spent_budget() -> None:
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s",
             "x-ratelimit-remaining-tokens": "500", "x-ratelimit-reset-tokens": "2s"}
    assert retry_hint(spent, "openai", NOW) == 90.0
    ant = {"anthropic-ratelimit-tokens-remaining": "0", "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:12Z"}
    t = datetime(2027, 1, 15, 8, 0, 2, tzinfo=timezone.utc).timestamp()
    assert retry_hint(ant, "anthropic", t) == 10.0
    assert retry_hint({"x-ratelimit-remaining-tokens": "9"}, "openai", NOW) is None


def test_negative_remaining_and_litellm_budgets_read_as_spent() -> None:
    info = parse_rate_limits({"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "-3"}, "openai")
    assert info.remaining_requests == 0 and info.limit_requests == 100
    lite = parse_rate_limits({"x-litellm-key-remaining-requests-gpt-4o": "12",
                              "x-litellm-key-remaining-tokens-gpt-4o": "-40"}, "openai")
    assert (lite.remaining_requests, lite.remaining_tokens) == (12, 0)
    assert header_families({"LLM_Provider-Retry-After": "1", "x-litellm-key-remaining-requests-m": "1",
                            "content-type": "x"}) == {"llm_provider", "x-litellm"}


def test_litellm_429_is_a_throttle_with_its_wait() -> None:
    err = classify("openai", "m", 429, b'{"error": {"message": "rate limited"}}', {"llm_provider-retry-after": "42"})
    assert isinstance(err, ThrottledError) and err.retry_after_s == 42.0


def test_hintless_429_pause_grows_until_a_success() -> None:
    p = Pacer(rpm=None, tpm=None, default_pause_s=1.0, max_header_pause_s=60.0)
    waits = []
    for i in range(8):
        now = 100.0 * i
        p.throttled(now, now, None)
        waits.append(p.pause_until - now)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    p.succeeded()
    p.throttled(1000.0, 1000.0, None)
    assert p.pause_until - 1000.0 == 1.0


def test_fixed_window_is_learned_from_a_jump_and_paced_by_its_end() -> None:
    """Remaining rising faster than limit/60 per s: fixed; then the mirror holds at 0 until the window's end."""
    from agen.providers.headers import RateLimitInfo
    facts = EndpointFacts("x")
    p = Pacer(rpm=None, tpm=None, facts=facts)
    t = p.admit(0.0, 1)
    p.observe(0.1, RateLimitInfo(limit_requests=60, remaining_requests=0), t)
    p.throttled(0.2, 0.0, 9.8)  # the 429 says: the window ends at t=10
    t = p.admit(10.0, 1)
    p.observe(10.1, RateLimitInfo(limit_requests=60, remaining_requests=58), t)
    assert facts.get("window") == "fixed"
    t = p.admit(10.2, 1)
    p.observe(10.3, RateLimitInfo(limit_requests=60, remaining_requests=0), t)
    p.throttled(10.4, 10.2, 59.6)  # ends at 70: the window is 60 s
    assert abs(p.window_s - 60.0) < 0.5 and p.window_at == 70.0  # type: ignore[operator]
    assert p.ready_at(30.0, 1) >= 70.0  # a steady mirror would refill half the budget by t=40
    assert p.ready_at(70.0, 1) <= 70.0


def test_charge_probe_decides_on_the_median() -> None:
    probe = ChargeProbe()
    assert [probe.add(600.0, 1000.0) for _ in range(ChargeProbe.MIN)][-1] == "usage"
    probe = ChargeProbe()
    assert [probe.add(20.0, 1000.0) for _ in range(ChargeProbe.MIN)][-1] == "max_tokens"


def test_reserve_is_max_tokens_until_warm_and_usage_charged() -> None:
    r = OutputReserve()
    for i in range(WARM - 1):
        r.observe("propose", 200 + i, 1)
    assert r.per_choice("propose", 1000, True) == 1000
    r.observe("propose", 300, 1)
    q = r.per_choice("propose", 1000, True)
    assert 200 < q < 400 and r.per_choice("propose", 1000, False) == 1000
    assert r.per_choice("vote", 1000, True) == 1000  # per stage


def test_reserve_is_resorted_every_8th_call_once_its_window_is_full() -> None:
    """The quantile is re-taken every 8th call of a stage, also once the window holds KEEP calls
    (it used to re-sort on every call from then on: the deque's length stays a multiple of 8)."""
    r = OutputReserve()
    for _ in range(KEEP):  # call KEEP (a multiple of 8) takes the quantile
        r.observe("vote", 100, 1)
    before = r.per_choice("vote", 10_000, True)
    changed_at = None
    for call in range(KEEP + 1, KEEP + 41):
        r.observe("vote", 5000, 1)
        if changed_at is None and r.per_choice("vote", 10_000, True) != before:
            changed_at = call
    assert changed_at is not None and changed_at % 8 == 0


def test_usage_charging_lane_banks_refunds_a_max_tokens_lane_does_not() -> None:
    """Refunds settled while the lane was idle-ish are banked on a usage-charging lane (the server is
    owed only what was used), and lost at the clamp otherwise (the server charged max_tokens)."""
    def admitted_in_10s(charges: str | None) -> int:
        facts = EndpointFacts("x")
        facts.state("charges", charges)
        p = Pacer(rpm=None, tpm=6000, facts=facts, margin=1.0)  # 100 tokens/s
        n, now = 0, 0.0
        pending: list[tuple[float, int]] = []
        while now < 10.0:
            for due, est in [x for x in pending if x[0] <= now]:
                p.settle(now, est, 20)  # each call really used 20 of the 100 reserved
                pending.remove((due, est))
            if p.ready_at(now, 100) <= now:
                p.admit(now, 100)
                pending.append((now + 3.0, 100))  # answered 3 s later
                n += 1
            now = round(now + 0.01, 2)
        return n
    assert admitted_in_10s("usage") > admitted_in_10s(None) * 1.3


def test_header_names_are_read_once_per_set_and_new_sets_still_count() -> None:
    """What a response's headers say (families for the `headers` fact, whether the lane should
    parse rate limits) is worked out once per set of header names; a new set is read in full."""
    from multidict import CIMultiDict, CIMultiDictProxy

    from agen.config import ModelConfig, Price
    from agen.providers import attempts
    from agen.providers.client import ModelClient

    c = ModelClient("m", ModelConfig(model="x"), transport=None, base_url="http://127.0.0.1:9/v1",  # type: ignore[arg-type]
                    price=Price(input=1.0, output=1.0))

    def h(**kv: str) -> CIMultiDictProxy[str]:
        return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in kv.items()}))

    plain = h(content_type="application/json", x_request_id="a")
    assert c._seen_headers(plain) is False and c.facts.get("headers") == ["none"]
    assert c._seen_headers(h(content_type="application/json", x_request_id="b")) is False  # same names
    limited = h(content_type="application/json", x_ratelimit_remaining_requests="9", retry_after="1")
    assert c._seen_headers(limited) is True
    assert c.facts.get("headers") == ["retry-after", "x-ratelimit-remaining"]
    for i in range(attempts._SHAPES_KEPT + 5):  # past the remembered sets: read every time, same answers
        assert c._seen_headers(h(**{f"x_extra_{i}": "1"})) is False
    assert c._seen_headers(h(anthropic_ratelimit_requests_remaining="3", x_extra_999="1")) is False  # openai lane
    assert "anthropic-ratelimit" in c.facts.get("headers")
