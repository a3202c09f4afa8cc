"""Answer-Consistency: accept a proposed question only if K solvers mostly agree with its answer.

Rule over K samples: c = samples equivalent to the candidate's answer, o = the largest class of
*other* answers (samples without an answer count toward K but form no class). Accept iff
c > o (a tie rejects) and c / K ≥ min_share.

`Tally` applies the same rule incrementally and stops as soon as no continuation of the
remaining samples can change the outcome, which saves most of the solver calls on clearly good
or clearly bad questions; `decide_full` is the reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from agen.gen.answers import AnswerClasses, answer_key, is_numeric_key
from agen.types import TRUNCATED_FINISH

__all__ = ["Tally", "VoteDecision", "decide_full", "min_agree"]


@dataclass(frozen=True, slots=True)
class VoteDecision:
    """The outcome of a vote and the counts behind it.

    `reason` is "agree" on acceptance. A full vote rejects with "majority_disagrees" (another
    answer got more votes), "tie", "below_min_share" (won, but too few votes) or "no_answers"
    (no sample gave an answer). An early stop rejects with "cannot_win" (even if every
    remaining sample agreed, the candidate would not beat the largest other answer) or
    "cannot_reach_min_share". `samples` is how many votes were seen; `agree` of them matched.
    """

    accepted: bool
    reason: str
    agree: int
    samples: int
    majority_answer: str | None
    majority_share: float


def min_agree(k: int, min_share: float) -> int:
    """Fewest agreeing votes with agree / k ≥ min_share, computed with that very comparison."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be in [0, 1], got {min_share}")
    return next(c for c in range(k + 1) if c / k >= min_share)


def _tally_from(k: int, min_share: float, needed: int, classes: Any, votes: list[str | None], truncated: int) -> Tally:
    tally = Tally("", k, min_share, classes=classes)
    tally._needed, tally._votes, tally.truncated = needed, votes, truncated
    return tally


# `classes`: `AnswerClasses`, or a verifier's own (choice, code; `agen.verify.base.AnswerClassesLike`),
# typed Any because a compiled module checks a class-typed argument's class at run time
def _make(classes: Any, samples: int, accepted: bool, reason: str) -> VoteDecision:
    counts = classes.counts
    top = max(range(len(counts)), key=counts.__getitem__)  # the candidate (class 0) wins ties
    return VoteDecision(
        accepted=accepted,
        reason=reason,
        agree=counts[0],
        samples=samples,
        majority_answer=classes.representatives[top] if counts[top] > 0 else None,
        majority_share=counts[top] / samples if samples else 0.0,
    )


def _final(classes: Any, samples: int, needed: int) -> VoteDecision:
    """The full-vote rule, given every sample (class 0 is the candidate's answer)."""
    c = classes.counts[0]
    o = max(classes.counts[1:], default=0)
    if c == 0 and o == 0:
        return _make(classes, samples, False, "no_answers")
    if c < o:
        return _make(classes, samples, False, "majority_disagrees")
    if c == o:
        return _make(classes, samples, False, "tie")
    if c < needed:
        return _make(classes, samples, False, "below_min_share")
    return _make(classes, samples, True, "agree")


