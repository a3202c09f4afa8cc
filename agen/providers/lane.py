"""One lane per model endpoint: a FIFO dispatcher holding concurrency, requests/min and tokens/min.

Why not asyncio-throttle (the original pick): it polls every waiting task every 10 ms, cannot
weight a request by its tokens, is not FIFO and cannot be paused after a 429;
benchmarks/rate_limits.py runs it side by side with the lane (scenario `rpm-asyncio-throttle`).
Here waiters sit in one deque and a single `loop.call_at` timer wakes the dispatcher when the
head of the queue may go: no polling.

The admission arithmetic is `Pacer` (`providers/pacer.py`); the lane only queues, times and
dispatches.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from agen.providers.headers import RateLimitInfo
from agen.providers.pacer import NEG_INF, Pacer, Ticket

if TYPE_CHECKING:
    from agen.providers.shared_quota import SharedQuota

__all__ = ["Lane"]


class Lane:
    """FIFO admission for one endpoint; `acquire` returns a Ticket, `release` settles it.

    With a `shared` quota (`providers/shared_quota.py`) the head of the queue, once the local
    pacer lets it go, also asks Redis (one ask at a time, sleeping the wait it returns); settles
    and pauses are mirrored there so every process on that quota sees them."""

    def __init__(self, name: str, *, max_concurrency: int, pacer: Pacer, shared: SharedQuota | None = None) -> None:
        self.name = name
        self.shared = shared
        self._asking: asyncio.Task[None] | None = None  # the head's ask to the shared quota, on its way
        self._shared_pause = NEG_INF  # the latest local pause already sent to the shared quota
        self.max_concurrency = max_concurrency
        self.pacer = pacer
        self._queue: deque[tuple[asyncio.Future[Ticket], int, int]] = deque()
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._closed: BaseException | None = None
        self._on_close: list[Callable[[BaseException], None]] = []  # e.g. the model's batch collector
        self._loop: asyncio.AbstractEventLoop | None = None
        self.admitted = 0

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def _concurrency(self, now: float) -> int:
        if self.pacer.rate_limited:
            return self.max_concurrency
        # No rate known: AIMD acts on concurrency instead.
        return max(1, int(self.max_concurrency * self.pacer.factor(now)))

    async def acquire(self, est_tokens: int, *, front: bool = False, out_tokens: int = 0) -> Ticket:
        """Wait for this request's turn (FIFO; retries may go to the `front`). `out_tokens`: the
        part of `est_tokens` reserved for output (what a usage-charging server may not charge)."""
        if self._closed is not None:
            raise copy.copy(self._closed)
        now = self._now()
        if (self.shared is None and not self._queue and self._in_flight < self._concurrency(now)
                and self.pacer.ready_at(now, est_tokens) <= now):
            return self._admit(now, est_tokens, out_tokens)
        fut: asyncio.Future[Ticket] = self._loop.create_future()  # type: ignore[union-attr]
        if front:
            self._queue.appendleft((fut, est_tokens, out_tokens))
        else:
            self._queue.append((fut, est_tokens, out_tokens))
        self._dispatch()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result(), None)  # admitted, then cancelled before use
            raise

    def _admit(self, now: float, est_tokens: int, out_tokens: int = 0) -> Ticket:
        ticket = self.pacer.admit(now, est_tokens, out_tokens)
        self._in_flight += 1
        self.admitted += 1
        return ticket

    def release(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """The request is done; `actual_tokens` (None: unknown, keep the reservation) settles it."""
        self._in_flight -= 1
        if actual_tokens is not None:
            now = self._now()
            self.pacer.settle(now, ticket.est_tokens, actual_tokens)
            if self.shared is not None and actual_tokens != ticket.est_tokens:
                self.shared.soon(self.shared.settle(ticket.est_tokens - actual_tokens, self.pacer.tok_rate(now)),
                                 self.close)
        self._dispatch()

    def succeeded(self) -> None:
        self.pacer.succeeded()

    def throttled(self, ticket: Ticket, wait_s: float | None) -> None:
        self.pacer.throttled(self._now(), ticket.admitted_at, wait_s)
        self._share_pause()
        self._dispatch()

    def overloaded(self, ticket: Ticket) -> None:
        """The request got a 5xx or a transport failure: the pacer may back the lane off."""
        self.pacer.overloaded(self._now(), ticket.admitted_at)

    def observe(self, info: RateLimitInfo, ticket: Ticket | None = None) -> None:
        """Feed one response's rate-limit headers (for the request holding `ticket`) to the pacer."""
        if not info.empty:
            self.pacer.observe(self._now(), info, ticket)
            self._share_pause()
            self._dispatch()

    @property
    def closed(self) -> BaseException | None:
        """Why the lane refuses everything (None: open)."""
        return self._closed

    def on_close(self, callback: Callable[[BaseException], None]) -> None:
        """Call `callback(exc)` when the lane closes: requests that wait elsewhere (in a batch) are refused too."""
        self._on_close.append(callback)

    def halt(self, exc: BaseException) -> None:
        """Refuse from this instant; safe inside a signal handler (one assignment, no queue work).
        `close` must follow on the loop to fail the queued waiters."""
        if self._closed is None:
            self._closed = exc

    def close(self, exc: BaseException) -> None:
        """Refuse everything from now on: queued waiters get `exc` without being sent."""
        self._closed = exc
        callbacks, self._on_close = self._on_close, []  # once (a `halt` may have set _closed already)
        for callback in callbacks:
            callback(exc)
        while self._queue:
            fut = self._queue.popleft()[0]
            if not fut.done():
                fut.set_exception(copy.copy(exc))
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        if self._asking is not None:
            self._asking.cancel()  # an admission it got meanwhile stays charged: conservative

    def _share_pause(self) -> None:
        """A pause the local pacer just took (429, `remaining: 0`) applies to every worker of the quota."""
        until = self.pacer.pause_until
        if self.shared is not None and until > self._shared_pause:
            self._shared_pause = until
            self.shared.soon(self.shared.pause(until - self._now()), self.close)

    async def _ask_shared(self, item: tuple[asyncio.Future[Ticket], int, int]) -> None:
        """The head's one ask to the shared quota: admitted, or a timer for the wait it returned."""
        from agen.providers.shared_quota import QuotaStoreUnreachableError

        shared, pacer = self.shared, self.pacer
        assert shared is not None
        fut, est, out = item
        rates = (pacer.req_rate(self._now()), pacer.tok_rate(self._now()))
        try:
            wait = await shared.admit(est, *rates)
        except QuotaStoreUnreachableError as exc:
            self.close(exc)
            return
        finally:
            self._asking = None
        now = self._now()
        if wait > 0:
            self._wake_at(now + wait)
            return
        # Admitted by the quota; still ours to send? (cancelled, closed, or paused by a 429 meanwhile)
        if (fut.done() or self._closed is not None or self._in_flight >= self._concurrency(now)
                or pacer.ready_at(now, est) > now):
            shared.soon(shared.cancel(est, *rates), self.close)
        else:
            self._queue.remove(item)
            fut.set_result(self._admit(now, est, out))
        self._dispatch()

    def _wake_at(self, t: float) -> None:
        if t < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(t, self._on_timer)  # type: ignore[union-attr]
            self._timer_at = t

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._dispatch()

    def _dispatch(self) -> None:
        if self._closed is not None:
            return
        now = self._now()
        q = self._queue
        while q:
            fut, est, out = q[0]
            if fut.done():
                q.popleft()
                continue
            if self._in_flight >= self._concurrency(now):
                return
            t = self.pacer.ready_at(now, est)
            if t > now:
                self._wake_at(t)
                return
            if self.shared is not None:
                if self._asking is None:
                    self._asking = self._loop.create_task(self._ask_shared(q[0]))  # type: ignore[union-attr]
                return
            q.popleft()
            fut.set_result(self._admit(now, est, out))

    def statistics(self) -> dict[str, int | float]:
        now = self._now() if self._loop is not None else 0.0
        p = self.pacer
        return {
            "lane/admitted": self.admitted,
            "lane/in_flight": self._in_flight,
            "lane/queued": sum(1 for f, *_ in self._queue if not f.done()),
            "lane/pauses": p.pauses,
            "lane/header_pauses": p.header_pauses,
            "lane/decreases": p.decreases,
            "lane/overload_decreases": p.overload_decreases,
            "lane/factor": round(p.factor(now), 4),
            "lane/rpm_effective": round((p.req_rate(now) or 0.0) * 60, 2),
            "lane/tpm_effective": round((p.tok_rate(now) or 0.0) * 60, 2),
            **(self.shared.statistics() if self.shared is not None else {}),
        }
