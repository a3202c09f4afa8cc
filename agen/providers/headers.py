"""Rate-limit and retry-after headers, parsed into one provider-neutral record (pure functions).

OpenAI-compatible servers send `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` with
resets as Go-style durations (`6m0s`, `12ms`, `1m30.5s`); Anthropic sends
`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` with
resets as RFC 3339 instants. Both may send `retry-after` (seconds or an HTTP date) and
`retry-after-ms`. Proxies add their own: LiteLLM answers a 429 with only
`llm_provider-retry-after`, sends `x-litellm-key-remaining-{requests,tokens}-<model>`, and its
`remaining` may be negative (read as 0: the budget is spent). Everything here is a pure function
of the header mapping and "now".
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What the server said about its budget; None where it said nothing. Resets in seconds from now."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    @property
    def exhausted_reset_s(self) -> float | None:
        """The longest announced reset among budgets reported as spent (remaining <= 0), if any."""
        resets = [r for rem, r in ((self.remaining_requests, self.reset_requests_s),
                                   (self.remaining_tokens, self.reset_tokens_s)) if rem is not None and rem <= 0 and r]
        return max(resets) if resets else None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.limit_requests, self.remaining_requests, self.reset_requests_s,
                                       self.limit_tokens, self.remaining_tokens, self.reset_tokens_s))


def parse_duration(text: str) -> float | None:
    """`6m0s` -> 360.0, `12ms` -> 0.012, `1m30.5s` -> 90.5, `2.5` (bare seconds) -> 2.5; junk -> None."""
    s = text.strip()
    if not s:
        return None
    try:
        return max(0.0, float(s))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    return total if pos == len(s) and pos > 0 else None


def parse_instant(text: str, now_epoch: float) -> float | None:
    """An RFC 3339 instant (`2026-11-01T12:00:03Z`) as seconds from `now_epoch` (>= 0); junk -> None."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return max(0.0, dt.timestamp() - now_epoch)


def _seconds_or_date(value: str, now: float) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            return None


def parse_retry_after(headers: Mapping[str, str], now_epoch: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from the explicit retry headers only.

    `retry-after-ms` wins when present: it is the precise form of the same wish (OpenAI rounds
    `retry-after` up to whole seconds next to it), as the official SDKs read it. Then
    `retry-after` (seconds or an HTTP date), then LiteLLM's `llm_provider-retry-after`.
    """
    now = time.time() if now_epoch is None else now_epoch
    for key, scale in (("retry-after-ms", 1e-3), ("llm_provider-retry-after-ms", 1e-3)):
        v = headers.get(key)
        if v is not None:
            try:
                return max(0.0, float(v) * scale)
            except ValueError:
                pass
    for key in ("retry-after", "llm_provider-retry-after"):
        v = headers.get(key)
        if v is not None:
            wait = _seconds_or_date(v, now)
            if wait is not None:
                return wait
    return None


def retry_hint(headers: Mapping[str, str], provider: str, now_epoch: float | None = None) -> float | None:
    """Seconds to wait after a 429: the retry headers, else the reset of a budget reported spent
    (`x-ratelimit-reset-*`, `anthropic-ratelimit-*-reset`); None when the server gave no hint."""
    wait = parse_retry_after(headers, now_epoch)
    if wait is not None:
        return wait
    return parse_rate_limits(headers, provider, now_epoch).exhausted_reset_s


def header_families(headers: Mapping[str, str]) -> frozenset[str]:
    """Which rate-limit header families a response carries (an endpoint fact: what it tells us)."""
    out = set()
    for k in headers:
        lk = k.lower()
        if not lk.startswith(_FAMILIES):  # most headers: one C call, not one per family
            continue
        for fam in _FAMILIES:
            if lk.startswith(fam):
                out.add(fam.rstrip("-"))
    return frozenset(out)


_FAMILIES = ("x-ratelimit-limit-", "x-ratelimit-remaining-", "x-ratelimit-reset-", "anthropic-ratelimit-",
             "retry-after", "llm_provider-", "x-litellm-")


def _int(headers: Mapping[str, str], key: str) -> int | None:
    v = headers.get(key)
    if v is None:
        return None
    try:
        return max(0, int(float(v)))  # a negative remaining (LiteLLM) means: spent
    except ValueError:
        return None


def _litellm_remaining(headers: Mapping[str, str], kind: str) -> int | None:
    """The tightest `x-litellm-key-remaining-<kind>-<model>` (LiteLLM's per-key budgets)."""
    prefix = f"x-litellm-key-remaining-{kind}"
    vals = [_int(headers, k) for k in headers if k.lower().startswith(prefix)]
    present = [v for v in vals if v is not None]
    return min(present) if present else None


def _min_opt(*vals: float | int | None) -> float | int | None:
    present = [v for v in vals if v is not None]
    return min(present) if present else None


def parse_rate_limits(headers: Mapping[str, str], provider: str, now_epoch: float | None = None) -> RateLimitInfo:
    """Read the provider's rate-limit headers. For Anthropic the tightest of the token buckets wins."""
    if provider == "anthropic":
        now = time.time() if now_epoch is None else now_epoch

        def reset(kind: str) -> float | None:
            v = headers.get(f"anthropic-ratelimit-{kind}-reset")
            return None if v is None else parse_instant(v, now)

        kinds = ("tokens", "input-tokens", "output-tokens")
        remaining = [(r, k) for k in kinds if (r := _int(headers, f"anthropic-ratelimit-{k}-remaining")) is not None]
        tight = min(remaining, key=lambda rk: rk[0])[1] if remaining else "tokens"
        return RateLimitInfo(
            limit_requests=_int(headers, "anthropic-ratelimit-requests-limit"),
            remaining_requests=_int(headers, "anthropic-ratelimit-requests-remaining"),
            reset_requests_s=reset("requests"),
            limit_tokens=_min_opt(*(_int(headers, f"anthropic-ratelimit-{k}-limit") for k in kinds)),  # type: ignore[arg-type]
            remaining_tokens=_int(headers, f"anthropic-ratelimit-{tight}-remaining"),
            reset_tokens_s=reset(tight),
        )

    def dur(key: str) -> float | None:
        v = headers.get(key)
        return None if v is None else parse_duration(v)

    rem_req = _int(headers, "x-ratelimit-remaining-requests")
    rem_tok = _int(headers, "x-ratelimit-remaining-tokens")
    return RateLimitInfo(
        limit_requests=_int(headers, "x-ratelimit-limit-requests"),
        remaining_requests=rem_req if rem_req is not None else _litellm_remaining(headers, "requests"),
        reset_requests_s=dur("x-ratelimit-reset-requests"),
        limit_tokens=_int(headers, "x-ratelimit-limit-tokens"),
        remaining_tokens=rem_tok if rem_tok is not None else _litellm_remaining(headers, "tokens"),
        reset_tokens_s=dur("x-ratelimit-reset-tokens"),
    )
