"""When agen marks a prompt prefix for Anthropic's prompt cache.

Anthropic caches only up to a `cache_control` breakpoint, and only a prefix of at least a
per-model minimum (docs.anthropic.com, prompt caching, as of 2026-11): 4,096 tokens for Claude Opus
4.5+ and Haiku 4.5, 2,048 for Claude Haiku 3 and 3.5, 1,024 for the other models (Sonnet, Opus 4.1
and older). A breakpoint on a shorter prefix caches nothing, so agen marks the static system
prompt only when its estimated length reaches the model's minimum (`models.<name>.cache_min_tokens`
overrides the table, e.g. for a proxy's own names).
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_MIN_TOKENS", "anthropic_min_tokens", "cacheable"]

DEFAULT_MIN_TOKENS = 1024
_MINIMUMS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"claude-(opus-4-[5-9]|haiku-4)"), 4096),
    (re.compile(r"claude-3(-5)?-haiku"), 2048),
)


def anthropic_min_tokens(wire_model: str, override: int | None = None) -> int:
    """The shortest prefix the model's prompt cache takes."""
    if override is not None:
        return override
    for pattern, minimum in _MINIMUMS:
        if pattern.search(wire_model):
            return minimum
    return DEFAULT_MIN_TOKENS


def cacheable(text: str, min_tokens: int) -> bool:
    """Whether `text` is estimated long enough to cache (chars/4, agen's prompt estimate)."""
    return len(text) // 4 >= min_tokens
