"""Typed records that cross module seams: what a stage asks of a model, and what comes back.

Every layer above the provider clients speaks only these; nothing above `agen.providers`
sees aiohttp, HTTP status codes or a provider's JSON.

The records made once or more per request (`ChatRequest`, `Usage`, `Completion`, `CallRecord`,
and the client's `HttpResult`, `Parsed`, `Attempted`) are slotted dataclasses that are *not*
frozen, though nothing changes one after it is made: a frozen dataclass's `__init__` sets each
field through `object.__setattr__`, ~5x the cost (3.4 vs 0.6 µs for ten fields), and about seven
are made per request (~5% of the client path's CPU). The module is compiled (`agen/native.py`), so
making and reading them is native code wherever the caller is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)  # not frozen: see above
class ChatRequest:
    """One chat-completion call as a stage wants it; the client maps it to a wire format."""

    messages: tuple[dict[str, str], ...]  # ({"role": "system"|"user"|"assistant", "content": str}, ...)
    max_tokens: int
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stage: str = "misc"  # cost attribution: "propose", "amplify", "vote", ...
    task_id: str = ""  # ledger attribution: the stable id of the task this call serves
    extra: dict[str, Any] = field(default_factory=dict)  # passed through to the provider body


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """Ask a reward-model endpoint to score one response to one prompt."""

    prompt: str
    response: str
    stage: str = "misc"
    task_id: str = ""


@dataclass(slots=True)  # not frozen: see above
class Usage:
    """Tokens billed for one call, in one convention for every provider.

    `input_tokens` counts *all* prompt tokens, cached or not (OpenAI's convention); for Anthropic
    the client adds `cache_read_input_tokens` and `cache_creation_input_tokens` to `input_tokens`.
    `cached_input_tokens` and `cache_write_tokens` are subsets of `input_tokens`;
    `reasoning_tokens` is a subset of `output_tokens`.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


TRUNCATED_FINISH = frozenset({"length", "max_tokens"})  # finish reasons meaning "cut at max_tokens"


@dataclass(slots=True)  # not frozen: see above
class Completion:
    """A successful call: one text per choice (`n` of them), its usage and its exact cost."""

    texts: tuple[str, ...]
    usage: Usage
    cost_usd: float
    model: str  # the configured model name (the lane), not the wire id
    request_id: str | None = None
    latency_s: float = 0.0
    attempts: int = 1
    finish_reasons: tuple[str | None, ...] = ()  # per choice, as the wire said ("stop", "length", "end_turn", ...)

    def truncated(self, i: int) -> bool:
        """Whether choice `i` was cut at max_tokens (OpenAI `length`, Anthropic `max_tokens`)."""
        return i < len(self.finish_reasons) and self.finish_reasons[i] in TRUNCATED_FINISH


@dataclass(slots=True)  # not frozen: see above
class CallRecord:
    """One HTTP attempt, successful or not, as the ledger stores it.

    `outcome` is one of: "ok", "throttle", "capacity", "fatal_run", "fatal_task", "bad_response".
    `status` is None for transport failures (reset, timeout) where no response arrived.
    """

    ts: float
    model: str
    stage: str
    task_id: str
    outcome: str
    status: int | None
    usage: Usage
    cost_usd: float
    latency_s: float
    request_id: str | None = None
    mode: str = "online"  # "batch": one line of a provider batch, billed at the batch price
    saved_usd: float = 0.0  # what prompt-cache reads saved on this call, net of cache writes (agen.cost)


@dataclass(frozen=True, slots=True)
class Example:
    """A question with its reference answer: a human seed or an accepted proposal."""

    id: str
    question: str
    answer: str | None
    category: str | None = None
