"""What may start now: per-stage acceptance estimates and the budget look-ahead.

Both are kept incrementally (counters moved by the workers, the sink and the call hook), so a
producer's check is O(1) however many tasks are in flight.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agen.config import BudgetConfig
from agen.cost import CostBook

PRIOR = 4  # pseudo-successes behind each acceptance estimate
FILTER_REASONS = ("vote:", "rip:")  # reasons given by a filter's verdict
EARLY_REASONS = ("parse:", "duplicate:", "generate_failed")  # rejected before any filter ran


@dataclass
class StageCounts:
    """Committed outcomes of one stage (the funnel), and the live counts that steer admission.

    Admission needs the chance that a task admitted now ends accepted. Fast rejections (parse,
    duplicate) finish long before slow acceptances (a full vote), so one pooled rate would be
    biased low early on and over-admit; each gate gets its own estimate instead, with an
    optimistic prior worth a few successes (admitting too little costs a little time at the end,
    admitting too much costs money for examples nobody asked for).
    """

    accepted: int = 0  # committed
    finished: int = 0  # committed
    reasons: Counter[str] = field(default_factory=Counter)
    generating: int = 0  # admitted; generation not back yet
    filtering: int = 0  # passed parse and dedup; vote or RIP under way
    committing: int = 0  # decided; waiting for the writer
    committing_accepted: int = 0
    generated: int = 0
    passed: int = 0
    judged: int = 0
    judged_accepted: int = 0
    spent_usd: float = 0.0  # on committed tasks: what a task costs, for budget look-ahead
    spent_in_flight_usd: float = 0.0  # on tasks not committed yet
    others_accepted: int = 0  # committed by the other workers of a coordinated run (engine/coordination)
    others_in_flight: float = 0.0  # what the other workers' work in flight is expected to add

    @property
    def inflight(self) -> int:
        return self.generating + self.filtering + self.committing

    def cost_ahead(self) -> float:
        """What the tasks in flight may still cost, erring high (a budget is a promise): a finished
        task's mean cost each — cheap early rejections pull that mean down — and never less than
        they have spent so far (all there is to go on before the first one finishes)."""
        mean = self.spent_usd / self.finished if self.finished else 0.0
        return max(self.inflight * mean, self.spent_in_flight_usd)

    def full(self, target: int) -> bool:
        """The target is met by what is committed or being committed: anything else is surplus."""
        return self.accepted + self.others_accepted + self.committing_accepted >= target

    def expected_in_flight(self) -> float:
        """What this worker's work in flight is expected to add to the accepted count."""
        p_pass = (self.passed + PRIOR) / (self.generated + PRIOR)
        p_keep = (self.judged_accepted + PRIOR) / (self.judged + PRIOR)
        return self.committing_accepted + self.filtering * p_keep + self.generating * p_pass * p_keep

    def expected_accepted(self) -> float:
        """Accepted so far (by every worker) plus what the work in flight (every worker's) is expected to add."""
        return self.accepted + self.others_accepted + self.others_in_flight + self.expected_in_flight()

    def restore(self, accepted: int, finished: int, reasons: Counter[str], spent_usd: float) -> None:
        self.accepted, self.finished, self.spent_usd = accepted, finished, spent_usd
        self.reasons.update(reasons)
        self.generated = finished
        # a surplus record's reason is "surplus:" + what decided it ("surplus:vote:agree" was judged)
        decided = Counter[str]()
        for r, n in reasons.items():
            decided[r.removeprefix("surplus:")] += n
        self.passed = finished - sum(n for r, n in decided.items() if r.startswith(EARLY_REASONS))
        self.judged = sum(n for r, n in decided.items() if r.startswith(FILTER_REASONS))
        self.judged_accepted = accepted


def budget_left(budget: BudgetConfig, costs: CostBook, counts: dict[str, StageCounts],
                others: tuple[float, int] = (0.0, 0)) -> bool:
    """Whether another task may start: spend so far plus what work in flight will likely still
    cost stays under the budget (so the run stops near it, not a burst past it). `others`: what
    the other workers of a coordinated run have spent (USD, tokens): the budget is the run's."""
    if budget.usd is None and budget.tokens is None:
        return True
    spent = costs.total_usd + others[0]
    if budget.usd is not None and spent + sum(c.cost_ahead() for c in counts.values()) >= budget.usd:
        return False
    if budget.tokens is not None and costs.total_tokens + others[1] >= budget.tokens:
        return False
    return True
