"""The verifier interface: what a verifiable domain tells the Answer-Consistency vote.

A domain decides these things, and nothing else in the vote depends on the domain:

* how a proposer's output becomes a candidate (`parse`: question + the proposer's answer);
* whether a candidate can be voted on at all (`check_candidate`: e.g. code whose own reference
  solution fails its tests is rejected before a single solver is paid for);
* what each solver sample "says" (`votes`: a normalised answer, or a test outcome);
* which votes count as the same (`classes`: class 0 is the candidate's own answer);
* what a won vote still needs (`min_share`: a floor on `vote.min_share`; `split`: a veto).

What a vote costs, and where it runs: choice votes are a normalisation and a dict lookup, run
inline; math votes are a dict lookup unless an answer is symbolic, and then `pooled_equivalence`
sends the comparison to the filter's equivalence pool (worker processes, a time limit each);
code votes run the sample in the sandbox (`verify/sandbox.py`: child processes, at most
`sandbox.parallel` at once, each bounded by its CPU and wall limits), awaited as asyncio
subprocesses. None of them blocks the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Protocol

from agen.gen.parse import Candidate, ParseFailure, parse_generation

__all__ = ["AnswerClassesLike", "InlineFeed", "KeyClasses", "Verifier"]


class AnswerClassesLike(Protocol):
    """What `gen.vote.Tally` needs from equivalence classes (`gen.answers.AnswerClasses` is one)."""

    representatives: list[str]
    counts: list[int]

    def add(self, ans: str | None) -> int | None: ...

    def __len__(self) -> int: ...


class KeyClasses:
    """Classes of votes that are equal exactly when their keys are (a dict lookup per vote).

    For domains whose votes are already canonical (an option letter, a test outcome), so no
    pairwise comparison is ever needed. Class 0 is the seed (the candidate's answer).
    """

    __slots__ = ("_by_key", "_key", "counts", "representatives")

    def __init__(self, seed: str, key: Callable[[str], Hashable] = lambda s: s) -> None:
        self._key = key
        self.representatives: list[str] = [seed]
        self.counts: list[int] = [0]
        self._by_key: dict[Hashable, int] = {key(seed): 0}

    def add(self, ans: str | None) -> int | None:
        if ans is None or not ans.strip():
            return None
        k = self._key(ans)
        idx = self._by_key.get(k)
        if idx is None:
            idx = self._by_key[k] = len(self.representatives)
            self.representatives.append(ans)
            self.counts.append(0)
        self.counts[idx] += 1
        return idx

    def __len__(self) -> int:
        return len(self.representatives)


class InlineFeed:
    """Counts votes into a tally on the event loop: for classes that are a dict lookup (choice,
    code), the counterpart of `filters.equivalence_pool.VoteFeed`, which sends math answers that
    need math-verify to worker processes."""

    __slots__ = ("tally", "undecidable")

    def __init__(self, tally: Any) -> None:
        self.tally = tally
        self.undecidable: list[dict[str, Any]] = []  # never: a key lookup always decides

    def inline(self, vote: str | None) -> bool:
        """Count one vote; whether it agrees with the candidate (never None: a key decides)."""
        return bool(self.tally.add(vote))

    async def add(self, vote: str | None) -> bool:
        return self.inline(vote)


class Verifier(ABC):
    """One verifiable domain. Instances are cheap; `agen.verify.make_verifier` builds the run's."""

    domain: ClassVar[str]
    default_solve_template: ClassVar[str]
    # Votes below this share never accept, whatever `vote.min_share` says (choice: a plurality
    # among options is what guessing produces, so it needs a true majority).
    min_share_floor: ClassVar[float] = 0.0
    # Whether comparing votes may need math-verify (slow, main-thread only): then the filter
    # counts them through its equivalence pool's worker processes instead of inline.
    pooled_equivalence: ClassVar[bool] = False

    def __init__(self, solve_template: str | None = None) -> None:
        self.solve_template = solve_template or self.default_solve_template

    def parse(self, text: str) -> Candidate | ParseFailure:
        """A proposer's output as a candidate, or the reason it does not follow the template."""
        return parse_generation(text)

    async def check_candidate(self, question: str, answer: str | None) -> str | None:
        """A reason to reject the candidate before any vote is paid for, else None."""
        return None

    @abstractmethod
    async def votes(self, question: str, texts: Sequence[str]) -> list[str | None]:
        """What each solver sample says (None: it said nothing usable), in order."""

    @abstractmethod
    def classes(self, question: str, answer: str) -> AnswerClassesLike:
        """Empty equivalence classes seeded with the candidate's answer as class 0."""

    def min_share(self, configured: float) -> float:
        return max(configured, self.min_share_floor)

    def split(self, class_counts: Sequence[int]) -> bool:
        """Whether an accepted vote's counts (class 0: the candidate) are too close a split to keep."""
        return False
