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

Errors are classified, retried and reported by the attempt loop `ModelClient` uses too
(`agen.providers.attempts`: the transport's `classify`, `retry.retry_delay`, a `Lane` for
concurrency and rate limits); `score` raises only FatalRunError or TaskFailedError, and every
HTTP attempt reaches `on_call` once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from agen.config import ModelConfig, Price
from agen.providers.attempts import LaneClient
from agen.providers.lane import Lane
from agen.providers.retry import RetryPolicy
from agen.providers.transport import Transport
from agen.providers.wire import WireError
from agen.types import CallRecord, Usage

__all__ = ["Reward", "RewardClient", "parse_pooling", "pooling_url"]


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


class _BadBody(WireError, ValueError):
    """An unusable PoolingResponse: a WireError for the attempt loop, a ValueError for `parse_pooling`'s callers."""


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


class RewardClient(LaneClient):
    """Scores responses with one reward-model endpoint (one lane), on a session the caller owns."""

    def __init__(self, name: str, cfg: ModelConfig, *, base_url: str, price: Price,
                 session: aiohttp.ClientSession | None = None, transport: Transport | None = None,
                 api_key: str | None = None, on_call: Callable[[CallRecord], None] | None = None,
                 lane: Lane | None = None, policy: RetryPolicy | None = None) -> None:
        if transport is None:  # a session the caller owns, through aiohttp
            assert session is not None, "RewardClient needs a session or a transport"
            transport = Transport(session, "openai", name, cfg.connect_timeout_s, cfg.read_timeout_s)
        super().__init__(name, cfg, provider="openai", transport=transport,
                         url=pooling_url(base_url), price=price, api_key=api_key, on_call=on_call, lane=lane,
                         policy=policy)
        self._headers = {"content-type": "application/json", "accept": "application/json", **cfg.headers}
        if api_key:
            self._headers["authorization"] = "Bearer " + api_key

    def __repr__(self) -> str:
        return f"RewardClient(name={self.name!r}, model={self.cfg.model!r}, url={self._url!r})"

    async def score(self, prompt: str, response: str, *, stage: str = "reward", task_id: str = "") -> Reward:
        """The reward of `response` to `prompt`. Raises FatalRunError or TaskFailedError only."""
        doc: dict[str, Any] = {"model": self.cfg.model,
                               "messages": [{"role": "user", "content": prompt},
                                            {"role": "assistant", "content": response}]}
        doc.update(self.cfg.extra_params)
        est = (len(prompt) + len(response)) // 4 + 8
        done = await self._attempt(orjson.dumps(doc), self._headers, est, _parse_body, stage=stage, task_id=task_id)
        return Reward(done.value, done.usage, done.cost_usd, self.name, done.request_id, done.latency_s, done.attempts)

    def _count_tokens(self, usage: Usage) -> None:
        self._stats["tokens/input"] += usage.input_tokens


def _parse_body(body: bytes) -> tuple[float, Usage, None]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _BadBody(f"200 body is not JSON: {exc}") from exc
    value, usage = parse_pooling(doc)
    return value, usage, None
