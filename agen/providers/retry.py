"""The retry decision, as one small pure function (Scrapy's `get_retry_request` shape).

`retry_delay` returns the seconds to wait before the next attempt, or None: do not retry.
It never returns less than what the server asked for (`retry_after_s`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from agen.errors import BadResponseError, ProviderError, RetryableError, ThrottledError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 8  # retries of any kind, per call
    bad_response_retries: int = 2  # of those, at most this many for unusable 200s
    base_s: float = 0.5  # first backoff step
    cap_s: float = 30.0  # backoff ceiling


def backoff_s(retries_done: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, so retries spread but never bunch at 0."""
    step = min(policy.cap_s, policy.base_s * (2 ** min(retries_done, 30)))
    return step / 2 + rand() * step / 2


def retry_delay(
    err: ProviderError,
    *,
    retries_done: int,
    bad_responses_done: int,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds before the next attempt of a call that failed with `err`, or None to give up.

    Fatal errors (run or task) are never retried. Throttles wait what the server said (the lane
    is paused for everyone meanwhile) or back off; capacity errors back off with jitter, at least
    as long as the server said; bad 200s get `bad_response_retries` attempts of their own.
    """
    if not isinstance(err, RetryableError):
        return None
    if retries_done >= policy.max_retries:
        return None
    if isinstance(err, BadResponseError) and bad_responses_done >= policy.bad_response_retries:
        return None
    server = err.retry_after_s if err.retry_after_s is not None else None
    if isinstance(err, ThrottledError) and server is not None:
        return server
    wait = backoff_s(retries_done, policy, rand)
    return max(wait, server) if server is not None else wait
