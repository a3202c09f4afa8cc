"""The attempt loop every endpoint client shares: lane ticket, POST, parse or classify, record, retry.

`LaneClient._attempt` is the one place where HTTP attempts become a result or one of the two
errors the pipeline handles (FatalRunError, TaskFailedError). `ModelClient` (chat) and
`RewardClient` (pooling) differ only in the body they send, how they parse a 2xx body, and which
counters they keep beyond the common ones (the `_count_*` hooks).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from agen.config import ModelConfig, Price
from agen.cost import cache_saved_usd, cost_usd
from agen.errors import (BadResponseError, CapacityError, EndpointFailingError, EndpointUnreachableError, FatalRunError,
                         ProviderError, TaskFailedError, ThrottledError)
from agen.providers.breaker import Breaker
from agen.providers.facts import EndpointFacts
from agen.providers.headers import header_families, parse_rate_limits
from agen.providers.lane import Lane
from agen.providers.pacer import Pacer
from agen.providers.retry import RetryPolicy, retry_delay
from agen.providers.transport import HttpResult, Transport, classify, request_id_of
from agen.providers.wire import WireError
from agen.types import CallRecord, Usage

T = TypeVar("T")

# What a 2xx body gives: (result, billed usage, request id the body names, if any). A body that
# cannot be used raises WireError (with whatever usage it still reported) or orjson.JSONDecodeError.
ParseBody = Callable[[bytes], tuple[T, Usage, str | None]]

_OUTCOME = {ThrottledError: "throttle", BadResponseError: "bad_response", FatalRunError: "fatal_run",
            TaskFailedError: "fatal_task"}

_STATUS_KEYS = {s: f"status/{s}" for s in (200, 400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529)}

# A response carrying any of these headers is worth parsing for the lane's rate limits.
_RL_PROBE = {
    "anthropic": ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-remaining",
                  "anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-output-tokens-remaining"),
    "openai": ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-limit-requests",
               "x-ratelimit-limit-tokens"),
}


_SHAPES_KEPT = 64  # distinct sets of response header names remembered per endpoint


def outcome_of(err: ProviderError) -> str:
    """The ledger outcome of a failed attempt (`throttle`, `bad_response`, ..., else `capacity`)."""
    for cls, name in _OUTCOME.items():
        if isinstance(err, cls):
            return name
    return "capacity"


class _Secret:
    """Holds an API key (or headers carrying one); its repr never shows it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>" if self.value else "<none>"


@dataclass(slots=True)  # not frozen: see agen.types
class Attempted:
    """A call that succeeded: the parsed result and what the whole call took. Not generic over the
    result's type: mypyc (2.4) cannot build a generic dataclass."""

    value: Any  # what the call's ParseBody returned
    usage: Usage
    cost_usd: float
    request_id: str | None
    latency_s: float  # from the first attempt to the result
    attempts: int


