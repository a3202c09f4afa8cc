"""One model endpoint's client: wire format over the shared attempt loop (lane, retry, ledger hook).

`complete` raises only FatalRunError or TaskFailedError; every HTTP attempt, successful or not,
is reported once to `on_call` as a CallRecord with its real usage and cost. It always delivers
the `n` choices asked for: an endpoint that answers fewer (it ignores `n`) is learned as
`supports_n: false` at once, the missing choices are fetched one per request with the seeds the
caller's range implies (seed+i for choice i), and later calls fan out from the start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from agen.config import ModelConfig, Price
from agen.cost import cost_usd
from agen.errors import FatalRunError, ProviderError, TaskFailedError
from agen.providers.attempts import LaneClient, _Secret
from agen.providers.batch_client import BatchApi
from agen.providers.batch_collector import BatchCollector, BatchSetup
from agen.providers.lane import Lane
from agen.providers.retry import RetryPolicy
from agen.providers.prompt_cache import anthropic_min_tokens
from agen.providers.transport import Transport
from agen.providers.reserve import OutputReserve
from agen.providers.wire import (ANTHROPIC_VERSION, Parsed, anthropic_body, estimate_prompt_tokens, openai_body,
                                 parse_anthropic, parse_openai)
from agen.types import CallRecord, ChatRequest, Completion, Usage

def endpoint_url(provider: str, base_url: str) -> str:
    """The chat URL under `base_url`, keeping its query string (Azure's `?api-version=...`)."""
    parts = urlsplit(base_url)
    base = parts.path.rstrip("/")
    path = base + ("/messages" if base.endswith("/v1") else "/v1/messages") if provider == "anthropic" \
        else base + "/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


class ModelClient(LaneClient):
    """Calls one configured model (one lane), shared by every stage that uses it."""

    def __init__(self, name: str, cfg: ModelConfig, *, transport: Transport, base_url: str, price: Price,
                 api_key: str | None = None, on_call: Callable[[CallRecord], None] | None = None,
                 lane: Lane | None = None, policy: RetryPolicy | None = None,
                 batch: BatchSetup | None = None) -> None:
        super().__init__(name, cfg, provider=cfg.provider, transport=transport,
                         url=endpoint_url(cfg.provider, base_url), price=price, api_key=api_key, on_call=on_call,
                         lane=lane, policy=policy)
        self.facts.state("supports_n", False if cfg.provider == "anthropic" else cfg.supports_n)
        self.reserve = OutputReserve()
        base = {"content-type": "application/json", "accept": "application/json"}
        if cfg.provider == "anthropic":
            base["anthropic-version"] = ANTHROPIC_VERSION
        base.update(cfg.headers)
        self._static_headers = base
        self._sent_headers = _Secret(None)
        self._parse = parse_anthropic if cfg.provider == "anthropic" else parse_openai
        self._cache_min = anthropic_min_tokens(cfg.model, cfg.cache_min_tokens)
        self._mode_for = batch.mode_for if batch is not None else None
        self.batcher = (BatchCollector(self, BatchApi(cfg.provider, base_url, transport, name, self._headers,
                                                      lambda: self._key.value), batch)
                        if batch is not None else None)

    def __repr__(self) -> str:
        return f"ModelClient(name={self.name!r}, provider={self.provider!r}, model={self.cfg.model!r}, url={self._url!r})"

    # ---------------------------------------------------------------- public
    @property
    def supports_n(self) -> bool:
        """Whether one request with `n` is worth sending (stated, learned, or not yet refuted)."""
        return self.facts.get("supports_n") is not False

    async def complete(self, req: ChatRequest) -> Completion:
        """One chat completion with `req.n` choices. Raises FatalRunError or TaskFailedError only."""
        self._raise_if_fatal()
        if req.n > 1 and not self.supports_n:
            return await self._fan_out(req, range(req.n))
        # online without the batch check's coroutine in between: one frame fewer a request
        first = await (self._call_online(req, req.n) if self.batcher is None else self._call(req, req.n))
        got = len(first.texts)
        if got >= req.n:
            return first
        self.facts.learn("supports_n", False, f"asked n={req.n}, got {got} choice(s)")
        rest = await self._fan_out(req, range(got, req.n))
        return _joined([first, rest], self.name)

    # ---------------------------------------------------------------- internals
    async def _fan_out(self, req: ChatRequest, choices: range) -> Completion:
        """Choices `choices` of `req` as single calls (choice i with seed s+i if seeded), in order."""
        subs = [self._call(_with(req, None if req.seed is None else req.seed + i), 1) for i in choices]
        results = await asyncio.gather(*subs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for e in errors:
                if isinstance(e, FatalRunError):
                    raise e
            raise errors[0]
        return _joined(results, self.name)  # type: ignore[arg-type]

    def _headers(self) -> dict[str, str]:
        """The request headers: the same dict every call (aiohttp copies what it is given), held
        like the key it carries (a `_Secret`: no repr of the client shows it)."""
        h = self._sent_headers.value
        if h is None:
            h = dict(self._static_headers)
            key = self._key.value
            if key:
                if self.provider == "anthropic":
                    h["x-api-key"] = key
                else:
                    h["authorization"] = "Bearer " + key
            self._sent_headers.value = h
        return h

    def batch_body(self, req: ChatRequest, n: int) -> dict[str, Any]:
        """The request's body as a line of a batch carries it (the same as online)."""
        if self.provider == "anthropic":
            return anthropic_body(req, self.cfg.model, self.cfg.extra_params, self._cache_min)
        return openai_body(req, self.cfg.model, self.cfg.extra_params, n)

    def _body(self, req: ChatRequest, n: int) -> bytes:
        return orjson.dumps(self.batch_body(req, n))

    def batch_cost(self, usage: Usage) -> float:
        return cost_usd(usage, self.price, batch=True)

    def statistics(self) -> dict[str, int | float]:
        out = super().statistics()
        if self.batcher is not None:
            out.update(self.batcher.statistics())
        return out

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
        """One request for `n` choices: into a batch if its stage or model is in batch mode, else online."""
        if self.batcher is not None and self._mode_for is not None and self._mode_for(req.stage, self.name) == "batch":
            return await self.batcher.request(req, n)
        return await self._call_online(req, n)

    async def _call_online(self, req: ChatRequest, n: int) -> Completion:
        usage_charged = self.facts.get("charges") == "usage"
        out = n * self.reserve.per_choice(req.stage, req.max_tokens, usage_charged)
        done = await self._attempt(lambda: self._body(req, n), self._headers(), estimate_prompt_tokens(req) + out,
                                   self._parse_body, stage=req.stage, task_id=req.task_id, out_tokens=out)
        parsed = done.value
        self.reserve.observe(req.stage, done.usage.output_tokens, len(parsed.texts))
        return Completion(texts=parsed.texts, usage=done.usage, cost_usd=done.cost_usd, model=self.name,
                          request_id=done.request_id, latency_s=done.latency_s, attempts=done.attempts,
                          finish_reasons=parsed.finish_reasons)


def _joined(done: list[Completion], model: str) -> Completion:
    """Several completions of one request as one, choices in order."""
    return Completion(
        texts=tuple(t for c in done for t in c.texts), usage=sum((c.usage for c in done), Usage()),
        cost_usd=sum(c.cost_usd for c in done), model=model, request_id=done[0].request_id,
        latency_s=max(c.latency_s for c in done), attempts=sum(c.attempts for c in done),
        finish_reasons=tuple(f for c in done for f in c.finish_reasons))


def _with(req: ChatRequest, seed: int | None) -> ChatRequest:
    return ChatRequest(messages=req.messages, max_tokens=req.max_tokens, n=1, temperature=req.temperature,
                       top_p=req.top_p, seed=seed, stage=req.stage, task_id=req.task_id, extra=req.extra)
