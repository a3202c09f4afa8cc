"""Provider clients for the run: one aiohttp session, one lane-holding ModelClient per model.

    async with Providers(cfg.models, base_urls={...}, on_call=ledger.write) as providers:
        completion = await providers["solver"].complete(ChatRequest(...))

Only this package knows aiohttp, HTTP and the providers' JSON; it raises FatalRunError or
TaskFailedError (agen.errors) and reports every HTTP attempt to `on_call`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
import structlog

from agen.config import ModelConfig, Price, load_prices, price_for
from agen.errors import ConfigError
from agen.providers.batch_collector import BatchSetup
from agen.providers.client import ModelClient
from agen.providers.http1 import HttpPool
from agen.providers.lane import Lane
from agen.providers.pacer import Pacer
from agen.providers.reward import RewardClient
from agen.providers.transport import GatedConnector, Transport, fit_open_files
from agen.types import CallRecord
from agen.version import agen_version

if TYPE_CHECKING:
    from agen.providers.shared_quota import SharedQuota

__all__ = ["BatchSetup", "ModelClient", "Providers", "check_api_keys"]


def _user_agent() -> str:
    v = agen_version()
    return "agen" if v is None else f"agen/{v}"  # None: a source checkout on sys.path, not installed


def check_api_keys(models: dict[str, ModelConfig]) -> None:
    """Raise ConfigError naming the model and the env var for every missing key (never shows a key)."""
    missing = [f"models.{name}: environment variable {m.api_key_env} is not set (it should hold the API key)"
               for name, m in models.items() if m.api_key_env and not os.environ.get(m.api_key_env)]
    missing += [f"models.{name}.shared_quota: environment variable {q.password_env} is not set (it should hold "
                f"the Redis password)" for name, m in models.items()
                if (q := m.shared_quota) is not None and q.password_env and not os.environ.get(q.password_env)]
    missing += [f"models.{name}: environment variable {m.api_key_env} holds a line break or NUL (copied with its "
                f"line end?); it cannot go in an HTTP header" for name, m in models.items()
                if m.api_key_env and any(c in os.environ.get(m.api_key_env, "") for c in "\r\n\0")]
    if missing:
        raise ConfigError("API keys missing or unusable:\n  " + "\n  ".join(missing))


class Providers:
    """One aiohttp.ClientSession for the run (connector limit = sum of the lanes' max_concurrency),
    one ModelClient per configured chat model (a RewardClient for `kind: reward`)."""

    def __init__(self, models: dict[str, ModelConfig], *, prices: dict[str, Price] | None = None,
                 base_urls: dict[str, str] | None = None,
                 on_call: Callable[[CallRecord], None] | None = None, batch: BatchSetup | None = None) -> None:
        self._models = models
        self._batch = batch  # chat clients get a batch collector; each request's stage picks its mode
        self.batch_store = batch.store if batch is not None else None
        self._on_call = on_call
        self._base_urls = dict(base_urls or {})
        table = prices if prices is not None else (load_prices() if any(m.price is None for m in models.values()) else {})
        self._prices = {name: price_for(name, m, table) for name, m in models.items()}
        for name, m in models.items():
            url = self._base_urls.get(name, m.base_url)
            if url == "sim":
                raise ConfigError(f"models.{name}: base_url is 'sim' but no simulator URL was given (base_urls)")
            self._base_urls[name] = url
        self._session: aiohttp.ClientSession | None = None
        self._pool: HttpPool | None = None
        self.connection_limit = 0  # the connector's limit, set on entry
        self._clients: dict[str, ModelClient | RewardClient] = {}
        self._quotas: list[SharedQuota] = []
        self._halted: BaseException | None = None  # `halt`: no request's bytes may leave any more

    async def __aenter__(self) -> Providers:
        check_api_keys(self._models)
        wanted = sum(m.max_concurrency for m in self._models.values())
        limit = fit_open_files(wanted)
        if limit < wanted:
            structlog.get_logger("agen.providers").warning(
                "open_files_limit", connections=limit, wanted=wanted,
                detail="RLIMIT_NOFILE's hard limit is too low for every lane's max_concurrency; "
                       "requests beyond it wait for a connection (raise it with `ulimit -Hn`)")
        self.connection_limit = limit
        connector = GatedConnector(lambda: self._halted, limit=limit, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, json_serialize=None,  # type: ignore[arg-type]
                                              auto_decompress=True, trust_env=False)
        self._pool = HttpPool(limit, lambda: self._halted, user_agent=_user_agent())
        for name, m in self._models.items():
            key = os.environ.get(m.api_key_env) if m.api_key_env else None
            transport = Transport(self._session, m.provider, name, m.connect_timeout_s, m.read_timeout_s,
                                  pool=self._pool if m.http_client == "agen" else None)
            if m.kind == "reward":
                self._clients[name] = RewardClient(name, m, transport=transport, base_url=self._base_urls[name],
                                                   price=self._prices[name], api_key=key, on_call=self._on_call)
                continue
            self._clients[name] = ModelClient(name, m, transport=transport, base_url=self._base_urls[name],
                                              price=self._prices[name], api_key=key, on_call=self._on_call,
                                              lane=self._shared_lane(name, m), batch=self._batch)
        return self

    def halt(self, exc: BaseException) -> None:
        """No request leaves from now on, not even one already past its lane: one waiting for a new
        connection (a busy server's accept queue can hold a SYN for a second or more) is refused
        once connected, before its first byte. Flags only: safe inside a signal handler."""
        if self._halted is None:
            self._halted = exc
        for client in self._clients.values():
            client.lane.halt(exc)

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def _shared_lane(self, name: str, m: ModelConfig) -> Lane | None:
        """A lane whose RPM/TPM budget is also held in Redis (`shared_quota`), else None (the default lane)."""
        q = m.shared_quota
        if q is None:
            return None
        try:
            from agen.providers.shared_quota import SharedQuota
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigError(f"models.{name}.shared_quota needs the redis package: pip install 'agen[redis]'") from None
        password = os.environ.get(q.password_env) if q.password_env else None
        quota = SharedQuota(q.url, q.name, password=password, max_connections=q.max_connections,
                            timeout_s=q.timeout_s, model=name)
        self._quotas.append(quota)
        return Lane(name, max_concurrency=m.max_concurrency, pacer=Pacer(rpm=m.rpm, tpm=m.tpm), shared=quota)

    async def aclose(self) -> None:
        for c in self._clients.values():
            if isinstance(c, ModelClient) and c.batcher is not None:
                await c.batcher.aclose()
        for quota in self._quotas:
            await quota.aclose()
        self._quotas.clear()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __getitem__(self, name: str) -> ModelClient | RewardClient:
        try:
            return self._clients[name]
        except KeyError:
            raise KeyError(f"no model named {name!r}; known: {', '.join(sorted(self._clients))}") from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._clients)

    @property
    def prices(self) -> dict[str, Price]:
        return dict(self._prices)

    def facts(self) -> dict[str, dict[str, object]]:
        """What each lane's endpoint was stated or learned to do (`supports_n`, `charges`, `window`,
        `headers`, and `source` per fact), as plain data for the summary and report."""
        return {name: c.facts.as_dict() for name, c in self._clients.items()}

    def statistics(self) -> dict[str, int | float]:
        """Every client's statistics, keys prefixed by the model name (`solver/requests`)."""
        out: dict[str, int | float] = {}
        for name, c in self._clients.items():
            for k, v in c.statistics().items():
                out[f"{name}/{k}"] = v
        return out
