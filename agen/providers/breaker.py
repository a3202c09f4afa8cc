"""The per-endpoint circuit breaker (issue 10): an endpoint nobody can reach stops the run.

Only transport failures count (refused, reset, DNS, TLS, timeouts: no HTTP status at all); any
HTTP response, even a 500, proves the endpoint reachable and closes the breaker again. It opens
when attempts have failed without a break for `window_s` (and at least `MIN_ATTEMPTS` of them,
so one slow timeout is not a verdict), or `attempts` times in a row when that is set.
A recovering endpoint — some attempts getting through — never opens it.

The same rule, fed HTTP answers instead, is the server-error breaker (`failing_after_s`): every
answer a 5xx (not a 429) for the window is an outage, and the run stops resumably instead of
failing task after task as their retries run out; any other answer closes it again.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_ATTEMPTS = 3  # transport failures before a window's verdict: one slow timeout is not one


@dataclass(slots=True)
class Breaker:
    window_s: float = 30.0
    attempts: int | None = None
    down_since: float | None = None
    failures: int = 0  # transport failures in a row
    up_at: float = float("-inf")  # the last HTTP response

    def reachable(self, now: float) -> None:
        self.down_since, self.failures, self.up_at = None, 0, now

    def failed(self, now: float, started: float) -> bool:
        """One transport failure of an attempt sent at `started`; True: the endpoint is unreachable."""
        if self.down_since is None:
            self.down_since = max(started, self.up_at)
        self.failures += 1
        if self.attempts is not None and self.failures >= self.attempts:
            return True
        return self.failures >= MIN_ATTEMPTS and now - self.down_since >= self.window_s
