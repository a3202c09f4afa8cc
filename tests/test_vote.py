"""Tests for agen.gen.vote: the full Answer-Consistency rule and its early-stopping tally.

Early stopping, measured with `early_stop_average` below (K=16, min_share=0.5, each sample
correct with p=0.8, a wrong sample is one of 3 wrong answers or None, 20,000 simulated votes,
seed 0): when the candidate's answer is correct a vote stops after 10.48 samples on average
(-35% vs 16) and accepts 99.85%; when it is wrong, it stops after 9.21 samples and never
accepts. Requesting `needed_before_decision()` samples per round (what the pipeline should do)
draws exactly as many samples, since a vote can never decide before that many, in 2.35 and
1.91 rounds on average.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agen.gen.answers import answer_key
from agen.gen.vote import Tally, VoteDecision, decide_full, min_agree

# "3", "3.0", "\frac{6}{2}" are one answer; "4" and "-3" are others; None is no answer.
ALPHABET = ["3", "3.0", "\\frac{6}{2}", "4", "4.00", "-3", "7", None]
CANDIDATES = ["3", "\\dfrac{12}{4}", "4", "9"]


def oracle(candidate: str, votes: list[str | None], k: int, min_share: float) -> bool:
    """Independent statement of the rule, by counting numeric keys."""
    keys = Counter(answer_key(v) for v in votes if v is not None)
    c = keys.pop(answer_key(candidate), 0)
    o = max(keys.values(), default=0)
    return c > o and c / k >= min_share


def run_early(candidate: str, votes: list[str | None], k: int, min_share: float) -> VoteDecision:
    """Feed votes one by one, stopping at the first decision."""
    tally = Tally(candidate, k, min_share)
    for vote in votes:
        tally.add(vote)
        decision = tally.decision()
        if decision is not None:
            return decision
    raise AssertionError("no decision after k votes")


votes_and_k = st.integers(min_value=1, max_value=20).flatmap(
    lambda k: st.tuples(st.just(k), st.lists(st.sampled_from(ALPHABET), min_size=k, max_size=k))
)
shares = st.sampled_from([0.0, 0.25, 0.3, 0.5, 0.51, 2 / 3, 0.75, 1.0])


@settings(max_examples=250, deadline=None)
@given(votes_and_k, st.sampled_from(CANDIDATES), shares)
def test_early_stop_decides_as_full_vote(kv: tuple[int, list[str | None]], candidate: str, min_share: float) -> None:
    """Stopping at Tally's first decision gives the full K-vote outcome, within K samples."""
    k, votes = kv
    full = decide_full(candidate, votes, k, min_share)
    early = run_early(candidate, votes, k, min_share)
    assert early.samples <= k
    assert early.accepted == full.accepted == oracle(candidate, votes, k, min_share)
    if early.samples == k:
        assert early == full


@settings(max_examples=120, deadline=None)
@given(votes_and_k, st.sampled_from(CANDIDATES), shares, st.randoms(use_true_random=False))
def test_full_vote_independent_of_order(
    kv: tuple[int, list[str | None]], candidate: str, min_share: float, rnd: random.Random
) -> None:
    """Shuffling the votes changes no count or outcome of the full vote."""
    k, votes = kv
    shuffled = votes[:]
    rnd.shuffle(shuffled)
    a, b = decide_full(candidate, votes, k, min_share), decide_full(candidate, shuffled, k, min_share)
    assert (a.accepted, a.reason, a.agree, a.samples, a.majority_share) == (
        b.accepted, b.reason, b.agree, b.samples, b.majority_share,
    )
    tops = Counter(answer_key(v) for v in votes if v is not None).most_common(2)
    if a.majority_answer is not None and (len(tops) == 1 or tops[0][1] > tops[1][1]):
        assert answer_key(a.majority_answer) == answer_key(b.majority_answer or "")


@settings(max_examples=120, deadline=None)
@given(votes_and_k, st.sampled_from(CANDIDATES), shares)
def test_needed_before_decision_is_exact(kv: tuple[int, list[str | None]], candidate: str, min_share: float) -> None:
    """No decision comes sooner than promised, and the promise can be met by some answers."""
    k, votes = kv
    tally = Tally(candidate, k, min_share)
    for vote in votes:
        if tally.decision() is not None:
            break
        need = tally.needed_before_decision()
        assert need >= 1
        # Some continuation of `need` answers decides: all agree, or all one other answer.
        deciders = 0
        for filler in {candidate, "12345", *(v for v in tally.votes if v is not None)}:
            probe = Tally(candidate, k, min_share)
            for v in tally.votes:
                probe.add(v)
            for _ in range(need - 1):
                probe.add(filler)
                assert probe.decision() is None
            probe.add(filler)
            deciders += probe.decision() is not None
        assert deciders >= 1
        tally.add(vote)
    if tally.decision() is not None:
        assert tally.needed_before_decision() == 0


def test_needed_before_decision_fresh() -> None:
    """A fresh K=16, min_share=0.5 vote needs 8 samples before it can possibly decide."""
    assert Tally("3", 16, 0.5).needed_before_decision() == 8
    assert Tally("3", 4, 1.0).needed_before_decision() == 1


@pytest.mark.parametrize(
    ("votes", "accepted", "reason"),
    [
        (["3", "3.0", "4", None], True, "agree"),
        (["3", "4", "4", None], False, "majority_disagrees"),
        (["3", "4", None, None], False, "tie"),
        ([None, None, None, None], False, "no_answers"),
        (["3", None, None, None], False, "below_min_share"),
    ],
)
def test_decide_full_reasons(votes: list[str | None], accepted: bool, reason: str) -> None:
    """Each full-vote outcome carries its reason; None counts toward K but forms no class."""
    d = decide_full("3", votes, 4, 0.5)
    assert (d.accepted, d.reason) == (accepted, reason)