class LaneClient:
    """One endpoint on one lane: the attempt loop, the run-fatal latch, statistics and the ledger hook."""

    def __init__(self, name: str, cfg: ModelConfig, *, provider: str, transport: Transport, url: str,
                 price: Price, api_key: str | None, on_call: Callable[[CallRecord], None] | None,
                 lane: Lane | None, policy: RetryPolicy | None) -> None:
        self.name = name
        self.cfg = cfg
        self.provider = provider
        self.price = price
        self._url = url
        self._transport = transport
        self._key = _Secret(api_key)
        self._on_call = on_call
        self._rl_probe = _RL_PROBE[provider]
        self._shapes: dict[tuple[str, ...], bool] = {}  # header names seen -> carry rate limits?
        self.lane = lane or Lane(name, max_concurrency=cfg.max_concurrency, pacer=Pacer(rpm=cfg.rpm, tpm=cfg.tpm))
        self.facts: EndpointFacts = self.lane.pacer.facts
        self.facts.lane = name
        self.facts.state("charges", cfg.charges)
        self.facts.state("window", cfg.window)
        self.policy = policy or RetryPolicy(max_retries=cfg.max_retries, bad_response_retries=cfg.bad_response_retries)
        self.breaker = Breaker(cfg.unreachable_after_s, cfg.unreachable_after_attempts)
        self.failing = Breaker(cfg.failing_after_s)  # the same rule over 5xx answers instead of transport failures
        self._fatal: FatalRunError | None = None
        self._stats: Counter[str] = Counter()
        self._cost = 0.0

    def statistics(self) -> dict[str, int | float]:
        out: dict[str, int | float] = dict(self._stats)
        out["cost_usd"] = self._cost
        out["fatal"] = int(self._fatal is not None)
        out.update(self.lane.statistics())
        return out

    @property
    def failed(self) -> FatalRunError | None:
        """The run-fatal error this client saw, if any; every later call raises it."""
        return self._fatal

    # ---------------------------------------------------------------- counters beyond the common ones
    def _count_tokens(self, usage: Usage) -> None:
        """Token counters for one recorded attempt."""

    def _count_refusal(self, err: FatalRunError | TaskFailedError) -> None:
        """Counters for an attempt the endpoint refused for good (the call raises `err`)."""

    def _count_retry(self, err: ProviderError) -> None:
        """Counters for a failed attempt that will be retried (after `retry/count`)."""

    # ---------------------------------------------------------------- the loop
    def _raise_if_fatal(self) -> None:
        f = self._fatal
        if f is not None:
            raise type(f)(f.message, provider=f.provider, model=f.model, status=f.status, code=f.code,
                                request_id=f.request_id)

    def _set_fatal(self, err: FatalRunError) -> None:
        if self._fatal is None:
            self._fatal = err
            self.lane.close(type(err)(f"refused: the run already failed: {err.message}", provider=err.provider,
                                          model=err.model, status=err.status, code=err.code,
                                          request_id=err.request_id))

    def _record(self, stage: str, task_id: str, outcome: str, status: int | None, usage: Usage, cost: float,
                latency: float, request_id: str | None, mode: str = "online") -> None:
        st = self._stats
        st["requests"] += 1
        st["outcome/" + outcome] += 1
        if status is not None:
            st[_STATUS_KEYS.get(status) or f"status/{status}"] += 1
        self._count_tokens(usage)
        self._cost += cost
        if self._on_call is not None:
            self._on_call(CallRecord(ts=time.time(), model=self.name, stage=stage, task_id=task_id,
                                     outcome=outcome, status=status, usage=usage, cost_usd=cost,
                                     latency_s=latency, request_id=request_id, mode=mode,
                                     saved_usd=cache_saved_usd(
                                         usage, self.price.rates(batch=True) if mode == "batch" else self.price)))

    def _seen_headers(self, headers: Any) -> bool:
        """The `headers` fact: which rate-limit header families this endpoint sends (learned on the
        first response, extended silently afterwards). Returns whether `headers` carry rate limits
        worth parsing for the lane.

        Both answers depend only on the header names, and an endpoint sends the same few sets of
        names again and again, so they are worked out once per set of names (up to
        `_SHAPES_KEPT` sets; past that, every time)."""
        names = tuple(headers.keys())
        carries = self._shapes.get(names)
        if carries is not None:
            return carries
        fams = header_families(headers)
        known = self.facts.get("headers")
        if known is None:
            self.facts.learn("headers", sorted(fams) or ["none"], "first response")
        elif not fams <= set(known):
            self.facts.values["headers"] = sorted((set(known) | fams) - {"none"})
        carries = any(k in headers for k in self._rl_probe)
        if len(self._shapes) < _SHAPES_KEPT:
            self._shapes[names] = carries
        return carries

    def _charged(self, usage: Usage, out_tokens: int) -> int:
        """What the server counted against its TPM for a call that went through: the real usage if it
        is known to charge usage; else (it charges `max_tokens` up front, as OpenAI documents, or
        nobody could tell: no headers) the real prompt plus the output reserved at admission."""
        if self.facts.get("charges") == "usage":
            return usage.total_tokens
        return usage.input_tokens + max(out_tokens, usage.output_tokens)

    async def _attempt(self, body: bytes | Callable[[], bytes], headers: dict[str, str], est_tokens: int,
                       parse: ParseBody[T], *, stage: str, task_id: str, out_tokens: int = 0) -> Attempted:
        """POST `body` until it parses, retrying per the policy. Raises FatalRunError or TaskFailedError only.

        `body` may be a function: it is serialised once the lane admits the request, so a request
        waiting in the lane's queue holds no body.

        Throttles (429) never use up the call's retries: the lane waits them out for everyone, so
        only the run's deadline, budget or stop ends a call that keeps being throttled."""
        retries = bad = tries = 0
        t_start = time.perf_counter()
        while True:
            self._raise_if_fatal()
            ticket = await self.lane.acquire(est_tokens, front=tries > 0, out_tokens=out_tokens)
            if self.lane.closed is not None:  # admitted, then the lane closed before this task ran
                self.lane.release(ticket, None)
                raise copy.copy(self.lane.closed)
            tries += 1
            if not isinstance(body, bytes):
                body = body()
            usage: Usage | None = None
            res: HttpResult | None = None
            sent_at = time.monotonic()
            try:
                res = await self._transport.post(self._url, body, headers)
            except ProviderError as exc:  # transport failure (CapacityError)
                err: ProviderError = exc
                if self.breaker.failed(time.monotonic(), sent_at):
                    err = EndpointUnreachableError(
                        f"endpoint {self._url} unreachable: every attempt failed at transport level for "
                        f"{time.monotonic() - (self.breaker.down_since or sent_at):.0f}s "
                        f"({self.breaker.failures} in a row); last error: {exc.message}. "
                        f"Check base_url and that the server is up, then resume the run",
                        provider=self.provider, model=self.name, code="unreachable")
            except BaseException:  # cancelled mid-call: give the slot back
                self.lane.release(ticket, None)
                raise
            else:
                self.breaker.reachable(time.monotonic())
                if res.status < 500:
                    self.failing.reachable(time.monotonic())
                if self._seen_headers(res.headers):
                    self.lane.observe(parse_rate_limits(res.headers, self.provider), ticket)
                if 200 <= res.status < 300:
                    try:
                        value, usage, body_rid = parse(res.body)
                    except (WireError, orjson.JSONDecodeError) as exc:
                        usage = getattr(exc, "usage", None)
                        err = BadResponseError(str(exc), provider=self.provider, model=self.name,
                                               status=res.status, code=getattr(exc, "code", None) or "bad_response",
                                               request_id=request_id_of(res.headers))
                    else:
                        self.lane.succeeded()
                        self.lane.release(ticket, self._charged(usage, out_tokens))
                        cost = cost_usd(usage, self.price)
                        rid = request_id_of(res.headers) or body_rid
                        self._record(stage, task_id, "ok", res.status, usage, cost, res.latency_s, rid)
                        return Attempted(value, usage, cost, rid, time.perf_counter() - t_start, tries)
                else:
                    err = classify(self.provider, self.name, res.status, res.body, res.headers, self._key.value)
                    if res.status >= 500 and self.failing.failed(time.monotonic(), sent_at):
                        err = EndpointFailingError(
                            f"endpoint {self._url} failing: every answer was a server error for "
                            f"{time.monotonic() - (self.failing.down_since or sent_at):.0f}s "
                            f"({self.failing.failures} in a row, failing_after_s={self.failing.window_s:g}); "
                            f"last: HTTP {res.status} {err.message[:200]}. Resume the run once the endpoint "
                            f"recovers", provider=self.provider, model=self.name, status=res.status,
                            code="failing")
            # ---- a failed attempt
            u = usage or Usage()
            cost = cost_usd(u, self.price) if usage else 0.0
            self._record(stage, task_id, outcome_of(err), err.status, u, cost, res.latency_s if res else 0.0,
                         err.request_id)
            throttled = isinstance(err, ThrottledError)
            delay = (err.retry_after_s if isinstance(err, ThrottledError) else
                     retry_delay(err, retries_done=retries, bad_responses_done=bad, policy=self.policy))
            if isinstance(err, FatalRunError):
                self._set_fatal(err)  # before release: the next waiter must not be admitted
            elif isinstance(err, ThrottledError):
                self.lane.throttled(ticket, delay)
            elif isinstance(err, CapacityError) and (err.status is None or err.status >= 500):
                self.lane.overloaded(ticket)
            self.lane.release(ticket, u.total_tokens if res is not None else None)
            if isinstance(err, (FatalRunError, TaskFailedError)):
                self._count_refusal(err)
                raise err
            if delay is None and not throttled:
                self._stats["retry/exhausted"] += 1
                raise TaskFailedError(f"gave up after {retries + 1} attempts; last: {err.message}",
                                      provider=err.provider, model=self.name, status=err.status, code=err.code,
                                      request_id=err.request_id)
            self._stats["retry/count"] += 1
            self._count_retry(err)
            if throttled:
                self._stats["retry/throttled"] += 1
                continue  # the lane is paused for everyone; this call goes to the front when it resumes
            retries += 1
            bad += isinstance(err, BadResponseError)
            if delay > 0:  # type: ignore[operator]
                await asyncio.sleep(delay)  # type: ignore[arg-type]
