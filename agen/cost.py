"""What every call cost, from its real usage: the price arithmetic and the run's cost book.

`cost_usd` prices one Usage, online or at the batch rates of a call sent through a batch API;
`cache_saved_usd` is what its prompt-cache reads saved, net of the cache-write premium; `CostBook`
sums CallRecords (every HTTP attempt, including failed attempts that were billed, such as a 200
with usage but an unusable body) by model, by stage and by (stage, model).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from agen.config import Price, Rates
from agen.types import CallRecord, Usage

PER = 1_000_000.0


def cost_usd(usage: Usage, price: Rates, batch: bool = False) -> float:
    """USD for one call: uncached input, cached input, cache writes, output (reasoning included).

    `cached_input` and `cache_write` default to `input` when the price does not give them. `batch`:
    the call went through the provider's batch API, billed at the model's batch rates (`Price.rates`).
    """
    if batch:
        if not isinstance(price, Price):
            raise TypeError("a batch call needs a model's Price (its batch rates), not bare Rates")
        price = price.rates(batch=True)
    cached_p = price.input if price.cached_input is None else price.cached_input
    write_p = price.input if price.cache_write is None else price.cache_write
    uncached = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens)
    return (uncached * price.input + usage.cached_input_tokens * cached_p
            + usage.cache_write_tokens * write_p + usage.output_tokens * price.output) / PER


def cache_saved_usd(usage: Usage, price: Rates) -> float:
    """USD the prompt cache saved on one call against paying `input` for every prompt token: reads
    at the cached price minus writes at their premium (negative when writes were never read)."""
    cached_p = price.input if price.cached_input is None else price.cached_input
    write_p = price.input if price.cache_write is None else price.cache_write
    return (usage.cached_input_tokens * (price.input - cached_p)
            - usage.cache_write_tokens * (write_p - price.input)) / PER


def cache_hit_share(input_tokens: int, cached_input_tokens: int) -> float:
    """Share of prompt tokens served from a prompt cache (0 when nothing was sent)."""
    return cached_input_tokens / input_tokens if input_tokens else 0.0


@dataclass(slots=True)
class Tally:
    """Calls, billed usage and cost of one slice of the run.

    Token counts are kept as plain ints (a `Usage` per `add` is a frozen dataclass built four
    times per call: a measurable share of the engine's CPU); `usage` builds one on read."""

    calls: int = 0
    ok_calls: int = 0
    cost_usd: float = 0.0
    cache_saved_usd: float = 0.0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.cached_input_tokens, self.cache_write_tokens, self.output_tokens,
                     self.reasoning_tokens)

    def add(self, rec: CallRecord) -> None:
        u = rec.usage
        self.calls += 1
        self.ok_calls += rec.outcome == "ok"
        self.input_tokens += u.input_tokens
        self.cached_input_tokens += u.cached_input_tokens
        self.cache_write_tokens += u.cache_write_tokens
        self.output_tokens += u.output_tokens
        self.reasoning_tokens += u.reasoning_tokens
        self.cost_usd += rec.cost_usd
        self.cache_saved_usd += rec.saved_usd

    def merge(self, other: Tally) -> Tally:
        """Add another tally's counts into this one (returns self)."""
        for f in _TALLY_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "ok_calls": self.ok_calls, "cost_usd": self.cost_usd,
                "input_tokens": self.input_tokens, "cached_input_tokens": self.cached_input_tokens,
                "cache_write_tokens": self.cache_write_tokens, "output_tokens": self.output_tokens,
                "reasoning_tokens": self.reasoning_tokens, "total_tokens": self.input_tokens + self.output_tokens,
                "cache_hit_share": round(cache_hit_share(self.input_tokens, self.cached_input_tokens), 4),
                "cache_saved_usd": self.cache_saved_usd}


_TALLY_FIELDS = tuple(f.name for f in fields(Tally))


class CostBook:
    """Running totals of every CallRecord; `snapshot()` is JSON-ready. Each call is added to the
    total and to its (stage, model) pair only; the totals by model and by stage are summed from the
    pairs when read (a few pairs a run), not kept per call."""

    def __init__(self) -> None:
        self.total = Tally()
        self.by_stage_model: dict[tuple[str, str], Tally] = {}

    def add(self, record: CallRecord) -> None:
        self.total.add(record)
        key = (record.stage, record.model)
        t = self.by_stage_model.get(key)
        if t is None:
            t = self.by_stage_model[key] = Tally()
        t.add(record)

    @property
    def by_model(self) -> dict[str, Tally]:
        return self._summed(1)

    @property
    def by_stage(self) -> dict[str, Tally]:
        return self._summed(0)

    def _summed(self, part: int) -> dict[str, Tally]:
        out: dict[str, Tally] = {}
        for key, t in self.by_stage_model.items():
            out.setdefault(key[part], Tally()).merge(t)
        return out

    @property
    def total_usd(self) -> float:
        return self.total.cost_usd

    @property
    def total_tokens(self) -> int:
        return self.total.input_tokens + self.total.output_tokens

    @property
    def usage(self) -> Usage:
        return self.total.usage

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total.as_dict(),
            "by_model": {m: t.as_dict() for m, t in sorted(self.by_model.items())},
            "by_stage": {s: t.as_dict() for s, t in sorted(self.by_stage.items())},
            "by_stage_model": {f"{s}/{m}": t.as_dict() for (s, m), t in sorted(self.by_stage_model.items())},
        }
