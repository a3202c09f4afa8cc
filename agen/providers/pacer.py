"""Admission arithmetic of one lane, a pure function of `now` (tests drive a fake clock).

Synchronous and called for every request (admit, settle, observe), so it is compiled (`agen/native.py`).

  * requests and tokens are each a GCRA (a token bucket written as a "theoretical arrival time")
    with `burst_s` seconds of tolerance; a request reserves what the client estimates (`prompt
    chars/4 + n x max_tokens`, or less on a server known to charge real usage) and is settled
    with its real usage afterwards (refund or extra charge); on a usage-charging server refunds
    that arrive while the lane is not behind are banked (USAGE_BANK_S), since that server is owed
    only what was used;
  * the effective rate is `min(configured, learned from x-ratelimit-limit-*) x margin x factor`;
  * a 429 pauses the whole lane for the server's retry-after (a 429 without any hint: a pause
    that doubles with every such 429 until a request succeeds) and halves `factor` (at most once per
    generation of requests: a 429 for a request sent before the last decrease does not count
    again), which then recovers linearly to 1 over `recover_s` (AIMD); when the server's bucket
    is mirrored (below) the decrease is only x0.9, since the mirror already corrects the cause;
  * a lane starts paced, without burst credit, and gets none right after a pause;
  * with `limit` headers the server's own bucket is mirrored (remaining at the report, refill
    limit/60 per second, minus what was sent since) and a request waits until it fits there too;
    without them, a response saying `remaining == 0` pauses the lane until the announced reset;
  * a server whose limits reset at fixed clock windows (LiteLLM-style proxies) is recognised by
    its remaining jumping up faster than any steady refill could; its mirror then does not
    refill at all until the window's end (learned from reset headers and 429 waits), where it is
    dropped and the next report starts it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agen.providers.facts import ChargeProbe, EndpointFacts
from agen.providers.headers import RateLimitInfo

__all__ = ["NEG_INF", "OVERLOAD_CUT", "OVERLOAD_DOUBLING_S", "Pacer", "Ticket"]

NEG_INF = -math.inf
USAGE_BANK_S = 5.0  # seconds of token rate a usage-charging lane may bank from refunds
OVERLOAD_EWMA = 0.05  # weight of one answer in the moving 5xx share (~the last 20 answers)
OVERLOAD_SHARE = 0.25  # a 5xx share from which the lane backs off
OVERLOAD_CUT = 0.7  # an overload cut keeps this share (CUBIC's beta: a gentler sawtooth than halving)
OVERLOAD_DOUBLING_S = 5.0  # after an overload cut the allowed share doubles this often


@dataclass(slots=True)
class Ticket:
    """An admitted request: what it reserved, when it went out, and the lane's running totals then."""

    est_tokens: int
    admitted_at: float
    seq_req: int = 0  # requests admitted by the lane up to and including this one
    seq_tok: float = 0.0  # tokens reserved up to and including this one
    seq_out: float = 0.0  # of those, output tokens reserved


@dataclass(slots=True)
class _Mirror:
    """The server's own bucket as last reported: `level` units at `at`, refilling at `limit/60`/s.

    `spent_before` is the lane's running total up to the reporting request (whose own charge, or
    rejection, the report already reflects); everything admitted since is charged on top.
    """

    limit: float
    level: float
    at: float
    spent_before: float
    out_before: float = 0.0  # output tokens reserved up to the reporting request (ChargeProbe)
    fixed_until: float | None = None  # fixed window: no refill; the mirror is void from then on

    def predicted(self, now: float, spent_total: float) -> float:
        refill = 0.0 if self.fixed_until is not None else self.limit / 60.0 * (now - self.at)
        return min(self.limit, self.level + refill) - (spent_total - self.spent_before)

    def wait_s(self, now: float, spent_total: float, cost: float) -> float:
        if cost > self.limit:
            return 0.0  # can never fit: let the server say so
        avail = self.predicted(now, spent_total)
        if avail >= cost:
            return 0.0
        if self.fixed_until is not None:
            return max(0.0, self.fixed_until - now)
        return (cost - avail) / (self.limit / 60.0)


