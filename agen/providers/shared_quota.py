"""One provider quota shared by many agen processes (and machines) through Redis.

Each process keeps its own FIFO lane (`providers/lane.py`); only the head of a lane asks Redis,
once, and sleeps the wait Redis returns (no polling storm). Redis holds, per quota name:

  agen:quota:{name}:req    the requests GCRA's "theoretical arrival time" (TAT, seconds, Redis clock)
  agen:quota:{name}:tok    the tokens GCRA's TAT
  agen:quota:{name}:pause  the end of a lane-wide pause (after a 429 or `remaining: 0` any worker saw)

`ADMIT` is one atomic Lua script checking the pause and both GCRAs (the same arithmetic as the
local `Pacer`: `burst_s` of tolerance, start paced, a request's tokens weighted in) and either
charging both or returning the wait without charging anything. The rates come from the caller
(configured and learned limits x margin x its AIMD factor), so one worker slowed by a 429 slows
the quota for everyone. `SETTLE` moves the tokens TAT by the difference between the reservation
and the real usage (refund or extra charge); `PAUSE` extends the shared pause and takes the burst
credit away. Times are Redis's `TIME`, so workers on machines with skewed clocks agree.

Redis unreachable (refused, reset, timed out, no free connection in time) raises
`QuotaStoreUnreachableError`, a fatal, resumable stop: a worker never runs unlimited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from agen.errors import FatalRunError

# KEYS: req, tok, pause. ARGV: req_rate (per s, 0: none), tok_rate (per s, 0: none), est_tokens, burst_s.
# Returns {1, "0"} admitted (both TATs charged) or {0, wait_s} (nothing charged). Numbers go out as
# strings: Redis truncates Lua numbers to integers.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local r, rho, est, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local pause = tonumber(redis.call('GET', KEYS[3]) or '-1')
if pause > now then return {0, string.format('%.6f', pause - now)} end
local wait = 0
local rtat, ttat
if r > 0 then
  rtat = tonumber(redis.call('GET', KEYS[1]) or string.format('%.6f', now + burst))
  wait = math.max(wait, rtat - burst - now)
end
if rho > 0 then
  ttat = tonumber(redis.call('GET', KEYS[2]) or string.format('%.6f', now + math.max(0, rho * burst - est) / rho))
  local capacity = math.max(rho * burst, est)
  wait = math.max(wait, ttat + (est - capacity) / rho - now)
end
if wait > 1e-6 then return {0, string.format('%.6f', wait)} end  -- not float noise: a retry storm
if r > 0 then
  rtat = math.max(rtat, now) + 1 / r
  redis.call('SET', KEYS[1], string.format('%.6f', rtat), 'PX', math.ceil((rtat - now + 60) * 1000))
end
if rho > 0 then
  ttat = math.max(ttat, now) + est / rho
  redis.call('SET', KEYS[2], string.format('%.6f', ttat), 'PX', math.ceil((ttat - now + 60) * 1000))
end
return {1, '0'}
"""

# KEYS: tok. ARGV: tokens to refund (negative: charge), tok_rate.
SETTLE = """
local tat = redis.call('GET', KEYS[1])
local rho = tonumber(ARGV[2])
if not tat or rho <= 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
tat = tonumber(tat) - tonumber(ARGV[1]) / rho
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.max(1000, math.ceil((tat - now + 60) * 1000)))
return 1
"""

# KEYS: req, tok, pause. ARGV: wait_s, burst_s. The pause only ever grows; after it no burst credit
# (the server's bucket is empty), as the local Pacer does.
PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[3]) or '-1')
if untl <= cur then return 0 end
local ms = math.ceil((untl - now) * 1000) + 1000
redis.call('SET', KEYS[3], string.format('%.6f', untl), 'PX', ms)
for i = 1, 2 do
  local tat = redis.call('GET', KEYS[i])
  if tat and tonumber(tat) < untl + tonumber(ARGV[2]) then
    redis.call('SET', KEYS[i], string.format('%.6f', untl + tonumber(ARGV[2])), 'PX', ms + 60000)
  end
