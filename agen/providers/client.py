"""One model endpoint's client: wire format + lane + retry loop + ledger hook.

`complete` raises only FatalRunError or TaskFailedError; every HTTP attempt, successful or not,
is reported once to `on_call` as a CallRecord with its real usage and cost.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from agen.config import ModelConfig, Price
from agen.cost import cost_usd
from agen.errors import (BadResponseError, FatalRunError, ProviderError, TaskFailedError, ThrottledError)
from agen.providers.headers import parse_rate_limits
from agen.providers.lane import Lane, Pacer
from agen.providers.retry import RetryPolicy, retry_delay
from agen.providers.transport import HttpResult, Transport, classify, request_id_of
from agen.providers.wire import (ANTHROPIC_VERSION, Parsed, WireError, anthropic_body, estimate_tokens,
                                 openai_body, parse_anthropic, parse_openai)
from agen.types import CallRecord, ChatRequest, Completion, Usage

_OUTCOME = {ThrottledError: "throttle", BadResponseError: "bad_response", FatalRunError: "fatal_run",
            TaskFailedError: "fatal_task"}


_STATUS_KEYS = {s: f"status/{s}" for s in (200, 400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529)}


class _Secret:
    """Holds an API key; its repr never shows it."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>" if self.value else "<none>"


def outcome_of(err: ProviderError) -> str:
    for cls, name in _OUTCOME.items():
        if isinstance(err, cls):
            return name
    return "capacity"


def endpoint_url(provider: str, base_url: str) -> str:
    base = base_url.rstrip("/")
    if provider == "anthropic":
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")
    return base + "/chat/completions"


