"""RIP metrics, thresholds and calibration: invariants (Hypothesis) and the documented edge cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agen.config import RipThresholdsConfig, Threshold
from agen.gen.rip_metrics import (RipMetrics, RipThresholds, calibrate, compute_metrics, keep, percentile_threshold,
                          preference_pair, response_length)

reward = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)
length = st.integers(min_value=0, max_value=2000)
samples = st.lists(st.tuples(reward, length), min_size=1, max_size=8)
OFF_LOW, OFF_HIGH = {"value": -math.inf}, {"value": math.inf}


def metrics_of(pairs: list[tuple[float, int]]) -> RipMetrics:
    return compute_metrics([r for r, _ in pairs], [n for _, n in pairs])


@settings(max_examples=40, deadline=None)
@given(samples, st.randoms(use_true_random=False))
def test_metric_invariants(pairs: list[tuple[float, int]], rnd) -> None:
    """gap ≥ 0, min ≤ mean ≤ max, and the metrics do not depend on response order."""
    m = metrics_of(pairs)
    assert m.gap >= 0 and m.gap == m.max_reward - m.min_reward
    assert m.min_reward <= m.mean_reward <= m.max_reward
    assert m.n_scored == len(pairs)
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert metrics_of(shuffled) == m


def test_min_len_tie_takes_shortest_and_none_skipped() -> None:
    """Tied lowest rewards count the shortest response; unscored (None) responses are skipped."""
    m = compute_metrics([3.0, None, 3.0, 9.0], [120, 5, 40, 10])
    assert (m.min_reward, m.min_reward_len, m.max_reward, m.gap, m.n_scored) == (3.0, 40, 9.0, 6.0, 3)
    assert m.mean_reward == pytest.approx(5.0)


def test_compute_metrics_rejects_bad_input() -> None:
    """Nothing scored, mismatched lengths or a NaN reward is a ValueError, not a silent metric."""
    with pytest.raises(ValueError):
        compute_metrics([None, None], [1, 2])
    with pytest.raises(ValueError):
        compute_metrics([1.0], [1, 2])
    with pytest.raises(ValueError):
        compute_metrics([float("nan")], [1])


def test_keep_reasons_in_order() -> None:
    """Each failed test has its reason, checked in the order min reward, length, gap."""
    t = RipThresholds(min_reward=5, min_len=50, max_gap=3)
    assert keep(RipMetrics(6, 8, 2, 60, 7, 8), t) == (True, "rip:keep")
    assert keep(RipMetrics(4, 5, 1, 10, 4.5, 8), t) == (False, "rip:low_min_reward")
    assert keep(RipMetrics(6, 7, 1, 49, 6.5, 8), t) == (False, "rip:short_response")
    assert keep(RipMetrics(6, 10, 4, 80, 8, 8), t) == (False, "rip:large_gap")
    assert keep(RipMetrics(5, 8, 3, 50, 7, 8), t) == (True, "rip:keep")  # bounds are inclusive


pilot_st = st.lists(samples.map(metrics_of), min_size=1, max_size=30)
pct = st.floats(min_value=0, max_value=100)


@settings(max_examples=40, deadline=None)
@given(pilot_st, pct, st.sampled_from(["min_reward", "min_len", "max_gap"]))
def test_single_percentile_keeps_its_share(pilot: list[RipMetrics], p: float, metric: str) -> None:
    """One active percentile p keeps at least n − ceil(p·n/100) of the pilot, exactly that many without
    ties, and never nothing."""
    spec = {"min_reward": OFF_LOW, "min_len": OFF_LOW, "max_gap": OFF_HIGH, metric: {"percentile": p}}
    t = calibrate(pilot, spec)
    n = len(pilot)
    kept = sum(keep(m, t)[0] for m in pilot)
    want = max(1, n - math.ceil(p * n / 100 - 1e-9))
    col = {"min_reward": [m.min_reward for m in pilot], "min_len": [m.min_reward_len for m in pilot],
           "max_gap": [m.gap for m in pilot]}[metric]
    assert kept >= want
    if len(set(col)) == n:
        assert kept == want


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 100), st.randoms(use_true_random=False))
def test_median_keeps_half(half: int, rnd) -> None:
    """The default (50th percentile on one metric) keeps half of a tie-free pilot."""
    values = [i + 0.5 for i in range(2 * half)]
    rnd.shuffle(values)
    pilot = [RipMetrics(v, v, 0.0, 100, v, 8) for v in values]
    t = calibrate(pilot, {"min_len": OFF_LOW, "max_gap": OFF_HIGH})  # min_reward: default 50th
    assert sum(keep(m, t)[0] for m in pilot) == half


@settings(max_examples=40, deadline=None)
@given(pilot_st, reward, reward)
def test_raising_tau1_never_keeps_more(pilot: list[RipMetrics], a: float, b: float) -> None:
    """Monotonicity: what a higher tau1 keeps is a subset of what a lower tau1 keeps."""
    lo, hi = sorted((a, b))
    kept_lo = {i for i, m in enumerate(pilot) if keep(m, RipThresholds(lo, 10, 5))[0]}
    kept_hi = {i for i, m in enumerate(pilot) if keep(m, RipThresholds(hi, 10, 5))[0]}
    assert kept_hi <= kept_lo


def test_calibrate_accepts_config_objects_and_values() -> None:
    """The run config's RipThresholdsConfig works as a spec; fixed values pass through."""
    pilot = [RipMetrics(float(i), float(i) + 2, 2.0 + i % 3, 10 * i, float(i) + 1, 8) for i in range(10)]
    t = calibrate(pilot, RipThresholdsConfig(min_reward=Threshold(value=4.5), max_gap=Threshold(percentile=100)))
    assert t.min_reward == 4.5
    assert t.min_len == 50.0  # default 50th percentile of 0..90: rejects the bottom 5
    assert t.max_gap == 2.0  # rejects all but the smallest gap
    with pytest.raises(ValueError):
        calibrate([], {})


def test_percentile_threshold_ends() -> None:
    """p=0 keeps everything; p=100 keeps only the best value, for both directions."""
    vals = [3.0, 1.0, 2.0]
    assert percentile_threshold(vals, 0) == 1.0
    assert percentile_threshold(vals, 100) == 3.0
    assert percentile_threshold(vals, 0, reject_top=True) == 3.0
    assert percentile_threshold(vals, 100, reject_top=True) == 1.0


def test_preference_pair() -> None:
    """Chosen is the best-rewarded response, rejected the worst; no preference gives None."""
    assert preference_pair(["a", "b", "c"], [5.0, 9.0, 1.0]) == ("b", "c")
    assert preference_pair(["a", "b", "c"], [9.0, None, 9.0]) is None
    assert preference_pair(["a", "b"], [None, 3.0]) is None
    assert preference_pair(["a", "b", "c", "d"], [2.0, 8.0, 8.0, 2.0]) == ("b", "a")


def test_response_length_ignores_think() -> None:
    """Length counts words of the visible answer only."""
    assert response_length("<think>lots of hidden words here</think>one two three") == 3