def test_decide_full_majority_fields() -> None:
    """majority_answer and majority_share describe the largest class of all K samples."""
    d = decide_full("3", ["4", "4.0", "3", None], 4, 0.5)
    assert d.majority_answer == "4" and d.majority_share == 0.5 and d.agree == 1


def test_early_reasons() -> None:
    """Early rejections say which bound made the outcome certain."""
    t = Tally("3", 4, 0.5)
    for v in ["5", "5", "5"]:
        t.add(v)
    assert t.decision() is not None and t.decision().reason == "cannot_win"  # type: ignore[union-attr]
    t = Tally("3", 4, 1.0)
    t.add(None)
    assert t.decision() is not None and t.decision().reason == "cannot_reach_min_share"  # type: ignore[union-attr]


def test_tally_keeps_votes_and_refuses_extra() -> None:
    """Votes are kept in order; a K+1-th vote is an error; math spellings still agree."""
    t = Tally("\\frac{1}{2}", 2, 0.5)
    t.add("0.5")
    t.add(None)
    assert t.votes == ("0.5", None)
    assert t.decision() == VoteDecision(True, "agree", 1, 2, "\\frac{1}{2}", 0.5)
    with pytest.raises(ValueError):
        t.add("1")


def test_symbolic_answers_vote_through_math_verify() -> None:
    """Non-numeric answers agree through math-verify (\\sqrt{8} is 2\\sqrt{2})."""
    d = decide_full("2\\sqrt{2}", ["\\sqrt{8}", "2 \\sqrt{2}", "\\sqrt{2}", None], 4, 0.5)
    assert d.accepted and d.agree == 2


def test_min_agree_validates() -> None:
    """min_agree is the exact ceiling and rejects nonsense parameters."""
    assert min_agree(16, 0.5) == 8 and min_agree(3, 2 / 3) == 2 and min_agree(5, 0.0) == 0
    with pytest.raises(ValueError):
        min_agree(0, 0.5)
    with pytest.raises(ValueError):
        min_agree(4, 1.5)


def early_stop_average(
    p: float, k: int, min_share: float, trials: int, candidate_correct: bool, batched: bool, seed: int = 0
) -> tuple[float, float, float]:
    """Simulate votes: (mean samples drawn, acceptance rate, mean request rounds)."""
    rng = random.Random(seed)
    wrong = ["7", "8", "9", None]
    candidate = "3" if candidate_correct else "8"
    drawn = accepted = rounds = 0
    for _ in range(trials):
        tally = Tally(candidate, k, min_share)
        while (decision := tally.decision()) is None:
            n = tally.needed_before_decision() if batched else 1
            rounds += 1
            for _ in range(n):
                tally.add("3" if rng.random() < p else rng.choice(wrong))
        drawn += len(tally.votes)
        accepted += decision.accepted
    return drawn / trials, accepted / trials, rounds / trials


def test_early_stop_saves_samples_at_80_percent() -> None:
    """With an 80%-accurate solver and K=16, early stopping uses ~10 samples, not 16."""
    mean, acc, _ = early_stop_average(0.8, 16, 0.5, 2000, candidate_correct=True, batched=False)
    assert 9.0 <= mean <= 11.5 and acc > 0.99
    mean, acc, _ = early_stop_average(0.8, 16, 0.5, 2000, candidate_correct=False, batched=False)
    assert mean <= 9.5 and acc < 0.01


def test_truncated_samples_vote_neither_way() -> None:
    """K=4 with two samples cut at max_tokens: decided over the two that finished."""
    t = Tally("7", 4, 0.5)
    t.add_truncated()
    t.add_truncated()
    assert t.remaining == 2 and t.decision() is None
    t.add("7")
    t.add("7")
    d = t.decision()
    assert d is not None and d.accepted and d.samples == 2 and t.truncated == 2
    t = Tally("7", 2, 0.5)
    t.add_truncated()
    t.add_truncated()
    d = t.decision()
    assert d is not None and not d.accepted and d.reason == "all_truncated"
    with pytest.raises(ValueError):
        t.add("7")


def test_count_decided_counts_in_order_and_stops_at_the_first_undecided():
    """The vote loop's compiled fast path: samples are counted in order while their keys decide
    them; the first that needs math-verify (and every later one) is left for the pool, so the
    tally sees samples in the order they were drawn whichever path counts them."""
    from agen.gen.vote import KeyedFeed, count_decided

    feed = KeyedFeed(Tally("12", 8, 0.5), "12")
    texts = ["a \\boxed{12}", "b \\boxed{12.0}", "c", "d \\boxed{13}", "e \\boxed{x^2}", "f \\boxed{12}"]
    votes = ["12", "12.0", None, "13", "x^2", "12"]
    agreeing: list[str] = []
    answered, first = count_decided(feed.inline, texts, votes, agreeing)
    assert (answered, first) == (3, 4)  # "x^2" among numbers needs math-verify
    assert agreeing == texts[:2] and feed.tally.votes == ("12", "12.0", None, "13")
    assert feed.inline("x^2") is None and len(feed.tally.votes) == 4  # counting nothing


def test_untruncated_counts_cut_samples_apart():
    from agen.gen.vote import untruncated
    from agen.types import Completion, Usage

    tally = Tally("1", 8, 0.5)
    outs = [Completion(("a", "b"), Usage(), 0.0, "m", finish_reasons=("stop", "length")),
            Completion(("c",), Usage(), 0.0, "m")]
    assert untruncated(outs, tally) == ["a", "c"] and tally.truncated == 1
