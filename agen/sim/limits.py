"""Rate limits as the sim enforces them: one limiter per (model, requests|tokens).

`TokenBucket` (the default, `quirks.window: steady`) holds at most `limit` units (a full
minute's worth) and refills continuously at `limit / 60` per second, which is how OpenAI
describes its limiter. `FixedWindow` (`window: fixed`) is how many proxies (LiteLLM, nginx
counters) do it instead: a counter that resets to zero at every multiple of `window_s` on the
server's clock, whatever was used before. A request is admitted if the limiter holds its cost
(1 request; prompt tokens + n * max_tokens, or just the prompt when the server charges real
usage afterwards); otherwise it gets a 429 whose retry-after is when the cost will fit.
"""

from __future__ import annotations

import math
import time


class TokenBucket:
    """Capacity `limit`, refill `limit/60` per second; `now` is a monotonic clock in seconds."""

    __slots__ = ("limit", "rate", "level", "stamp")

    def __init__(self, limit: float, now: float) -> None:
        self.limit = float(limit)
        self.rate = self.limit / 60.0
        self.level = self.limit
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.limit, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until `cost` fits (0.0: it fits now); inf if it can never fit."""
        self._refill(now)
        if cost <= self.level:
            return 0.0
        if cost > self.limit:
            return math.inf
        return (cost - self.level) / self.rate

    def take(self, cost: float) -> None:
        """Consume `cost` (call right after `wait_for` returned 0)."""
        self.level -= cost

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, int(self.level))

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return (self.limit - self.level) / self.rate


class FixedWindow:
    """A per-minute `limit` enforced as `limit * window_s / 60` units per window of `window_s`
    seconds, windows starting at multiples of `window_s` on `now`'s clock (60 s: clock minutes).

    `level` may go negative: a server that charges real usage after the answer, or counts the
    requests it rejected (LiteLLM), reports a negative remaining, as such proxies do.
    """

    __slots__ = ("limit", "capacity", "window_s", "level", "window")

    def __init__(self, limit: float, now: float, window_s: float = 60.0) -> None:
        self.limit = float(limit)
        self.capacity = self.limit * window_s / 60.0
        self.window_s = window_s
        self.level = self.capacity
        self.window = math.floor(now / window_s)

    def _roll(self, now: float) -> None:
        w = math.floor(now / self.window_s)
        if w != self.window:
            self.window, self.level = w, self.capacity

    def wait_for(self, cost: float, now: float) -> float:
        self._roll(now)
        if cost <= self.level:
            return 0.0
        if cost > self.capacity:
            return math.inf
        return self.reset_s(now)

    def take(self, cost: float) -> None:
        self.level -= cost

    def remaining(self, now: float) -> int:
        self._roll(now)
        return math.floor(self.level)

    def reset_s(self, now: float) -> float:
        """Seconds until the current window ends."""
        self._roll(now)
        return (self.window + 1) * self.window_s - now


Limiter = TokenBucket | FixedWindow


def duration(seconds: float) -> str:
    """OpenAI's reset-duration style: `12ms`, `1s`, `1.5s`, `6m0s`, `1m30.5s`."""
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    seconds = round(seconds, 3)
    if seconds < 60:
        return f"{seconds:g}s"
    minutes = int(seconds // 60)
    return f"{minutes}m{round(seconds - minutes * 60, 3):g}s"


def rfc3339(epoch_s: float) -> str:
    """Anthropic's reset style: an RFC 3339 UTC timestamp with second resolution."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(epoch_s)))


def litellm_headers(req: Limiter | None, tok: Limiter | None, now: float) -> dict[str, str]:
    """A LiteLLM-style proxy: limit and remaining (which may be negative), no reset header."""
    out: dict[str, str] = {}
    for kind, lim in (("requests", req), ("tokens", tok)):
        if lim is not None:
            lim.remaining(now)  # refill / roll the window first
            out[f"x-ratelimit-limit-{kind}"] = str(int(lim.limit))
            out[f"x-ratelimit-remaining-{kind}"] = str(math.floor(lim.level))
    return out


def openai_headers(req: Limiter | None, tok: Limiter | None, now: float) -> dict[str, str]:
    out: dict[str, str] = {}
    if req is not None:
        out["x-ratelimit-limit-requests"] = str(int(req.limit))
        out["x-ratelimit-remaining-requests"] = str(req.remaining(now))
        out["x-ratelimit-reset-requests"] = duration(req.reset_s(now))
    if tok is not None:
        out["x-ratelimit-limit-tokens"] = str(int(tok.limit))
        out["x-ratelimit-remaining-tokens"] = str(tok.remaining(now))
        out["x-ratelimit-reset-tokens"] = duration(tok.reset_s(now))
    return out


def anthropic_headers(req: Limiter | None, tok: Limiter | None, now: float) -> dict[str, str]:
    out: dict[str, str] = {}
    wall = time.time()
    if req is not None:
        out["anthropic-ratelimit-requests-limit"] = str(int(req.limit))
        out["anthropic-ratelimit-requests-remaining"] = str(req.remaining(now))
        out["anthropic-ratelimit-requests-reset"] = rfc3339(wall + req.reset_s(now))
    if tok is not None:
        out["anthropic-ratelimit-tokens-limit"] = str(int(tok.limit))
        out["anthropic-ratelimit-tokens-remaining"] = str(tok.remaining(now))
        out["anthropic-ratelimit-tokens-reset"] = rfc3339(wall + tok.reset_s(now))
    return out
