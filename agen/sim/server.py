"""The simulated provider: an aiohttp server speaking OpenAI's and Anthropic's wire formats.

Routes (base URL `http://HOST:PORT`; OpenAI SDKs use `base_url + "/v1"`, Anthropic SDKs the bare
base URL):

    POST /v1/chat/completions   OpenAI chat completions (n, seed, max_tokens, stream: SSE)
    POST /v1/messages           Anthropic Messages (system, max_tokens required, anthropic-version, stream)
    POST /pooling               vLLM's Pooling API as served for reward models: one scalar per input
    GET  /v1/models             OpenAI model list
    GET  /sim/stats             per-model requests, status counts, billed usage (what responses said)
    GET  /sim/received?after=T  count of model requests received, receive times (unix) of those after T
    POST /sim/script            queue scripted responses for a model (FIFO, before normal processing;
                                `"replace": true` drops the queue first)
    POST /sim/reset             clear stats, scripts, buckets, quota counters, prompt cache, batches, files, batch_dir
    GET  /sim/batch_stats       batches submitted per wire, custom_ids submitted twice, batch lines' usage
    /v1/files, /v1/batches      OpenAI's Files and Batch APIs (agen.sim.files, agen.sim.openai_batches)
    /v1/messages/batches        Anthropic's Message Batches API (agen.sim.anthropic_batches)

A request goes: scripted response? -> auth -> anthropic-version -> model known? -> body valid?
-> context window -> quota -> rate limits -> capacity (`faults.capacity`) -> random faults -> latency
-> answer.
Stats `input_tokens` follow agen's `Usage` convention: all prompt tokens, cached or not. Requests
whose body names no model (unparseable, too large) are counted under `_unknown`; a request whose
client hung up before the answer is counted with status 499. Prompt caching
(`agen.sim.prompt_cache`) is automatic on the OpenAI wire and needs `cache_control` breakpoints on
the Anthropic wire, as the real APIs do; a model with `prompt_cache: false` never caches.
"""

from __future__ import annotations

import asyncio
import collections
from array import array
import itertools
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from agen.sim import limits, sse, wire
from agen.sim.anthropic_batches import MessageBatchRoutes
from agen.sim.batches import BatchBook
from agen.sim.files import FileRoutes
from agen.sim.openai_batches import BatchRoutes, write_results
from agen.sim.config import SimConfig, SimModel, load_sim_config, parse_sim_config
from agen.sim.model import count_tokens, generate, prompt_digest, sample_seed, truncate_tokens
from agen.sim.open_world import reward_value
from agen.sim.prompt_cache import NO_USE, CacheUse, PromptCache, Segment

__all__ = ["LISTENING", "SimServer", "build_app", "serve", "start_sim"]

JSON = "application/json"
_log = logging.getLogger("agen.sim")
LISTENING = "AGEN_SIM_LISTENING"  # first stdout line of `serve`: "AGEN_SIM_LISTENING http://HOST:PORT"
LISTEN_BACKLOG = 8192


