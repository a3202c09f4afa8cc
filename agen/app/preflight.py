"""Talk to every endpoint once before any paid work, so a wrong URL, scheme, port, model or key is
reported in seconds — endpoint, status and the server's own message — and no seed work starts.

Per model: `GET …/models` (OpenAI, Anthropic, vLLM and Ollama all serve it, and check the key);
when it lists the model, that is enough. When it does not (no such route, an alias the list
leaves out, a proxy), one minimal request is sent (1 output token) and its answer decides.
A 429 or 5xx is not a configuration problem: it is logged and the run goes on (the lanes and the
watchdog deal with it).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from agen.config import ModelConfig
from agen.providers.client import endpoint_url
from agen.providers.reward import pooling_url
from agen.providers.transport import error_fields
from agen.providers.wire import ANTHROPIC_VERSION, anthropic_body, openai_body
from agen.types import ChatRequest

log = structlog.get_logger("agen.app.preflight")

LENGTH_FIELDS = {"max_tokens", "max_completion_tokens", "max_output_tokens"}
PING = ChatRequest(messages=({"role": "user", "content": "Reply with OK."},), max_tokens=1)


@dataclass(frozen=True)
class EndpointProblem:
    """What is wrong with one model's endpoint; `kind` picks the exit code."""

    model: str
    url: str
    kind: str  # "unreachable" | "auth" | "config"
    message: str
    status: int | None = None

    def __str__(self) -> str:
        status = f" HTTP {self.status}" if self.status is not None else ""
        return f"models.{self.model}: {self.url}{status}: {self.message}"


def models_url(m: ModelConfig, base_url: str) -> str:
    base = base_url.rstrip("/")
    if m.kind == "reward":
        base = base.removesuffix("/v1")
        return base + "/v1/models"
    if m.provider == "anthropic":
        return base + ("/models" if base.endswith("/v1") else "/v1/models")
    return base + "/models"


def _headers(m: ModelConfig, key: str | None) -> dict[str, str]:
    h = {"accept": "application/json", "content-type": "application/json"}
    if m.provider == "anthropic" and m.kind == "chat":
        h["anthropic-version"] = ANTHROPIC_VERSION
    h.update(m.headers)
    if key:
        if m.provider == "anthropic" and m.kind == "chat":
            h["x-api-key"] = key
        else:
            h["authorization"] = "Bearer " + key
    return h


def _served(body: bytes) -> list[str] | None:
    try:
        doc = orjson.loads(body)
        return [str(d["id"]) for d in doc["data"]] if isinstance(doc, dict) else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def _probe(session: aiohttp.ClientSession, name: str, m: ModelConfig, base_url: str,
                 key: str | None) -> EndpointProblem | None:
    scheme = urlsplit(base_url).scheme
    if scheme not in ("http", "https"):
        return EndpointProblem(name, base_url, "config", f"scheme {scheme!r} is not http or https")
    headers = _headers(m, key)
    timeout = aiohttp.ClientTimeout(total=m.connect_timeout_s + 10, sock_connect=m.connect_timeout_s)
    url = models_url(m, base_url)
    served: list[str] | None = None
    try:
        async with session.get(url, headers=headers, timeout=timeout) as r:
            body = await r.read()
            status = r.status
        if status in (401, 403):
            return EndpointProblem(name, url, "auth", _server_says(body, m), status)
        if status == 200:
            served = _served(body)
            if served is not None and m.model in served:
                return None
        if m.kind == "reward":
            url, doc = pooling_url(base_url), {"model": m.model, "input": ["OK"]}
        else:
            url = endpoint_url(m.provider, base_url)
            doc = (anthropic_body(PING, m.model, m.extra_params) if m.provider == "anthropic"
                   else openai_body(PING, m.model, m.extra_params, 1))
            for cap in LENGTH_FIELDS & doc.keys():  # the run's own body, but one token long
                doc[cap] = 1
        async with session.post(url, data=orjson.dumps(doc), headers=headers, timeout=timeout) as r:
            body = await r.read()
            status = r.status
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        what = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"cannot connect ({type(exc).__name__}: {exc})"
        return EndpointProblem(name, url, "unreachable", what)
    if status == 200:
        return None
    if status == 429 or status >= 500:
        log.warning("preflight_endpoint_busy", model=name, url=url, status=status, detail=_server_says(body, m))
        return None
    message = _server_says(body, m)
    if status == 404 and m.model not in message:
        message += " (is the path of base_url right? OpenAI-compatible servers usually end in /v1)"
    if served:
        message += f" (model {m.model!r}; this endpoint serves: {', '.join(served[:8])}{' …' if len(served) > 8 else ''})"
    kind = "auth" if status in (401, 402, 403) else "config"
    return EndpointProblem(name, url, kind, message, status)


def _server_says(body: bytes, m: ModelConfig) -> str:
    message, code, _ = error_fields(body)
    return (f"{message} [{code}]" if code else message)[:300]


async def check_endpoints(models: dict[str, ModelConfig], base_urls: dict[str, str],
                          keys: dict[str, str | None]) -> list[EndpointProblem]:
    """Probe every model's endpoint at once; [] when all answered as the run needs."""
    async with aiohttp.ClientSession(trust_env=False) as session:
        found = await asyncio.gather(*(_probe(session, n, m, base_urls[n], keys.get(n)) for n, m in models.items()),
                                     *(_probe_quota(n, m) for n, m in models.items() if m.shared_quota is not None))
    return [p for p in found if p is not None]


async def _probe_quota(name: str, m: ModelConfig) -> EndpointProblem | None:
    """The Redis of a `shared_quota` must answer before anything is sent (the run would stop at once)."""
    from agen.providers.shared_quota import QuotaStoreUnreachableError, SharedQuota, redacted_url

    q = m.shared_quota
    assert q is not None
    try:
        quota = SharedQuota(q.url, q.name, password=os.environ.get(q.password_env) if q.password_env else None,
                            max_connections=1, timeout_s=q.timeout_s, model=name)
    except ImportError:
        return EndpointProblem(name, redacted_url(q.url), "config", "shared_quota needs the redis package: "
                               "pip install 'agen[redis]'")
    try:
        await quota.ping()
    except QuotaStoreUnreachableError as exc:
        return EndpointProblem(name, redacted_url(q.url), "unreachable", exc.message)
    finally:
        await quota.aclose()
    return None
