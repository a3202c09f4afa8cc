"""RIP (Rejecting Instruction Preferences, arXiv 2501.18578): keep a prompt if its *worst* response is good.

For one candidate prompt the policy model writes K responses; each is scored (LLM judge or
reward model). RIP's observation is that a bad prompt shows up in the low end of its response
distribution: a low minimum reward, a short lowest-scored response, a wide gap between the best
and the worst. A prompt is kept iff

    min_reward >= tau1   and   min_reward_len >= tau2   and   max_reward - min_reward <= tau3.

Thresholds are fixed numbers or percentiles of a pilot pool of candidates (`calibrate`). A
percentile p always means "this threshold alone rejects p% of the pilot": the bottom p% for
tau1 and tau2, the top p% of gaps for tau3. Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agen.gen.parse import strip_think

__all__ = ["RipMetrics", "RipThresholds", "calibrate", "compute_metrics", "keep", "percentile_threshold",
           "preference_pair", "response_length", "threshold_uncertainty"]

METRICS = ("min_reward", "min_len", "max_gap")


@dataclass(frozen=True, slots=True)
class RipMetrics:
    """What RIP looks at for one prompt, over its scored responses.

    `min_reward_len` is the length (words, `response_length`) of the lowest-scored response;
    when several responses share the lowest score, the shortest of them counts, so the value
    does not depend on response order and errs on the side of rejecting.
    """

    min_reward: float
    max_reward: float
    gap: float
    min_reward_len: int
    mean_reward: float
    n_scored: int


@dataclass(frozen=True, slots=True)
class RipThresholds:
    """tau1 (`min_reward`), tau2 (`min_len`), tau3 (`max_gap`); use -inf / inf to switch one off."""

    min_reward: float
    min_len: float
    max_gap: float


def response_length(text: str) -> int:
    """A response's length in tokens, approximated by whitespace-separated words outside `<think>`."""
    return len(strip_think(text).split())


def compute_metrics(rewards: Sequence[float | None], lengths: Sequence[int]) -> RipMetrics:
    """RipMetrics of one prompt; `rewards[i]` scores the response of length `lengths[i]`.

    A None reward (judge failure) is skipped; `n_scored` counts the rest. Raises ValueError if
    the sequences differ in length, nothing was scored, or a reward is not finite.
    """
    if len(rewards) != len(lengths):
        raise ValueError(f"{len(rewards)} rewards but {len(lengths)} lengths")
    scored = [(float(r), int(n)) for r, n in zip(rewards, lengths) if r is not None]
    if not scored:
        raise ValueError("no scored responses")
    if not all(math.isfinite(r) for r, _ in scored):
        raise ValueError("rewards must be finite")
    lo = min(r for r, _ in scored)
    hi = max(r for r, _ in scored)
    lo_len = min(n for r, n in scored if r == lo)
    # fsum, then clamp: the mean of equal floats can round outside [min, max] by one ulp.
    mean = min(hi, max(lo, math.fsum(r for r, _ in scored) / len(scored)))
    return RipMetrics(min_reward=lo, max_reward=hi, gap=hi - lo, min_reward_len=lo_len, mean_reward=mean,
                      n_scored=len(scored))


def keep(m: RipMetrics, t: RipThresholds) -> tuple[bool, str]:
    """(kept, reason): `rip:keep`, or the first failed test among `rip:low_min_reward`,
    `rip:short_response`, `rip:large_gap` (checked in that order)."""
    if m.min_reward < t.min_reward:
        return False, "rip:low_min_reward"
    if m.min_reward_len < t.min_len:
        return False, "rip:short_response"
    if m.gap > t.max_gap:
        return False, "rip:large_gap"
    return True, "rip:keep"


def percentile_threshold(values: Sequence[float], p: float, *, reject_top: bool = False) -> float:
    """The threshold that, applied alone to `values`, rejects ceil(p% x n) of them (fewer if tied).

    For a lower bound (keep x >= t) it is the value just above the bottom share; with
    `reject_top` (keep x <= t) the value just below the top share. p = 0 keeps everything;
    p = 100 keeps only the best value (and its ties), never nothing.
    """
    if not values:
        raise ValueError("percentile of an empty pool")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    s = sorted(float(v) for v in values)
    n = len(s)
    rejected = min(n - 1, math.ceil(p * n / 100 - 1e-9))
    return s[n - 1 - rejected] if reject_top else s[rejected]


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def calibrate(pilot: Sequence[RipMetrics], spec: Any) -> RipThresholds:
    """Thresholds from a pilot pool: each of `min_reward`, `min_len`, `max_gap` in `spec` is
    `{"percentile": p}` or `{"value": x}` (a mapping, or an object with those attributes such
    as `agen.config.RipThresholdsConfig`); a missing entry means the 50th percentile.

    Raises ValueError if a percentile is asked for with an empty pilot.
    """
    columns = {
        "min_reward": [m.min_reward for m in pilot],
        "min_len": [float(m.min_reward_len) for m in pilot],
        "max_gap": [m.gap for m in pilot],
    }
    out: dict[str, float] = {}
    for name in METRICS:
        entry = _field(spec, name)
        value = None if entry is None else _field(entry, "value")
        pct = None if entry is None else _field(entry, "percentile")
        if value is not None and pct is not None:
            raise ValueError(f"{name}: give exactly one of 'percentile' or 'value'")
        if value is not None:
            out[name] = float(value)
        else:
            out[name] = percentile_threshold(columns[name], 50.0 if pct is None else float(pct),
                                             reject_top=name == "max_gap")
    return RipThresholds(**out)


def threshold_uncertainty(pilot: Sequence[RipMetrics], spec: Any, resamples: int = 200,
                          seed: int = 0) -> dict[str, Any]:
    """How much the calibrated thresholds would move with another pilot of the same size: the
    5th and 95th percentiles of each threshold over bootstrap resamples of the pilot, and the
    same interval for the share of the pilot the thresholds keep. Deterministic for a seed."""
    import random

    if not pilot:
        raise ValueError("no pilot to resample")
    rng = random.Random(seed)
    n = len(pilot)
    draws: dict[str, list[float]] = {name: [] for name in METRICS}
    kept: list[float] = []
    for _ in range(resamples):
        sample = [pilot[rng.randrange(n)] for _ in range(n)]
        t = calibrate(sample, spec)
        for name in METRICS:
            draws[name].append(getattr(t, name))
        kept.append(sum(keep(m, t)[0] for m in pilot) / n)

    def interval(xs: list[float]) -> list[float]:
        s = sorted(xs)
        return [s[int(0.05 * (len(s) - 1))], s[int(0.95 * (len(s) - 1))]]

    return {"resamples": resamples, "interval_90": {name: interval(v) for name, v in draws.items()},
            "pilot_keep_rate_90": interval(kept)}


def preference_pair(responses: Sequence[str], rewards: Sequence[float | None]) -> tuple[str, str] | None:
    """(chosen, rejected) = (highest-, lowest-rewarded response) for DPO export.

    Unscored responses (None) are skipped; ties go to the earliest response. None when there is
    no preference to learn (fewer than two scored responses, or all scored alike).
    """
    if len(responses) != len(rewards):
        raise ValueError(f"{len(responses)} responses but {len(rewards)} rewards")
    scored = [(r, i) for i, r in enumerate(rewards) if r is not None]
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda ri: (ri[0], -ri[1]))
    worst = min(scored, key=lambda ri: (ri[0], ri[1]))
    if best[0] == worst[0]:
        return None
    return responses[best[1]], responses[worst[1]]
