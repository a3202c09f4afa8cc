"""One model endpoint's client: wire format over the shared attempt loop (lane, retry, ledger hook).

`complete` raises only FatalRunError or TaskFailedError; every HTTP attempt, successful or not,
is reported once to `on_call` as a CallRecord with its real usage and cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from agen.config import ModelConfig, Price
from agen.errors import FatalRunError, ProviderError, TaskFailedError
from agen.providers.attempts import LaneClient
from agen.providers.lane import Lane
from agen.providers.retry import RetryPolicy
from agen.providers.transport import Transport
from agen.providers.wire import (ANTHROPIC_VERSION, Parsed, anthropic_body, estimate_tokens, openai_body,
                                 parse_anthropic, parse_openai)
from agen.types import CallRecord, ChatRequest, Completion, Usage

def endpoint_url(provider: str, base_url: str) -> str:
    base = base_url.rstrip("/")
    if provider == "anthropic":
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")
    return base + "/chat/completions"


class ModelClient(LaneClient):
    """Calls one configured model (one lane), shared by every stage that uses it."""

    def __init__(self, name: str, cfg: ModelConfig, *, transport: Transport, base_url: str, price: Price,
                 api_key: str | None = None, on_call: Callable[[CallRecord], None] | None = None,
                 lane: Lane | None = None, policy: RetryPolicy | None = None) -> None:
        super().__init__(name, cfg, provider=cfg.provider, transport=transport,
                         url=endpoint_url(cfg.provider, base_url), price=price, api_key=api_key, on_call=on_call,
                         lane=lane, policy=policy)
        self.supports_n = cfg.supports_n and cfg.provider == "openai"
        base = {"content-type": "application/json", "accept": "application/json"}
        if cfg.provider == "anthropic":
            base["anthropic-version"] = ANTHROPIC_VERSION
        base.update(cfg.headers)
        self._static_headers = base
        self._parse = parse_anthropic if cfg.provider == "anthropic" else parse_openai

    def __repr__(self) -> str:
        return f"ModelClient(name={self.name!r}, provider={self.provider!r}, model={self.cfg.model!r}, url={self._url!r})"

    # ---------------------------------------------------------------- public
    async def complete(self, req: ChatRequest) -> Completion:
        """One chat completion with `req.n` choices. Raises FatalRunError or TaskFailedError only."""
        self._raise_if_fatal()
        if req.n > 1 and not self.supports_n:
            return await self._fan_out(req)
        return await self._call(req, req.n)

    # ---------------------------------------------------------------- internals
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

    def _parse_body(self, body: bytes) -> tuple[Parsed, Usage, str | None]:
        parsed = self._parse(orjson.loads(body))
        return parsed, parsed.usage, parsed.request_id

    def _count_tokens(self, usage: Usage) -> None:
        if usage.input_tokens or usage.output_tokens:
            st = self._stats
            st["tokens/input"] += usage.input_tokens
            st["tokens/cached_input"] += usage.cached_input_tokens
            st["tokens/output"] += usage.output_tokens
            st["tokens/reasoning"] += usage.reasoning_tokens

    def _count_refusal(self, err: FatalRunError | TaskFailedError) -> None:
        self._stats["fatal_run" if isinstance(err, FatalRunError) else "task_failed"] += 1

    def _count_retry(self, err: ProviderError) -> None:
        self._stats[f"retry/reason_count/{err.status if err.status is not None else err.code or 'transport'}"] += 1

    async def _call(self, req: ChatRequest, n: int) -> Completion:
        done = await self._attempt(lambda: self._body(req, n), self._headers(), estimate_tokens(req, n), self._parse_body,
                                   stage=req.stage, task_id=req.task_id)
        parsed = done.value
        return Completion(texts=parsed.texts, usage=done.usage, cost_usd=done.cost_usd, model=self.name,
                          request_id=done.request_id, latency_s=done.latency_s, attempts=done.attempts,
                          finish_reasons=parsed.finish_reasons)


def _with(req: ChatRequest, seed: int | None) -> ChatRequest:
    return ChatRequest(messages=req.messages, max_tokens=req.max_tokens, n=1, temperature=req.temperature,
                       top_p=req.top_p, seed=seed, stage=req.stage, task_id=req.task_id, extra=req.extra)