end
return 1
"""


class QuotaStoreUnreachableError(FatalRunError):
    """The Redis holding a shared quota did not answer: stop the run (resumable) rather than run
    unlimited or hang. Same CLI code as an unreachable endpoint."""

    exit_code = 6


def redacted_url(url: str) -> str:
    """`url` without its password (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class SharedQuota:
    """The RPM/TPM budget of one quota name in Redis; one object per lane (per process)."""

    def __init__(self, url: str, name: str, *, password: str | None = None, max_connections: int = 4,
                 timeout_s: float = 5.0, burst_s: float = 0.5, model: str = "") -> None:
        import redis.asyncio as aioredis  # optional extra: agen[redis]

        self.name, self.model, self.burst_s, self.timeout_s = name, model, burst_s, timeout_s
        self._where = redacted_url(url)
        # BlockingConnectionPool: the default ConnectionPool raises "Too many connections" once
        # max_connections are checked out instead of waiting for one; this one waits (up to timeout).
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url, password=password, max_connections=max_connections, timeout=timeout_s,
            socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._redis = aioredis.Redis(connection_pool=self._pool)
        self._admit = self._redis.register_script(ADMIT)
        self._settle = self._redis.register_script(SETTLE)
        self._pause = self._redis.register_script(PAUSE)
        prefix = f"agen:quota:{name}:"
        self._keys = [prefix + "req", prefix + "tok", prefix + "pause"]
        self._pending: set[asyncio.Task[None]] = set()
        self.asks = self.waits = self.settles = self.pauses = 0

    def _unreachable(self, exc: BaseException) -> QuotaStoreUnreachableError:
        return QuotaStoreUnreachableError(
            f"shared quota {self.name!r}: Redis at {self._where} did not answer ({type(exc).__name__}: {exc}); "
            f"stopped so as not to run without the shared limit. Start Redis, then resume the run",
            provider="redis", model=self.model, code="quota_store_unreachable")

    async def _call(self, script, keys: list[str], args: list[float | int]):  # type: ignore[no-untyped-def]
        from redis.exceptions import RedisError

        try:
            return await asyncio.wait_for(script(keys=keys, args=args), self.timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise self._unreachable(exc) from exc

    async def admit(self, est_tokens: int, req_rate: float | None, tok_rate: float | None) -> float:
        """Charge one request of `est_tokens` if the quota holds it now (returns 0.0), else return
        the seconds to wait before asking again (nothing charged). Rates are per second."""
        self.asks += 1
        ok, wait = await self._call(self._admit, self._keys,
                                    [repr(req_rate or 0.0), repr(tok_rate or 0.0), est_tokens, repr(self.burst_s)])
        if int(ok):
            return 0.0
        self.waits += 1
        return max(1e-3, float(wait))

    async def settle(self, refund_tokens: float, tok_rate: float | None) -> None:
        """Refund (`refund_tokens` > 0) or charge the difference between a reservation and real usage."""
        if refund_tokens and tok_rate:
            self.settles += 1
            await self._call(self._settle, self._keys[1:2], [repr(float(refund_tokens)), repr(tok_rate)])

    async def cancel(self, est_tokens: int, req_rate: float | None, tok_rate: float | None) -> None:
        """Give back a whole admission that was never sent (its waiter was cancelled meanwhile)."""
        await self.settle(est_tokens, tok_rate)
        if req_rate:  # one request's interval: the requests TAT is the same script with one "token"
            await self._call(self._settle, self._keys[0:1], ["1.0", repr(req_rate)])

    async def pause(self, wait_s: float) -> None:
        """Pause every worker of this quota for `wait_s` (a 429, or a header saying the budget is spent)."""
        self.pauses += 1
        await self._call(self._pause, self._keys, [repr(float(wait_s)), repr(self.burst_s)])

    def soon(self, coro, on_error: Callable[[QuotaStoreUnreachableError], None]) -> None:  # type: ignore[no-untyped-def]
        """Run `coro` (settle, cancel, pause) in the background: `Lane.release` and friends are sync."""
        async def run() -> None:
            try:
                await coro
            except QuotaStoreUnreachableError as exc:
                on_error(exc)

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def ping(self) -> None:
        """Raise QuotaStoreUnreachableError unless Redis answers (address, password): for preflight."""
        from redis.exceptions import RedisError

        try:
            await asyncio.wait_for(self._redis.ping(), self.timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise self._unreachable(exc) from exc

    async def state(self) -> dict[str, float | None]:
        """The quota's raw Redis state (TATs and pause end, Redis clock), for tests and `statistics`."""
        from redis.exceptions import RedisError

        try:
            values = await self._redis.mget(self._keys)
            sec, usec = await self._redis.time()
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from exc
        now = sec + usec / 1e6
        req, tok, pause = (None if v is None else float(v) for v in values)
        return {"now": now, "req_tat": req, "tok_tat": tok, "pause_until": pause}

    def statistics(self) -> dict[str, int]:
        return {"shared/asks": self.asks, "shared/waits": self.waits, "shared/settles": self.settles,
                "shared/pauses": self.pauses}

    async def aclose(self) -> None:
        """Finish the pending settles and pauses (other workers rely on them), then close the pool."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._redis.aclose()
        await self._pool.disconnect()