def raise_nofile_limit() -> int:
    """Lift this process's open-files soft limit to its hard limit (one socket per client connection;
    the common default of 1024 makes `accept` fail with EMFILE past ~1,000 connections). Returns it."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. macOS refuses RLIM_INFINITY: keep what we have
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class ModelStats:
    requests: int = 0
    status: collections.Counter[int] = field(default_factory=collections.Counter)
    input_tokens: int = 0  # all prompt tokens, incl. cached and cache-written
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "status": {str(k): v for k, v in sorted(self.status.items())},
                "input_tokens": self.input_tokens, "cached_input_tokens": self.cached_input_tokens,
                "cache_write_tokens": self.cache_write_tokens, "output_tokens": self.output_tokens,
                "reasoning_tokens": self.reasoning_tokens}


class ModelState:
    """Mutable per-model state: buckets, quota counter, scripts, prompt cache."""

    def __init__(self, cfg: SimModel, now: float, defaults: SimConfig) -> None:
        self.cfg = cfg
        self.started: float | None = None  # the model's first request: outage windows count from there
        self.busy = 0  # requests being answered now (in their latency): `faults.capacity` refuses beyond it
        q = cfg.quirks

        def limiter(limit: float | None) -> limits.Limiter | None:
            if not limit:
                return None
            bucket: limits.Limiter = (limits.FixedWindow(limit, now, q.window_s) if q.window == "fixed"
                                      else limits.TokenBucket(limit, now))
            if cfg.buckets_start == "empty":
                bucket.level = 0.0  # (a fixed window refills at its next reset)
            return bucket

        self.req_bucket = limiter(cfg.rpm)
        self.tok_bucket = limiter(cfg.tpm)
        self.calls = 0
        self.cache = (PromptCache(cfg.cache_capacity or defaults.cache_capacity, cfg.cache_ttl_s or defaults.cache_ttl_s)
                      if cfg.prompt_cache else None)

    def rl_headers(self, fmt: wire.Wire, now: float) -> dict[str, str]:
        style = self.cfg.quirks.headers
        if (self.req_bucket is None and self.tok_bucket is None) or style == "none":
            return {}
        if style == "litellm":
            return limits.litellm_headers(self.req_bucket, self.tok_bucket, now)
        if fmt == "openai":
            return limits.openai_headers(self.req_bucket, self.tok_bucket, now)
        return limits.anthropic_headers(self.req_bucket, self.tok_bucket, now)


class SimState:
    """Everything the handlers share; reset by POST /sim/reset."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.ids = itertools.count(1)
        self.samples = itertools.count(1_000_000)  # sample indices for requests without a seed
        self.prefix = random.Random(cfg.seed ^ 0x5EED).getrandbits(32)
        self.reset()

    def reset(self) -> None:
        now = time.monotonic()
        if hasattr(self, "batches"):
            self.batches.close(forget=True)
        self.batches = BatchBook(self.cfg, {"openai": write_results})  # forgotten by a reset, as by a restart
        self.models = {name: ModelState(m, now, self.cfg) for name, m in self.cfg.models.items()}
        self.stats: dict[str, ModelStats] = collections.defaultdict(ModelStats)
        self.scripts: dict[str, collections.deque[dict[str, Any]]] = collections.defaultdict(collections.deque)
        self.received = array("d")  # wall-clock time each model request reached a handler (8 bytes each)
        self.ticks = array("d")  # (wall-clock time, lag s) of the loop-lag timer, flat (see `received`)

    def next_id(self) -> str:
        return f"{self.prefix:08x}{next(self.ids):016x}"


_STATE_KEY: web.AppKey[SimState] = web.AppKey("sim_state", SimState)


