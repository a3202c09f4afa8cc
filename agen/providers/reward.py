"""A reward-model endpoint's client: vLLM's Pooling API (`POST /pooling`), one scalar per (prompt, response).

    client = RewardClient("rm", cfg, session=session, base_url="http://host:8000/v1", price=price,
                          on_call=ledger.write)
    r = await client.score(prompt, response, stage="propose.rip", task_id="…/r3")   # r.value: float

Request (vLLM's chat-style pooling input; the chat template of the reward model is applied
server-side):

    {"model": "<wire id>", "messages": [{"role": "user", "content": prompt},
                                        {"role": "assistant", "content": response}], **extra_params}

Response (vLLM's PoolingResponse):

    {"id": "pool-…", "object": "list", "created": 0, "model": "…",
     "data": [{"index": 0, "object": "pooling", "data": [3.25]}],
     "usage": {"prompt_tokens": 412, "total_tokens": 412, "completion_tokens": 0}}

`data[0].data` is a scalar, `[score]` (sequence-classification reward models) or one row per
token (`ALL` pooling, e.g. internlm2-reward); the reward is the last number, i.e. the score at
the final token. The URL is the server root + `/pooling` (a trailing `/v1` in base_url is
dropped, since vLLM serves the Pooling API outside `/v1`).

Errors are classified, retried and reported exactly as `ModelClient` does it (the transport's
`classify`, `retry.retry_delay`, a `Lane` for concurrency and rate limits); `score` raises only
FatalRunError or TaskFailedError, and every HTTP attempt reaches `on_call` once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from agen.config import ModelConfig, Price
from agen.cost import cost_usd
from agen.errors import BadResponseError, FatalRunError, ProviderError, TaskFailedError, ThrottledError
from agen.providers.headers import parse_rate_limits
from agen.providers.lane import Lane, Pacer
from agen.providers.retry import RetryPolicy, retry_delay
from agen.providers.transport import HttpResult, Transport, classify, request_id_of
from agen.types import CallRecord, Usage

__all__ = ["Reward", "RewardClient", "parse_pooling", "pooling_url"]

_OUTCOME = ((ThrottledError, "throttle"), (BadResponseError, "bad_response"), (FatalRunError, "fatal_run"),
            (TaskFailedError, "fatal_task"))
_RL_PROBE = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-limit-requests",
             "x-ratelimit-limit-tokens")


@dataclass(frozen=True, slots=True)
class Reward:
    """One scored response: the reward, what it cost, and how many attempts it took."""

    value: float
    usage: Usage
    cost_usd: float
    model: str  # the configured model name (the lane)
    request_id: str | None = None
    latency_s: float = 0.0
    attempts: int = 1


class _BadBody(ValueError):
    def __init__(self, message: str, usage: Usage | None) -> None:
        super().__init__(message)
        self.usage = usage


def pooling_url(base_url: str) -> str:
    """`http://host:8000/v1` or `http://host:8000` -> `http://host:8000/pooling`."""
    base = base_url.rstrip("/")
    return base.removesuffix("/v1") + "/pooling"


def _last_number(x: Any) -> float | None:
    while isinstance(x, list):
        if not x:
            return None
        x = x[-1]
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def parse_pooling(doc: Any) -> tuple[float, Usage]:
    """(reward, usage) from a PoolingResponse; raises ValueError (`.usage` set if billed) if unusable."""
    if not isinstance(doc, dict):
        raise _BadBody("200 body is not a JSON object", None)
    u = doc.get("usage")
    usage = None
    if isinstance(u, dict) and isinstance(u.get("prompt_tokens"), int):
        usage = Usage(input_tokens=u["prompt_tokens"], output_tokens=int(u.get("completion_tokens") or 0))
    if doc.get("error"):
        raise _BadBody(f"error inside a 200 body: {str(doc['error'])[:200]}", usage)
    data = doc.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise _BadBody("200 body has no pooling data", usage)
    value = _last_number(data[0].get("data"))
    if value is None or not math.isfinite(value):
        raise _BadBody("pooling data holds no finite number", usage)
    if usage is None:
        raise _BadBody("200 body has no usage", None)
    return value, usage


class RewardClient:
    """Scores responses with one reward-model endpoint (one lane), on a session the caller owns."""

    def __init__(self, name: str, cfg: ModelConfig, *, session: aiohttp.ClientSession, base_url: str,
                 price: Price, api_key: str | None = None, on_call: Callable[[CallRecord], None] | None = None,
                 lane: Lane | None = None, policy: RetryPolicy | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.price = price
        self._url = pooling_url(base_url)
        self._transport = Transport(session, "openai", name, cfg.connect_timeout_s, cfg.read_timeout_s)
        self._headers = {"content-type": "application/json", "accept": "application/json", **cfg.headers}
        if api_key:
            self._headers["authorization"] = "Bearer " + api_key
        self._key = api_key
        self._on_call = on_call
        self.lane = lane or Lane(name, max_concurrency=cfg.max_concurrency, pacer=Pacer(rpm=cfg.rpm, tpm=cfg.tpm))
        self.policy = policy or RetryPolicy(max_retries=cfg.max_retries, bad_response_retries=cfg.bad_response_retries)
        self._fatal: FatalRunError | None = None
        self._stats: Counter[str] = Counter()
        self._cost = 0.0

    def __repr__(self) -> str:
        return f"RewardClient(name={self.name!r}, model={self.cfg.model!r}, url={self._url!r})"

    @property
    def failed(self) -> FatalRunError | None:
        """The run-fatal error this client saw, if any; every later call raises it."""
        return self._fatal

    def statistics(self) -> dict[str, int | float]:
        out: dict[str, int | float] = dict(self._stats)
        out["cost_usd"] = self._cost
        out["fatal"] = int(self._fatal is not None)
        out.update(self.lane.statistics())
        return out

    async def score(self, prompt: str, response: str, *, stage: str = "reward", task_id: str = "") -> Reward:
        """The reward of `response` to `prompt`. Raises FatalRunError or TaskFailedError only."""
        doc: dict[str, Any] = {"model": self.cfg.model,
                               "messages": [{"role": "user", "content": prompt},
                                            {"role": "assistant", "content": response}]}
        doc.update(self.cfg.extra_params)
        body = orjson.dumps(doc)
        est = (len(prompt) + len(response)) // 4 + 8
        retries = bad = 0
        t_start = time.perf_counter()
        while True:
            self._raise_if_fatal()
            ticket = await self.lane.acquire(est, front=retries > 0)
            usage: Usage | None = None
            res: HttpResult | None = None
            try:
                res = await self._transport.post(self._url, body, self._headers)
            except ProviderError as exc:  # transport failure (CapacityError)
                err: ProviderError = exc
            except BaseException:
                self.lane.release(ticket, None)
                raise
            else:
                if any(k in res.headers for k in _RL_PROBE):
                    self.lane.observe(parse_rate_limits(res.headers, "openai"), ticket)
                rid = request_id_of(res.headers)
                if 200 <= res.status < 300:
                    try:
                        value, usage = parse_pooling(orjson.loads(res.body))
                    except _BadBody as exc:
                        usage = exc.usage
                        err = BadResponseError(str(exc), provider="openai", model=self.name, status=res.status,
                                               code="bad_response", request_id=rid)
                    except orjson.JSONDecodeError as exc:
                        err = BadResponseError(f"200 body is not JSON: {exc}", provider="openai", model=self.name,
                                               status=res.status, code="bad_response", request_id=rid)
                    else:
                        self.lane.release(ticket, usage.total_tokens)
                        cost = cost_usd(usage, self.price)
                        self._record(stage, task_id, "ok", res.status, usage, cost, res.latency_s, rid)
                        return Reward(value, usage, cost, self.name, rid, time.perf_counter() - t_start, retries + 1)
                else:
                    err = classify("openai", self.name, res.status, res.body, res.headers, self._key)
            # ---- a failed attempt
            u = usage or Usage()
            cost = cost_usd(u, self.price) if usage else 0.0
            self._record(stage, task_id, _outcome(err), err.status, u, cost, res.latency_s if res else 0.0,
                         err.request_id)
            delay = retry_delay(err, retries_done=retries, bad_responses_done=bad, policy=self.policy)
            if isinstance(err, FatalRunError):
                self._set_fatal(err)
            elif isinstance(err, ThrottledError):
                self.lane.throttled(ticket, delay)
            self.lane.release(ticket, u.total_tokens if res is not None else None)
            if isinstance(err, (FatalRunError, TaskFailedError)):
                raise err
            if delay is None:
                self._stats["retry/exhausted"] += 1
                raise TaskFailedError(f"gave up after {retries + 1} attempts; last: {err.message}",
                                      provider=err.provider, model=self.name, status=err.status, code=err.code,
                                      request_id=err.request_id)
            self._stats["retry/count"] += 1
            retries += 1
            bad += isinstance(err, BadResponseError)
            if not isinstance(err, ThrottledError) and delay > 0:
                await asyncio.sleep(delay)

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

    def _record(self, stage: str, task_id: str, outcome: str, status: int | None, usage: Usage, cost: float,
                latency: float, request_id: str | None) -> None:
        self._stats["requests"] += 1
        self._stats["outcome/" + outcome] += 1
        if status is not None:
            self._stats[f"status/{status}"] += 1
        self._stats["tokens/input"] += usage.input_tokens
        self._cost += cost
        if self._on_call is not None:
            self._on_call(CallRecord(ts=time.time(), model=self.name, stage=stage, task_id=task_id, outcome=outcome,
                                     status=status, usage=usage, cost_usd=cost, latency_s=latency,
                                     request_id=request_id))


def _outcome(err: ProviderError) -> str:
    for cls, name in _OUTCOME:
        if isinstance(err, cls):
            return name
    return "capacity"