class ModelClient:
    """Calls one configured model (one lane), shared by every stage that uses it."""

    def __init__(self, name: str, cfg: ModelConfig, *, transport: Transport, base_url: str, price: Price,
                 api_key: str | None = None, on_call: Callable[[CallRecord], None] | None = None,
                 lane: Lane | None = None, policy: RetryPolicy | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.provider = cfg.provider
        self.supports_n = cfg.supports_n and cfg.provider == "openai"
        self.price = price
        self._url = endpoint_url(cfg.provider, base_url)
        self._transport = transport
        self._key = _Secret(api_key)
        self._on_call = on_call
        self.lane = lane or Lane(name, max_concurrency=cfg.max_concurrency, pacer=Pacer(rpm=cfg.rpm, tpm=cfg.tpm))
        self.policy = policy or RetryPolicy(max_retries=cfg.max_retries, bad_response_retries=cfg.bad_response_retries)
        base = {"content-type": "application/json", "accept": "application/json"}
        if cfg.provider == "anthropic":
            base["anthropic-version"] = ANTHROPIC_VERSION
        base.update(cfg.headers)
        self._static_headers = base
        self._parse = parse_anthropic if cfg.provider == "anthropic" else parse_openai
        self._rl_probe = (("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-remaining",
                           "anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-output-tokens-remaining")
                          if cfg.provider == "anthropic" else
                          ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
                           "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens"))
        self._fatal: FatalRunError | None = None
        self._stats: Counter[str] = Counter()
        self._cost = 0.0

    def __repr__(self) -> str:
        return f"ModelClient(name={self.name!r}, provider={self.provider!r}, model={self.cfg.model!r}, url={self._url!r})"

    # ---------------------------------------------------------------- public
    async def complete(self, req: ChatRequest) -> Completion:
        """One chat completion with `req.n` choices. Raises FatalRunError or TaskFailedError only."""
        self._raise_if_fatal()
        if req.n > 1 and not self.supports_n:
            return await self._fan_out(req)
        return await self._call(req, req.n)

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

    # ---------------------------------------------------------------- internals
    def _raise_if_fatal(self) -> None:
        f = self._fatal
        if f is not None:
            raise FatalRunError(f.message, provider=f.provider, model=f.model, status=f.status, code=f.code,
                                request_id=f.request_id)

    def _set_fatal(self, err: FatalRunError) -> None:
        if self._fatal is None:
            self._fatal = err
            self.lane.close(FatalRunError(f"refused: the run already failed: {err.message}", provider=err.provider,
                                          model=err.model, status=err.status, code=err.code,
                                          request_id=err.request_id))

    async def _fan_out(self, req: ChatRequest) -> Completion:
        """n>1 on an endpoint without `n`: n single calls (seeds s..s+n-1 if seeded), texts in order."""
        subs = [self._call(_with(req, None if req.seed is None else req.seed + i), 1) for i in range(req.n)]
        results = await asyncio.gather(*subs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for e in errors:
                if isinstance(e, FatalRunError):
                    raise e
            raise errors[0]
        done: list[Completion] = results  # type: ignore[assignment]
        usage = sum((c.usage for c in done), Usage())
        return Completion(
            texts=tuple(t for c in done for t in c.texts), usage=usage, cost_usd=sum(c.cost_usd for c in done),
            model=self.name, request_id=done[0].request_id, latency_s=max(c.latency_s for c in done),
            attempts=sum(c.attempts for c in done), finish_reasons=tuple(f for c in done for f in c.finish_reasons))

    def _headers(self) -> dict[str, str]:
        h = dict(self._static_headers)
        key = self._key.value
        if key:
            if self.provider == "anthropic":
                h["x-api-key"] = key
            else:
                h["authorization"] = "Bearer " + key
        return h

    def _body(self, req: ChatRequest, n: int) -> bytes:
        if self.provider == "anthropic":
            doc: dict[str, Any] = anthropic_body(req, self.cfg.model, self.cfg.extra_params)
        else:
            doc = openai_body(req, self.cfg.model, self.cfg.extra_params, n)
        return orjson.dumps(doc)

    def _record(self, req: ChatRequest, outcome: str, status: int | None, usage: Usage, cost: float,
                latency: float, request_id: str | None) -> None:
        st = self._stats
        st["requests"] += 1
        st["outcome/" + outcome] += 1
        if status is not None:
            st[_STATUS_KEYS.get(status) or f"status/{status}"] += 1
        if usage.input_tokens or usage.output_tokens:
            st["tokens/input"] += usage.input_tokens
            st["tokens/cached_input"] += usage.cached_input_tokens
            st["tokens/output"] += usage.output_tokens
            st["tokens/reasoning"] += usage.reasoning_tokens
        self._cost += cost
        if self._on_call is not None:
            self._on_call(CallRecord(ts=time.time(), model=self.name, stage=req.stage, task_id=req.task_id,
                                     outcome=outcome, status=status, usage=usage, cost_usd=cost,
                                     latency_s=latency, request_id=request_id))

    async def _call(self, req: ChatRequest, n: int) -> Completion:
        body = self._body(req, n)
        est = estimate_tokens(req, n)
        retries = bad = 0
        t_start = time.perf_counter()
        while True:
            self._raise_if_fatal()
            ticket = await self.lane.acquire(est, front=retries > 0)
            usage: Usage | None = None
            res: HttpResult | None = None
            try:
                res = await self._transport.post(self._url, body, self._headers())
            except ProviderError as exc:  # transport failure (CapacityError)
                err: ProviderError = exc
            except BaseException:  # cancelled mid-call: give the slot back
                self.lane.release(ticket, None)
                raise
            else:
                if any(k in res.headers for k in self._rl_probe):
                    self.lane.observe(parse_rate_limits(res.headers, self.provider), ticket)
                if 200 <= res.status < 300:
                    try:
                        parsed: Parsed = self._parse(orjson.loads(res.body))
                    except (WireError, orjson.JSONDecodeError) as exc:
                        usage = getattr(exc, "usage", None)
                        err = BadResponseError(str(exc), provider=self.provider, model=self.name,
                                               status=res.status, code=getattr(exc, "code", None) or "bad_response",
                                               request_id=request_id_of(res.headers))
                    else:
                        self.lane.release(ticket, parsed.usage.total_tokens)
                        cost = cost_usd(parsed.usage, self.price)
                        rid = request_id_of(res.headers) or parsed.request_id
                        self._record(req, "ok", res.status, parsed.usage, cost, res.latency_s, rid)
                        return Completion(texts=parsed.texts, usage=parsed.usage, cost_usd=cost, model=self.name,
                                          request_id=rid, latency_s=time.perf_counter() - t_start,
                                          attempts=retries + 1, finish_reasons=parsed.finish_reasons)
                else:
                    err = classify(self.provider, self.name, res.status, res.body, res.headers, self._key.value)
            # ---- a failed attempt
            u = usage or Usage()
            cost = cost_usd(u, self.price) if usage else 0.0
            self._record(req, outcome_of(err), err.status, u, cost, res.latency_s if res else 0.0, err.request_id)
            delay = retry_delay(err, retries_done=retries, bad_responses_done=bad, policy=self.policy)
            if isinstance(err, FatalRunError):
                self._set_fatal(err)  # before release: the next waiter must not be admitted
            elif isinstance(err, ThrottledError):
                self.lane.throttled(ticket, delay)
            self.lane.release(ticket, u.total_tokens if res is not None else None)
            if isinstance(err, FatalRunError):
                self._stats["fatal_run"] += 1
                raise err
            if isinstance(err, TaskFailedError):
                self._stats["task_failed"] += 1
                raise err
            if delay is None:
                self._stats["retry/exhausted"] += 1
                raise TaskFailedError(f"gave up after {retries + 1} attempts; last: {err.message}",
                                      provider=err.provider, model=self.name, status=err.status, code=err.code,
                                      request_id=err.request_id)
            self._stats["retry/count"] += 1
            self._stats[f"retry/reason_count/{err.status if err.status is not None else err.code or 'transport'}"] += 1
            retries += 1
            bad += isinstance(err, BadResponseError)
            if not isinstance(err, ThrottledError) and delay > 0:
                await asyncio.sleep(delay)


def _with(req: ChatRequest, seed: int | None) -> ChatRequest:
    return ChatRequest(messages=req.messages, max_tokens=req.max_tokens, n=1, temperature=req.temperature,
                       top_p=req.top_p, seed=seed, stage=req.stage, task_id=req.task_id, extra=req.extra)