class _Reply(Exception):
    """Raised inside request processing to answer at once with an error (status, body, headers)."""

    def __init__(self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _blocks(content: Any) -> list[tuple[str, bool]]:
    """(text, carries cache_control) of each text block of a message's content (or `system`)."""
    if isinstance(content, str):
        return [(content, False)]
    if isinstance(content, list):
        return [(b["text"], isinstance(b.get("cache_control"), dict)) for b in content
                if isinstance(b, dict) and isinstance(b.get("text"), str)]
    if content is None:
        return []
    raise ValueError("content must be a string or a list of text blocks")


@dataclass(slots=True)
class Prompt:
    key: str  # the full prompt (roles and contents), seeds every sample
    last_user: str  # what the request asks: its system text and last user message (see _prompt)
    tokens: int  # billed prompt tokens: the contents only, no per-message overhead
    parts: list[tuple[str, str]]  # (role, text) in order
    segments: list[Segment]  # the text blocks in order, for the prompt cache


def _prompt(system: Any, messages: Any) -> Prompt:
    """The request's prompt. A model reads its instructions wherever they are, so what the sim
    answers is decided by the system text and the last user message together (a cache-aware
    prompt puts the static instructions in the system message and the examples in the user's)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    parts: list[tuple[str, str]] = []
    segments: list[Segment] = []

    def add(role: str, content: Any) -> str:
        blocks = _blocks(content)
        segments.extend(Segment(role, t, bp) for t, bp in blocks)
        text = "\n".join(t for t, _ in blocks)
        parts.append((role, text))
        return text

    if system is not None:
        add("system", system)
    last_user = ""
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError("each message must be an object with a role")
        text = add(m["role"], m.get("content"))
        if m["role"] == "user":
            last_user = text
    asks = "\n\n".join([t for r, t in parts if r == "system"] + [last_user])
    tokens = sum(count_tokens(seg.text) for seg in segments)
    return Prompt("\x01".join(f"{r}\x00{t}" for r, t in parts), asks, tokens, parts, segments)


def _cache_use(st: SimState, ms: ModelState, fmt: wire.Wire, prompt: Prompt, now: float) -> CacheUse:
    """What the model's prompt cache serves and stores for this prompt, as the wire reports it."""
    if ms.cache is None:
        return NO_USE
    lo = ms.cfg.cache_min_tokens or st.cfg.cache_min_tokens
    if fmt == "openai":
        return ms.cache.automatic(prompt.segments, lo, now)
    return ms.cache.breakpoints(prompt.segments, lo, now)


class Handlers:
    def __init__(self, st: SimState) -> None:
        self.st = st

    # ------------------------------------------------------------ control routes

    async def stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({k: v.as_dict() for k, v in self.st.stats.items()}), content_type=JSON)

    async def received(self, request: web.Request) -> web.Response:
        """GET /sim/received?after=T: how many model requests reached the sim, the wall-clock
        receive times of those after T (the server's own record, e.g. against a client's signal time),
        and `lag_ticks`: [time, lag s] of the sim's own 20 ms timer after T — a request received while
        the sim's loop ran `lag` late may have been waiting in its socket since `time - lag`."""
        try:
            after = float(request.query.get("after", "inf"))
        except ValueError:
            return web.Response(status=400, body=b'{"error":"after must be a number (unix time)"}', content_type=JSON)
        times, ticks = self.st.received, self.st.ticks
        first = next((i for i in range(0, len(ticks), 2) if ticks[i] > after), len(ticks))
        return web.Response(body=orjson.dumps({"count": len(times), "after": [t for t in times if t > after],
                                               "lag_ticks": [ticks[i:i + 2].tolist() for i in range(first, min(len(ticks), first + 2000), 2)]}),
                            content_type=JSON)

    async def batch_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.st.batches.stats()), content_type=JSON)

    async def reset(self, request: web.Request) -> web.Response:
        self.st.reset()
        return web.Response(body=b'{"ok":true}', content_type=JSON)

    async def script(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            model = data["model"]
            items = data["responses"]
            if not isinstance(model, str) or not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return web.Response(status=400, body=b'{"error":"expected {\\"model\\": str, \\"responses\\": [obj]}"}',
                                content_type=JSON)
        if data.get("replace") is True:  # drop what is still queued (e.g. hangs nobody consumed)
            self.st.scripts[model].clear()
        self.st.scripts[model].extend(items)
        return web.Response(body=orjson.dumps({"ok": True, "queued": len(self.st.scripts[model])}), content_type=JSON)

    async def models(self, request: web.Request) -> web.Response:
        """GET /v1/models; like the real APIs it wants the key (either wire's header)."""
        key = self.st.cfg.require_api_key
        if key is not None:
            auth = request.headers.get("Authorization", "")
            if (auth[7:] if auth.startswith("Bearer ") else request.headers.get("x-api-key", "")) != key:
                fmt: wire.Wire = "anthropic" if "anthropic-version" in request.headers else "openai"
                status, body = wire.error(fmt, "auth", "Incorrect API key provided." if fmt == "openai"
                                          else "invalid x-api-key", "req_" + self.st.next_id())
                return web.Response(status=status, body=orjson.dumps(body), content_type=JSON)
        created = 1_700_000_000
        data = [{"id": name, "object": "model", "created": created, "owned_by": "agen-sim"} for name in self.st.models]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON,
                            headers={"x-request-id": "req_" + self.st.next_id()})

    # ------------------------------------------------------------ model routes

    async def openai(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai")

    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "anthropic")

    async def pooling(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai", pooling=True)

    def _framed(self, request: web.Request, resp: web.Response) -> web.Response:
        """The `http` options applied to an answer: chunked, gzip, or the connection closed after it."""
        opts = self.st.cfg.http
        if opts.chunked:
            resp.enable_chunked_encoding()
        if opts.gzip and "gzip" in request.headers.get("accept-encoding", ""):
            resp.enable_compression(web.ContentCoding.gzip)
        if opts.close_p and self.st.rng.random() < opts.close_p:
            resp.force_close()
            resp.headers["connection"] = "close"
        elif opts.advertise_keepalive:
            resp.headers["keep-alive"] = f"timeout={opts.keepalive_s:g}"
        return resp

    async def _serve(self, request: web.Request, fmt: wire.Wire, pooling: bool = False) -> web.StreamResponse:
        st = self.st
        st.received.append(time.time())
        rid = "req_" + st.next_id()
        id_header = "x-request-id" if fmt == "openai" else "request-id"
        box: list[Any] = ["_unknown", None, None]  # model name, usage to bill, stream options (None: no stream)
        status = 499  # client closed the connection before we answered
        try:
            try:
                status, body, headers = await self._process(request, fmt, rid, box, pooling)
            except _Reply as r:
                status, body, headers = r.status, r.body, r.headers
            except Exception:  # a sim bug: answer like a provider would, and say so on stderr
                _log.exception("agen sim: unhandled error while answering %s", request.path)
                status, body = wire.error(fmt, "server", wire._DEFAULT_MESSAGE[500], rid)
                headers = {}
            ms = st.models.get(box[0])
            if ms is not None and (ms.req_bucket is not None or ms.tok_bucket is not None):
                headers = {**ms.rl_headers(fmt, time.monotonic()), **headers}  # limits on every response
            headers[id_header] = rid
            if status == 200 and box[2] is not None and isinstance(body, dict):
                return await sse.stream(request, fmt, body, headers, box[2])
            if not isinstance(body, bytes):
                body = orjson.dumps(body)
            return self._framed(request, web.Response(status=status, body=body, headers=headers, content_type=JSON))
        finally:
            s = st.stats[box[0]]
            s.requests += 1
            s.status[status] += 1
            u = box[1]
            if u is not None and status == 200:
                s.input_tokens += u[0]
                s.cached_input_tokens += u[1]
                s.cache_write_tokens += u[2]
                s.output_tokens += u[3]

    async def answer_line(self, fmt: wire.Wire, data: dict[str, Any], rid: str
                          ) -> tuple[int, Any, tuple[int, int, int, int] | None]:
        """One batch line: (status, body, billed usage or None), errors as the online endpoint words them."""
        box: list[Any] = ["_unknown", None, None]
        try:
            status, body, _ = await self.answer(data, fmt, rid, box, {}, batch=True)
        except _Reply as r:
            status, body = r.status, r.body
        if isinstance(body, bytes):
            body = orjson.loads(body)
        return status, body, box[1]

    async def _process(self, request: web.Request, fmt: wire.Wire, rid: str, box: list[Any],
                       pooling: bool = False) -> tuple[int, bytes | dict[str, Any], dict[str, str]]:
        st = self.st
        cfg = st.cfg
        if request.content_length is not None and request.content_length > cfg.max_body_bytes:
            raise _Reply(*wire.error(fmt, "too_large", "Request exceeds the maximum allowed number of bytes.", rid))
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw = b""
            too_large = True
        else:
            too_large = len(raw) > cfg.max_body_bytes
        if too_large:
            raise _Reply(*wire.error(fmt, "too_large", "Request exceeds the maximum allowed number of bytes.", rid))
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Reply(*wire.error(fmt, "bad_request", "We could not parse the JSON body of your request.", rid)) from None
        if not isinstance(data, dict):
            raise _Reply(*wire.error(fmt, "bad_request", "The request body must be a JSON object.", rid))
        return await self.answer(data, fmt, rid, box, request.headers, pooling)

    async def answer(self, data: dict[str, Any], fmt: wire.Wire, rid: str, box: list[Any], headers: Any,
                     pooling: bool = False, batch: bool = False) -> tuple[int, bytes | dict[str, Any], dict[str, str]]:
        """Answer one parsed request body: (status, body, headers); errors are raised as `_Reply`.

        `batch=True` answers a line of a batch (`agen.sim.batches`): the batch was authenticated when
        it was created, and a line skips scripts, the online rate limits, random faults and latency
        (a batch has its own delay, errors and limits), so only the model, the world and the
        prompt cache decide what it says and bills, exactly as online.
        """
        st = self.st
        cfg = st.cfg
        model = data.get("model")
        if not isinstance(model, str):
            raise _Reply(*wire.error(fmt, "bad_request", "model: field required", rid, param="model"))
        box[0] = model

        scripted: dict[str, Any] | None = None
        extra: dict[str, str] = {}
        queue = None if batch else st.scripts.get(model)
        if queue:
            scripted = queue.popleft()
            reply, extra = await self._scripted(scripted, fmt, rid)
            if reply is not None:
                return reply

        # auth, then headers, then the model
        key = None if batch else cfg.require_api_key
        if key is not None:
            if fmt == "openai":
                auth = headers.get("Authorization", "")
                given = auth[7:] if auth.startswith("Bearer ") else ""
            else:
                given = headers.get("x-api-key", "")
            if given != key:
                msg = ("You didn't provide an API key." if not given and fmt == "openai" else
                       f"Incorrect API key provided: {given[:8]}****. You can find your API key at "
                       "https://platform.openai.com/account/api-keys." if fmt == "openai" else "invalid x-api-key")
                raise _Reply(*wire.error(fmt, "auth", msg, rid))
        if fmt == "anthropic" and not batch and "anthropic-version" not in headers:
            raise _Reply(*wire.error(fmt, "bad_request", "anthropic-version: header is required", rid))
        ms = st.models.get(model)
        if ms is None:
            msg = (f"The model `{model}` does not exist or you do not have access to it." if fmt == "openai"
                   else f"model: {model}")
            raise _Reply(*wire.error(fmt, "not_found", msg, rid, param="model"))
        now = time.monotonic()
        rl = ms.rl_headers(fmt, now)

        # validate the body
        pairs: list[tuple[str, str]] = []  # pooling: (prompt, response) per input
        try:
            if pooling:
                prompt, pairs = _pooling_inputs(data)
                max_tokens, n = 1, 1
            elif fmt == "openai":
                max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
                if max_tokens is None:
                    max_tokens = ms.cfg.default_max_tokens
                n = data.get("n") or 1
                if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
                    raise ValueError("n must be an integer between 1 and 128")
                prompt = _prompt(None, data.get("messages"))
            else:
                max_tokens = data.get("max_tokens")
                if max_tokens is None:
                    raise ValueError("max_tokens: Field required")
                n = 1
                prompt = _prompt(data.get("system"), data.get("messages"))
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                raise ValueError("max_tokens must be a positive integer")
            seed = data.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise ValueError("seed must be an integer")
            if not pooling and data.get("stream"):
                opts = data.get("stream_options") or {}
                box[2] = {"include_usage": bool(isinstance(opts, dict) and opts.get("include_usage"))}
        except ValueError as exc:
            raise _Reply(*wire.error(fmt, "bad_request", str(exc), rid), rl) from None
        window = ms.cfg.context_window
        if prompt.tokens > window:
            msg = (f"This model's maximum context length is {window} tokens. However, your messages resulted in "
                   f"{prompt.tokens} tokens. Please reduce the length of the messages." if fmt == "openai"
                   else f"prompt is too long: {prompt.tokens} tokens > {window} maximum")
            raise _Reply(*wire.error(fmt, "context_length", msg, rid, param="messages"), rl)

        quirks = ms.cfg.quirks
        if quirks.ignore_n:
            n = 1
        if quirks.ignore_seed:
            seed = None
        usage_charged = quirks.charges == "usage" and not pooling

        # quota, then rate limits
        faults = ms.cfg.faults
        ms.calls += 1
        out = faults.outage
        if ms.started is None:
            ms.started = now
        if out is not None and out.after_s <= now - ms.started < out.after_s + out.for_s:
            raise _Reply(out.status, wire.scripted_error(fmt, out.status, rid), rl)
        if faults.quota_after is not None and ms.calls > faults.quota_after:
            msg = wire.QUOTA_OPENAI if fmt == "openai" else wire.QUOTA_ANTHROPIC
            raise _Reply(*wire.error(fmt, "quota", msg, rid), rl)
        if not batch and (ms.req_bucket is not None or ms.tok_bucket is not None):
            cost = prompt.tokens + (0 if pooling or usage_charged else n * max_tokens)
            wait_r = ms.req_bucket.wait_for(1, now) if ms.req_bucket else 0.0
            wait_t = ms.tok_bucket.wait_for(cost, now) if ms.tok_bucket else 0.0
            if wait_r > 0 or wait_t > 0:
                if quirks.headers == "litellm" and ms.req_bucket is not None:
                    ms.req_bucket.take(1)  # LiteLLM counts the requests it rejects: remaining goes negative
                raise _Reply(*self._rate_limited(fmt, ms, rid, model, wait_r, wait_t, cost, now))
            if ms.req_bucket:
                ms.req_bucket.take(1)
            if ms.tok_bucket and not usage_charged:
                ms.tok_bucket.take(cost)
            rl = ms.rl_headers(fmt, now)

        # an overloaded server: beyond its capacity it answers at once with "overloaded" (Anthropic's
        # 529, OpenAI's 503), so a client that keeps its concurrency up draws a 5xx storm
        if not batch and faults.capacity is not None and ms.busy >= faults.capacity:
            status, body = wire.error(fmt, "overloaded", wire._DEFAULT_MESSAGE[503 if fmt == "openai" else 529], rid)
            raise _Reply(status, body, rl)

        # random faults (never for a scripted 200)
        malformed = False
        if scripted is None and not batch:
            r = st.rng.random()
            if r < faults.error_5xx_p:
                kind = "server" if st.rng.random() < 0.5 else "overloaded"
                status, body = wire.error(fmt, kind, wire._DEFAULT_MESSAGE[500 if kind == "server" else 503], rid)
                if fmt == "openai" and kind == "overloaded" and st.rng.random() < 0.5:
                    status = 502
                raise _Reply(status, body, rl)
            r -= faults.error_5xx_p
            if r < faults.error_429_p:
                raise _Reply(*self._rate_limited(fmt, ms, rid, model, faults.throttle_s, 0.0, 0, now, rl))
            r -= faults.error_429_p
            if r < faults.hang_p:
                await asyncio.sleep(faults.hang_s)
            else:
                malformed = r - faults.hang_p < faults.malformed_p

        if pooling:
            return await self._pool(ms, model, rid, prompt, pairs, malformed, rl, box)

        # the answer
        if seed is None:
            base = next(st.samples)
            for _ in range(n - 1):
                next(st.samples)
        else:
            base = seed
        digest = prompt_digest(model, prompt.key)
        texts: list[str] = []
        finishes: list[bool] = []
        out_tokens = 0
        for i in range(n):
            text = generate(ms.cfg, prompt.key, prompt.last_user, sample_seed(digest, base + i))
            t = count_tokens(text)
            if t > max_tokens:
                text = truncate_tokens(text, max_tokens)
                t = max_tokens
                finishes.append(True)
            else:
                finishes.append(False)
            texts.append(text)
            out_tokens += t
        lat = ms.cfg.latency_ms
        if not batch and (lat.median > 0 or lat.per_output_token_ms > 0):
            delay = lat.median * (math.exp(lat.sigma * st.rng.gauss(0.0, 1.0)) if lat.sigma else 1.0)
            delay += lat.per_output_token_ms * max(count_tokens(t) for t in texts)
            ms.busy += 1
            try:
                await asyncio.sleep(delay / 1000.0)
            finally:
                ms.busy -= 1
        use = _cache_use(st, ms, fmt, prompt, now)
        cached = use.read
        if usage_charged and not batch and ms.tok_bucket is not None:
            # charged after the answer, for what it really used; headers say so at response time
            ms.tok_bucket.take(prompt.tokens + out_tokens)
            rl = ms.rl_headers(fmt, time.monotonic())
        created = int(time.time())
        if malformed:
            return 200, self._malformed(fmt, rid, model, texts, created), rl
        if fmt == "openai":
            box[1] = (prompt.tokens, cached, 0, out_tokens)
            body = {
                "id": "chatcmpl-" + rid[4:], "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                             "finish_reason": "length" if cut else "stop", "logprobs": None}
                            for i, (text, cut) in enumerate(zip(texts, finishes))],
                "usage": {"prompt_tokens": prompt.tokens, "completion_tokens": out_tokens,
                          "total_tokens": prompt.tokens + out_tokens,
                          "prompt_tokens_details": {"cached_tokens": cached},
                          "completion_tokens_details": {"reasoning_tokens": 0}},
                "system_fingerprint": "fp_agen_sim",
            }
        else:
            write = use.write
            box[1] = (prompt.tokens, cached, write, out_tokens)
            body = {
                "id": "msg_" + rid[4:], "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": texts[0]}],
                "stop_reason": "max_tokens" if finishes[0] else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": prompt.tokens - cached - write, "output_tokens": out_tokens,
                          "cache_creation_input_tokens": write, "cache_read_input_tokens": cached},
            }
        if extra:
            rl = {**rl, **extra}
        return 200, body, rl

    async def _pool(self, ms: ModelState, model: str, rid: str, prompt: Prompt, pairs: list[tuple[str, str]],
                    malformed: bool, rl: dict[str, str], box: list[Any]) -> tuple[int, bytes | dict[str, Any], dict[str, str]]:
        """vLLM's PoolingResponse with one reward per input, as a sequence-level reward model returns it.

        Prompt tokens are billed (input only, no completion tokens); latency is the model's median.
        """
        lat = ms.cfg.latency_ms
        if lat.median > 0:
            await asyncio.sleep(lat.median * (math.exp(lat.sigma * self.st.rng.gauss(0.0, 1.0)) if lat.sigma else 1.0)
                                / 1000.0)
        created = int(time.time())
        if malformed:
            kind = self.st.rng.randrange(2)
            if kind == 0:
                return 200, orjson.dumps({"id": "pool-" + rid[4:], "object": "list", "data": [{"index": 0}]})[:40], rl
            return 200, {"id": "pool-" + rid[4:], "object": "list", "created": created, "model": model, "data": [],
                         "usage": {"prompt_tokens": prompt.tokens, "total_tokens": prompt.tokens,
                                   "completion_tokens": 0, "prompt_tokens_details": None}}, rl
        box[1] = (prompt.tokens, 0, 0, 0)
        data = [{"index": i, "object": "pooling", "data": [reward_value(model, p, r, ms.cfg)]}
                for i, (p, r) in enumerate(pairs)]
        return 200, {"id": "pool-" + rid[4:], "object": "list", "created": created, "model": model, "data": data,
                     "usage": {"prompt_tokens": prompt.tokens, "total_tokens": prompt.tokens, "completion_tokens": 0,
                               "prompt_tokens_details": None}}, rl

    def _rate_limited(self, fmt: wire.Wire, ms: ModelState, rid: str, model: str, wait_r: float, wait_t: float,
                      cost: int, now: float, rl: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        tokens = wait_t > wait_r
        wait = max(wait_r, wait_t)
        headers = dict(rl if rl is not None else ms.rl_headers(fmt, now))
        if math.isinf(wait):
            wait = 60.0
            msg = (f"Request too large for {model}: Limit {int(ms.tok_bucket.limit) if ms.tok_bucket else 0}, "
                   f"Requested {cost}. The input or output tokens must be reduced in order to run successfully.")
        elif tokens and ms.tok_bucket is not None:
            b = ms.tok_bucket
            msg = (f"Rate limit reached for {model} on tokens per min (TPM): Limit {int(b.limit)}, "
                   f"Used {int(b.limit - b.remaining(now))}, Requested {cost}. "
                   f"Please try again in {limits.duration(wait)}.")
        else:
            lim = int(ms.req_bucket.limit) if ms.req_bucket else 0
            msg = (f"Rate limit reached for requests per min (RPM): Limit {lim}, Used {lim}, Requested 1. "
                   f"Please try again in {limits.duration(wait)}.")
        if fmt == "anthropic":
            msg = "This request would exceed your organization's rate limit. Please try again later."
        status, body = wire.error(fmt, "rate_tokens" if tokens else "rate_requests", msg, rid)
        style = ms.cfg.quirks.headers
        if style == "litellm":
            headers["llm_provider-retry-after"] = str(max(1, math.ceil(wait)))
        elif style == "openai":
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            if fmt == "openai":
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        return status, body, headers

    def _malformed(self, fmt: wire.Wire, rid: str, model: str, texts: list[str], created: int) -> bytes:
        kind = self.st.rng.randrange(3)
        if fmt == "openai":
            if kind == 0:
                full = orjson.dumps({"id": "chatcmpl-" + rid[4:], "object": "chat.completion", "created": created,
                                     "model": model, "choices": [{"index": 0, "message": {"role": "assistant",
                                                                                          "content": texts[0]}}]})
                return full[: len(full) // 2]
            if kind == 1:
                return orjson.dumps({"id": "chatcmpl-" + rid[4:], "object": "chat.completion", "created": created,
                                     "model": model, "choices": []})
            return orjson.dumps(wire.openai_error("The server had an error processing your request.", "server_error", None))
        if kind == 0:
            full = orjson.dumps({"id": "msg_" + rid[4:], "type": "message", "role": "assistant",
                                 "content": [{"type": "text", "text": texts[0]}]})
            return full[: len(full) // 2]
        if kind == 1:
            return orjson.dumps({"id": "msg_" + rid[4:], "type": "message", "role": "assistant", "model": model,
                                 "content": [], "stop_reason": None, "stop_sequence": None})
        return orjson.dumps(wire.anthropic_error("Internal server error", "api_error", rid))

    async def _scripted(self, item: dict[str, Any], fmt: wire.Wire, rid: str
                        ) -> tuple[tuple[int, bytes | dict[str, Any], dict[str, str]] | None, dict[str, str]]:
        """(the scripted reply, its headers); reply None for a 200 without body: a normal, fault-free answer."""
        hang = item.get("hang_s")
        if hang:
            await asyncio.sleep(float(hang))
        status = int(item.get("status", 200))
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        if item.get("retry_after_s") is not None:
            headers["retry-after"] = f"{float(item['retry_after_s']):g}"
        if item.get("retry_after_ms") is not None:
            headers["retry-after-ms"] = f"{float(item['retry_after_ms']):g}"
        if "body" in item:
            b = item["body"]
            return (status, b.encode() if isinstance(b, str) else orjson.dumps(b), headers), headers
        if status == 200:
            return None, headers
        body = wire.scripted_error(fmt, status, rid, item.get("code"), item.get("type"), item.get("message"))
        return (status, body, headers), headers


def _pooling_inputs(data: dict[str, Any]) -> tuple[Prompt, list[tuple[str, str]]]:
    """The (prompt, response) pairs of a /pooling body: `messages` (one conversation: the user turns
    are the prompt, the last assistant turn the response) or `input` (a string or a list of
    strings, each scored as a response without a prompt)."""
    if data.get("messages") is not None:
        prompt = _prompt(None, data.get("messages"))
        users = [t for r, t in prompt.parts if r == "user"]
        answers = [t for r, t in prompt.parts if r == "assistant"]
        if not answers:
            raise ValueError("messages: a reward request needs an assistant turn to score")
        return prompt, [("\n".join(users), answers[-1])]
    inp = data.get("input")
    items = [inp] if isinstance(inp, str) else inp
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ValueError("give either 'messages' or 'input' (a string or a non-empty list of strings)")
    tokens = sum(count_tokens(i) for i in items)
    return (Prompt("\x01".join(items), items[-1], tokens, [("user", i) for i in items], [Segment("user", i) for i in items]),
            [("", i) for i in items])


def build_app(cfg: SimConfig | dict[str, Any] | None = None) -> web.Application:
    """The aiohttp application for a config (a SimConfig, a dict, or None for the shipped YAML)."""
    sim_cfg = load_sim_config() if cfg is None else parse_sim_config(cfg)
    app = web.Application(client_max_size=sim_cfg.max_body_bytes * 2 + 1024)
    st = SimState(sim_cfg)
    app[_STATE_KEY] = st
    h = Handlers(st)
    app.router.add_post("/v1/chat/completions", h.openai)
    app.router.add_post("/v1/messages", h.anthropic)
    app.router.add_post("/pooling", h.pooling)
    app.router.add_get("/v1/models", h.models)
    FileRoutes(st).add_routes(app)
    BatchRoutes(st, h.answer_line).add_routes(app)
    MessageBatchRoutes(st, h.answer_line).add_routes(app)

    async def _resume_batches(app: web.Application) -> None:
        st.batches.resume(h.answer_line)  # what batch_dir kept from a previous sim process

    async def _stop_batches(app: web.Application) -> None:
        st.batches.close()

    app.on_startup.append(_resume_batches)
    app.on_cleanup.append(_stop_batches)
    app.router.add_get("/sim/stats", h.stats)
    app.router.add_get("/sim/received", h.received)
    app.cleanup_ctx.append(_lag_ticks)
    app.router.add_get("/sim/batch_stats", h.batch_stats)
    app.router.add_post("/sim/script", h.script)
    app.router.add_post("/sim/reset", h.reset)
    return app


async def _lag_ticks(app: web.Application) -> Any:
    """The sim's own loop lag, for `GET /sim/received` (a request waits in the socket as long)."""
    async def tick() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.02)
            lag = time.perf_counter() - t0 - 0.02
            ticks = app[_STATE_KEY].ticks
            if len(ticks) < 2_000_000:  # 16 MB at most (~4.5 h)
                ticks.extend((time.time(), lag))

    task = asyncio.get_running_loop().create_task(tick())
    yield
    task.cancel()


class SimServer:
    """A running sim on this event loop. `.base_url` is `http://HOST:PORT` (OpenAI: add `/v1`)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def state(self) -> SimState:
        return self._runner.app[_STATE_KEY]  # type: ignore[index]

    async def aclose(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> SimServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def start_sim(cfg: SimConfig | dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """Start the sim on the running loop; port 0 picks a free port. Close with `await s.aclose()`."""
    app = build_app(cfg)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5,
                           handler_cancellation=True, keepalive_timeout=app[_STATE_KEY].cfg.http.keepalive_s)
    await runner.setup()
    # A client opening thousands of connections at once overflows a short accept queue: the kernel
    # drops the SYNs and the client waits its 1 s (then 3 s...) SYN retransmit. The kernel caps this
    # at net.core.somaxconn.
    site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
    await site.start()
    sockets = runner.addresses
    real_port = sockets[0][1] if sockets else port
    return SimServer(runner, host, real_port)


def serve(config_path: str | None, host: str = "127.0.0.1", port: int = 0) -> None:
    """Run the sim until SIGINT/SIGTERM (blocking). Prints `AGEN_SIM_LISTENING <base_url>` once ready."""
    import signal
    import sys

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        uvloop = None  # type: ignore[assignment]

    cfg = load_sim_config(config_path)
    raise_nofile_limit()

    async def main() -> None:
        server = await start_sim(cfg, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sys.stdout.write(f"{LISTENING} {server.base_url}\n")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await server.aclose()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())
