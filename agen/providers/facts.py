"""What one endpoint really does, stated in the config or learned from its responses (issue 9).

Each fact is set once — from the model config (`supports_n`, `charges`, `window`) or from the
first conclusive evidence — logged once as an `endpoint_fact` event, and shown as a plain dict
(`Providers.facts()`) for the summary and report. Whoever adapts to a fact reads it here:
the client (`n`, reservation), the pacer (fixed windows).

    supports_n   fewer choices than `n` came back -> False (the client fans out from then on)
    charges      `max_tokens` (reserved up front, as OpenAI) or `usage` (real tokens afterwards),
                 from how `x-ratelimit-remaining-tokens` moves against what was reserved
    window       `steady` (refill limit/60 per s) or `fixed` (reset at clock windows), from
                 reset headers and 429 waits
    headers      the rate-limit header families the endpoint sends (none: only 429s tell)
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog

FACTS = ("supports_n", "charges", "window", "headers")


@dataclass(slots=True)
class EndpointFacts:
    lane: str
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # fact -> "config" | "learned"
    on_fact: Callable[[str, dict[str, Any]], None] | None = None  # tests and the app may listen

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def state(self, name: str, value: Any) -> None:
        """A fact the user stated in the config: trusted, not logged as learned."""
        if value is not None:
            self.values[name] = value
            self.sources[name] = "config"

    def learn(self, name: str, value: Any, evidence: str) -> bool:
        """Record a learned fact once (True if new); a stated or earlier fact is kept."""
        if name in self.values:
            return False
        self.values[name] = value
        self.sources[name] = "learned"
        event = {"lane": self.lane, "fact": name, "value": value, "evidence": evidence}
        structlog.get_logger("agen.providers").info("endpoint_fact", **event)
        if self.on_fact is not None:
            self.on_fact(self.lane, event)
        return True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.values.items():
            out[k] = sorted(v) if isinstance(v, (set, frozenset)) else v
        out["source"] = dict(self.sources)
        return out


class ChargeProbe:
    """Infers the charging model from the server's reported remaining tokens.

    Between two fresh reports the lane's mirror predicts what a `max_tokens`-charging server would
    report (its last report, plus refill, minus everything reserved since). A server charging real
    usage reports more: by the unused part of each finished request's output reservation and the
    whole reservation of those still in flight. So `excess / output reserved since` is about 0
    for `max_tokens` and about `1 - used/max_tokens` (or more) for `usage`. When max_tokens is
    close to the real output the two look alike — and then the choice does not matter.
    """

    MIN: ClassVar[int] = 6  # reports before deciding
    MAX: ClassVar[int] = 40  # reports after which an ambiguous case is settled
    USAGE_ABOVE: ClassVar[float] = 0.3

    def __init__(self) -> None:
        self.ratios: list[float] = []

    def add(self, excess: float, output_reserved: float) -> str | None:
        """One comparison; returns "usage"/"max_tokens" once conclusive, else None."""
        if output_reserved <= 0:
            return None
        self.ratios.append(excess / output_reserved)
        if len(self.ratios) < self.MIN:
            return None
        med = statistics.median(self.ratios[-self.MAX:])
        if med > self.USAGE_ABOVE:
            return "usage"
        if med < self.USAGE_ABOVE / 2 or len(self.ratios) >= self.MAX:
            return "max_tokens"
        return None