class Pacer:
    """Admission arithmetic of one lane; every method takes `now` (seconds, monotonic)."""

    def __init__(self, *, rpm: float | None, tpm: float | None, margin: float = 0.99, burst_s: float = 0.5,
                 recover_s: float = 20.0, min_factor: float = 1 / 64, default_pause_s: float = 1.0,
                 max_header_pause_s: float = 60.0, header_feedback: bool = True,
                 facts: EndpointFacts | None = None) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.header_feedback = header_feedback  # False: only retry-after and AIMD (benchmarks the fallback)
        self.learned_rpm: float | None = None
        self.learned_tpm: float | None = None
        self.margin, self.burst_s, self.recover_s = margin, burst_s, recover_s
        self.min_factor, self.default_pause_s, self.max_header_pause_s = min_factor, default_pause_s, max_header_pause_s
        self.req_tat = NEG_INF
        self.tok_tat = NEG_INF
        self.pause_until = NEG_INF
        self._f0 = 1.0
        self.decreased_at = NEG_INF
        self.seq_req = 0
        self.seq_tok = 0.0
        self._mirror_req: _Mirror | None = None
        self._mirror_tok: _Mirror | None = None
        self._mirror_from = NEG_INF  # admission time of the request whose headers we mirror
        self.pauses = 0
        self.decreases = 0
        self.header_pauses = 0
        self.facts = facts or EndpointFacts("lane")
        self.seq_out = 0.0
        self._hintless = 0  # 429s without any wait hint since the last success
        self._hintless_at = NEG_INF  # when the last of them doubled the pause
        self.overload_share = 0.0  # moving share of 5xx/transport failures among recent answers
        self._overload_cut = False  # the last decrease was an overload's (then `factor` recovers exponentially)
        self.overload_decreases = 0
        self._charge = ChargeProbe()
        self._last_req: tuple[float, float] | None = None  # (at, remaining) of the last requests report
        self._steady_votes = 0
        self.window_at: float | None = None  # fixed windows: the next reset, when known
        self.window_s: float | None = None  # fixed windows: their length, when seen twice

    # ---- rates
    def factor(self, now: float) -> float:
        """The share of the lane's rate (or concurrency) allowed now. After a 429 it climbs back
        linearly (all of it in `recover_s`); after an overload cut it doubles every
        `OVERLOAD_DOUBLING_S`, so a lane cut far below its maximum probes upward in small steps
        near the server's capacity instead of overshooting it again within a second."""
        if self._f0 >= 1.0:
            return 1.0
        if self._overload_cut:
            return min(1.0, self._f0 * 2.0 ** ((now - self.decreased_at) / OVERLOAD_DOUBLING_S))
        return min(1.0, self._f0 + (now - self.decreased_at) / self.recover_s)

    @staticmethod
    def _cap(configured: float | None, learned: float | None) -> float | None:
        vals = [v for v in (configured, learned) if v]
        return min(vals) if vals else None

    def req_rate(self, now: float) -> float | None:
        """Requests per second allowed now, or None when unlimited."""
        rpm = self._cap(self.rpm, self.learned_rpm)
        return None if rpm is None else rpm / 60.0 * self.margin * self.factor(now)

    def tok_rate(self, now: float) -> float | None:
        tpm = self._cap(self.tpm, self.learned_tpm)
        return None if tpm is None else tpm / 60.0 * self.margin * self.factor(now)

    @property
    def rate_limited(self) -> bool:
        return any((self.rpm, self.tpm, self.learned_rpm, self.learned_tpm))

    # ---- admission
    def ready_at(self, now: float, est_tokens: int) -> float:
        """Earliest time a request reserving `est_tokens` may be sent (<= now: send it now)."""
        t = self.pause_until
        if not (self.rpm or self.tpm or self.learned_rpm or self.learned_tpm):
            return t  # fast path: nothing but pauses (and concurrency) limits this lane
        r = self.req_rate(now)
        if r:
            t = max(t, self.req_tat - self.burst_s)
        rho = self.tok_rate(now)
        if rho:
            capacity = max(rho * self.burst_s, float(est_tokens))
            t = max(t, self.tok_tat + (est_tokens - capacity) / rho)
        if self.window_at is not None:
            self._roll_windows(now)
        if self._mirror_req is not None:
            t = max(t, now + self._mirror_req.wait_s(now, self.seq_req, 1))
        if self._mirror_tok is not None:
            t = max(t, now + self._mirror_tok.wait_s(now, self.seq_tok, est_tokens))
        return t

    # ---- fixed windows
    def _learn_window(self, now: float, info: RateLimitInfo, admitted_at: float) -> None:
        """`fixed` when remaining requests rise faster than a steady refill can; `steady` when the
        announced reset keeps matching a steady bucket's time-to-full.

        A report was made by the server between its request's admission and now, so between two
        reports a steady bucket refilled for at most `now - (earlier request's admission)`."""
        lim, rem = info.limit_requests, info.remaining_requests
        if not lim or rem is None:
            return
        last, self._last_req = self._last_req, (admitted_at, float(rem))
        window = self.facts.get("window")
        if window is None and info.reset_requests_s is not None and rem < 0.9 * lim:
            steady_reset = (lim - rem) / lim * 60.0
            if abs(info.reset_requests_s - steady_reset) <= max(1.0, 0.2 * steady_reset):
                self._steady_votes += 1
                if self._steady_votes >= 5:
                    self.facts.learn("window", "steady", "reset headers match a steady refill")
        if last is not None and rem - last[1] > lim / 60.0 * (now - last[0]) + 2.0:
            self.facts.learn("window", "fixed", f"remaining requests rose from {int(last[1])} to {int(rem)} "
                                                f"in {now - last[0]:.1f}s")
            if self.facts.get("window") == "fixed":
                self._window_ends(now)
        if self.facts.get("window") == "fixed" and info.reset_requests_s:
            self._window_ends(now + info.reset_requests_s)

    def _window_ends(self, at: float) -> None:
        """A fixed window ends (or just ended) at `at`: remember it, and its length once seen twice."""
        prev = self.window_at
        if prev is not None and at - prev > 1.0:
            gap = at - prev
            self.window_s = gap if self.window_s is None else min(self.window_s, gap)
        if prev is None or at > prev + 0.5 or at < prev - 0.5:
            self.window_at = at

    def _roll_windows(self, now: float) -> None:
        """Past a fixed window's end its mirrors are void: the next report starts them again."""
        if self.window_at is not None and now >= self.window_at:
            self._mirror_req = self._mirror_tok = None
            self.window_at = self.window_at + self.window_s if self.window_s else None
            while self.window_at is not None and self.window_at <= now:
                self.window_at += self.window_s  # type: ignore[operator]

    def admit(self, now: float, est_tokens: int, out_tokens: int = 0) -> Ticket:
        self.seq_req += 1
        self.seq_tok += est_tokens
        self.seq_out += out_tokens
        if not (self.rpm or self.tpm or self.learned_rpm or self.learned_tpm):
            return Ticket(est_tokens, now, self.seq_req, self.seq_tok, self.seq_out)
        r = self.req_rate(now)
        if r:
            if self.req_tat == NEG_INF:  # start paced, without burst credit: the server may be at 0
                self.req_tat = now + self.burst_s
            self.req_tat = max(self.req_tat, now) + 1.0 / r
        rho = self.tok_rate(now)
        if rho:
            if self.tok_tat == NEG_INF:
                self.tok_tat = now + max(0.0, rho * self.burst_s - est_tokens) / rho
            # A usage-charging server is owed only what was used: refunds settled while the lane was
            # not behind are banked (up to USAGE_BANK_S of rate) instead of lost to the clamp at now.
            bank = USAGE_BANK_S if self.facts.get("charges") == "usage" else 0.0
            self.tok_tat = max(self.tok_tat, now - bank) + est_tokens / rho
        return Ticket(est_tokens, now, self.seq_req, self.seq_tok, self.seq_out)

    def settle(self, now: float, est_tokens: int, actual_tokens: int) -> None:
        """Replace a reservation by the real usage in our own budget: refund (or charge) the difference.

        The server's bucket (mirrored from headers) is left alone: it says itself what it charged.
        """
        rho = self.tok_rate(now)
        if rho and self.tok_tat > NEG_INF:
            self.tok_tat -= (est_tokens - actual_tokens) / rho

    # ---- closed loop
    def succeeded(self) -> None:
        """A request went through: a 429 without a hint starts again from the shortest pause."""
        self._hintless = 0
        self.overload_share *= 1.0 - OVERLOAD_EWMA

    def overloaded(self, now: float, admitted_at: float) -> None:
        """A 5xx or a transport failure. Cut the rate (or, with no rate known, the concurrency) to
        `OVERLOAD_CUT` once per generation, but only while such answers are a large share of recent ones
        (`OVERLOAD_SHARE`): an overloaded server answers most requests beyond its capacity so, while
        a few random 500s of a healthy one must not ratchet the lane down."""
        self.overload_share += OVERLOAD_EWMA * (1.0 - self.overload_share)
        if self.overload_share >= OVERLOAD_SHARE and admitted_at >= self.decreased_at:
            self._f0 = max(self.min_factor, self.factor(now) * OVERLOAD_CUT)
            self._overload_cut = True
            self.decreased_at = now
            self.decreases += 1
            self.overload_decreases += 1

    def throttled(self, now: float, admitted_at: float, wait_s: float | None) -> None:
        """A 429: pause everyone for the server's wait (none given: a pause that doubles with every
        such 429 until a success), and halve the rate once per generation."""
        if wait_s is None:
            # One doubling per generation: requests sent together before the first 429 came back
            # (a burst) share its pause instead of doubling it once each.
            fresh = admitted_at >= self._hintless_at
            doublings = self._hintless if fresh else max(0, self._hintless - 1)  # a sibling: the same pause
            wait_s = min(self.max_header_pause_s, self.default_pause_s * 2 ** min(doublings, 16))
            if fresh:
                self._hintless += 1
                self._hintless_at = now
        elif self.facts.get("window") == "fixed" and wait_s > 0:
            self._window_ends(now + wait_s)
        self.pause_until = max(self.pause_until, now + wait_s)
        # no burst right after the pause: the server's bucket is empty
        if self.req_tat > NEG_INF:
            self.req_tat = max(self.req_tat, self.pause_until + self.burst_s)
        if self.tok_tat > NEG_INF:
            self.tok_tat = max(self.tok_tat, self.pause_until + self.burst_s)
        self.pauses += 1
        if admitted_at >= self.decreased_at:
            # Mirroring the server's bucket already corrects the cause; then only a gentle decrease.
            mirrored = self._mirror_req is not None or self._mirror_tok is not None
            self._f0 = max(self.min_factor, self.factor(now) * (0.9 if mirrored else 0.5))
            self._overload_cut = False
            self.decreased_at = now
            self.decreases += 1

    def observe(self, now: float, info: RateLimitInfo, ticket: Ticket | None = None) -> None:
        """Learn the server's limits and mirror its bucket; pause when it says the budget is spent.

        With a `limit` header the server's bucket is mirrored (level = remaining at the report,
        refilling limit/60 per second, minus what we sent since). Without one, `remaining == 0`
        pauses the lane until the announced reset.
        """
        if not self.header_feedback:
            return
        if info.limit_requests:
            self.learned_rpm = float(info.limit_requests)
        if info.limit_tokens:
            self.learned_tpm = float(info.limit_tokens)
        fresh = ticket is None or ticket.admitted_at >= self._mirror_from
        if fresh and ticket is not None:
            self._learn_window(now, info, ticket.admitted_at)  # in admission order: a late report looks like a refill
        fixed = self.facts.get("window") == "fixed"
        if fresh and ticket is not None:
            self._mirror_from = ticket.admitted_at
            until = self.window_at if fixed else None
            if info.limit_requests and info.remaining_requests is not None:
                self._mirror_req = _Mirror(float(info.limit_requests), float(info.remaining_requests), now,
                                           float(ticket.seq_req), fixed_until=until if fixed else None)
            if info.limit_tokens and info.remaining_tokens is not None:
                old = self._mirror_tok
                if old is not None and not fixed and self.facts.get("charges") is None:
                    excess = info.remaining_tokens - old.predicted(now, ticket.seq_tok)
                    verdict = self._charge.add(excess, ticket.seq_out - old.out_before)
                    if verdict is not None:
                        self.facts.learn("charges", verdict, f"remaining tokens vs reservations, "
                                         f"{len(self._charge.ratios)} reports")
                self._mirror_tok = _Mirror(float(info.limit_tokens), float(info.remaining_tokens), now,
                                           ticket.seq_tok, ticket.seq_out, fixed_until=until if fixed else None)
        for limit, remaining, reset in ((info.limit_requests, info.remaining_requests, info.reset_requests_s),
                                        (info.limit_tokens, info.remaining_tokens, info.reset_tokens_s)):
            if not limit and remaining is not None and remaining <= 0 and reset:
                until = now + min(reset, self.max_header_pause_s)
                if until > self.pause_until:
                    self.pause_until = until
                    self.header_pauses += 1