class Tally:
    """An Answer-Consistency vote fed one sample at a time, deciding as early as is safe.

    After each `add`, `decision()` is not None exactly when every possible sequence of the
    remaining samples leads to the same accept/reject as the full K-sample vote: accept once
    c ≥ needed and c > o + remaining (all remaining could join the largest other answer);
    reject once c + remaining ≤ o or c + remaining < needed (even if all remaining agreed).
    Both bounds are tight, so no vote runs longer than it must.
    """

    __slots__ = ("_classes", "_needed", "_votes", "k", "min_share", "truncated")

    def __init__(self, candidate_answer: str, k: int, min_share: float, classes: Any = None) -> None:
        self._needed = min_agree(k, min_share)
        self.k = k
        self.min_share = min_share
        # Class 0 is the candidate's own answer, so "agrees" and "other" use one equivalence;
        # a verifier may bring its own classes (agen.verify: option letters, test outcomes).
        self._classes: Any = classes if classes is not None else AnswerClasses(seed=candidate_answer)
        self._votes: list[str | None] = []
        self.truncated = 0  # samples cut at max_tokens: neither for nor against, out of K

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled to the equivalence pool's workers (a compiled class is not picklable by default)."""
        return _tally_from, (self.k, self.min_share, self._needed, self._classes, self._votes, self.truncated)

    @property
    def votes(self) -> tuple[str | None, ...]:
        """Every vote drawn, in arrival order (an early stop draws fewer than K)."""
        return tuple(self._votes)

    @property
    def class_counts(self) -> tuple[int, ...]:
        """Votes per answer class so far; index 0 is the candidate's own answer."""
        return tuple(self._classes.counts)

    @property
    def remaining(self) -> int:
        """Samples still missing from the full K."""
        return self.k - len(self._votes) - self.truncated

    def add(self, answer: str | None, key: Any = None) -> bool:
        """Count one solver's final answer (None when it gave none); whether it agrees with the
        candidate's answer (so the caller can keep that solution). `key`: the answer's
        `answer_key`, when the caller has computed it (math classes only)."""
        if self.remaining <= 0:
            raise ValueError(f"vote already has its k={self.k} samples")
        self._votes.append(answer)
        return (self._classes.add(answer) if key is None else self._classes.add(answer, key)) == 0

    def add_truncated(self) -> None:
        """Count one sample cut at max_tokens: it takes a seat of K but votes neither way, so the
        vote is decided over the K - truncated samples that finished (min_share of those)."""
        if self.remaining <= 0:
            raise ValueError(f"vote already has its k={self.k} samples")
        self.truncated += 1
        if self.k > self.truncated:
            self._needed = min_agree(self.k - self.truncated, self.min_share)

    @property
    def agreeing(self) -> int:
        """Samples so far in the candidate's own answer class."""
        return self._classes.counts[0]

    def _counts(self) -> tuple[int, int]:
        counts = self._classes.counts
        return counts[0], max(counts[1:], default=0)

    def decision(self) -> VoteDecision | None:
        """The vote's outcome if it is already certain, else None; always set after K samples."""
        c, o = self._counts()
        left = self.remaining
        samples = len(self._votes)
        if left == 0:
            if samples == 0:
                return VoteDecision(False, "all_truncated", 0, 0, None, 0.0)
            return _final(self._classes, samples, self._needed)
        if c >= self._needed and c > o + left:
            return _make(self._classes, samples, True, "agree")
        if c + left <= o:
            return _make(self._classes, samples, False, "cannot_win")
        if c + left < self._needed:
            return _make(self._classes, samples, False, "cannot_reach_min_share")
        return None

    def needed_before_decision(self) -> int:
        """Fewest further samples after which some outcome could already decide the vote.

        0 if decided. Use it as the `n` of the next solver request: asking for fewer cannot
        finish the vote, asking for more may waste samples. A fresh K=16, min_share=0.5 vote
        needs 8 (eight identical wrong answers make c + 8 ≤ o).
        """
        c, o = self._counts()
        left = self.remaining
        for m in range(left + 1):
            rest = left - m
            # Best case for accepting: all m agree. Best case for rejecting: all m join the
            # largest other answer (which also keeps c as low as possible).
            if c + m >= self._needed and c + m > o + rest:
                return m
            if c + rest <= o + m or c + rest < self._needed:
                return m
        return left  # unreachable: with m = left the first or second test holds


def decide_full(
    candidate_answer: str, votes: Sequence[str | None], k: int, min_share: float
) -> VoteDecision:
    """The Answer-Consistency decision over all K votes (the reference for `Tally`)."""
    if len(votes) != k:
        raise ValueError(f"decide_full needs exactly k={k} votes, got {len(votes)}")
    needed = min_agree(k, min_share)
    classes = AnswerClasses(seed=candidate_answer)
    for vote in votes:
        classes.add(vote)
    return _final(classes, k, needed)


class KeyedFeed:
    """The synchronous half of a math vote's feed (`filters.equivalence_pool.VoteFeed` holds it
    and sends the rest to worker processes): counts a sample whose answer key decides it (no
    answer, an answer already seen, a number among numbers: a dict lookup, µs)."""

    def __init__(self, tally: Tally, candidate_answer: str) -> None:
        self.tally = tally
        key = answer_key(candidate_answer) if candidate_answer.strip() else None
        self.keys: set[Hashable] = {key} if key is not None else set()
        self.all_numeric = key is None or is_numeric_key(key)

    def inline(self, answer: str | None) -> bool | None:
        """Count a sample its key decides and say whether it agrees; None, counting nothing, for
        one that needs math-verify."""
        if answer is None or not answer.strip():
            return self.tally.add(answer)
        key = answer_key(answer)
        numeric = is_numeric_key(key)
        if key in self.keys or (numeric and self.all_numeric):
            self.keys.add(key)
            self.all_numeric = self.all_numeric and numeric
            return self.tally.add(answer, key)
        return None

    def absorb(self, result: Tally, key: Hashable) -> bool:
        """Take the tally math-verify counted an answer into (`key`: its `answer_key`); whether it agrees."""
        agrees = result.agreeing > self.tally.agreeing
        self.tally = result
        self.keys.add(key)
        self.all_numeric = self.all_numeric and is_numeric_key(key)
        return agrees


def untruncated(outs: Sequence[Any], tally: Any) -> list[str]:
    """The sample texts of a vote round's completions; each one cut at max_tokens is counted as
    truncated instead (it never votes)."""
    texts: list[str] = []
    for out in outs:
        reasons = out.finish_reasons
        for i, text in enumerate(out.texts):
            if i < len(reasons) and reasons[i] in TRUNCATED_FINISH:
                tally.add_truncated()
            else:
                texts.append(text)
    return texts


def count_decided(inline: Any, texts: list[str], votes: list[str | None], agreeing: list[str]) -> tuple[int, int]:
    """Count samples in order while `inline` (a feed's) decides them, each agreeing text onto
    `agreeing`: (how many gave an answer, the index of the first it could not decide)."""
    answered = 0
    for i in range(len(texts)):
        vote = votes[i]
        agrees = inline(vote)
        if agrees is None:
            return answered, i
        if agrees:
            agreeing.append(texts[i])
        answered += vote is not None
    return answered, len(texts)
