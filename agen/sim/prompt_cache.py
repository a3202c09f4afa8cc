"""The sim's prompt cache: one LRU of prompt prefixes per model, each entry living `ttl_s` after its
last use, reported the way each wire reports it.

* OpenAI (`automatic`): every prompt of at least `min_tokens` is cached on its own, at `min_tokens`
  and every 128 tokens after; a later prompt reads the longest cached prefix it shares
  (`usage.prompt_tokens_details.cached_tokens`, inside `prompt_tokens`). Writes are not reported.
* Anthropic (`breakpoints`): only prefixes that end at a block carrying `cache_control` are cached,
  and only if the prefix is at least the model's minimum; the longest cached breakpoint is read
  (`cache_read_input_tokens`), the part from there to the last cacheable breakpoint is written
  (`cache_creation_input_tokens`), and `input_tokens` counts only the rest. (Anthropic also finds
  hits a few blocks before a breakpoint; the sim does not.)

A prefix is identified by the roles and texts up to its last token, and counted with the sim's own
tokenizer (`agen.sim.model.count_tokens`), as the prompt's billed tokens are.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from typing import Sequence

from agen.sim.model import TOKEN_RE, count_tokens

__all__ = ["OPENAI_STEP", "CacheUse", "PromptCache", "Segment"]

OPENAI_STEP = 128  # OpenAI caches in 128-token increments past the minimum


@dataclass(frozen=True, slots=True)
class Segment:
    """One text block of a prompt, in order; `breakpoint`: it carries `cache_control` (Anthropic)."""

    role: str
    text: str
    breakpoint: bool = False


@dataclass(frozen=True, slots=True)
class CacheUse:
    read: int = 0  # prompt tokens served from the cache
    write: int = 0  # prompt tokens written to the cache (reported by Anthropic only)


NO_USE = CacheUse()


class PromptCache:
    """Prefix digest -> expiry, least recently used first; at most `capacity` entries."""

    def __init__(self, capacity: int, ttl_s: float) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._entries: collections.OrderedDict[bytes, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _touch(self, key: bytes, now: float) -> bool:
        """Whether `key` was cached and alive; either way it is (re)cached until now + ttl."""
        entries = self._entries
        seen = entries.get(key)
        alive = seen is not None and seen > now
        entries[key] = now + self.ttl_s
        entries.move_to_end(key)
        while len(entries) > self.capacity:
            entries.popitem(last=False)
        return alive

    def automatic(self, segments: Sequence[Segment], min_tokens: int, now: float) -> CacheUse:
        """OpenAI: the longest cached prefix at min_tokens + k*128; caches every such prefix."""
        if sum(count_tokens(s.text) for s in segments) < min_tokens:
            return NO_USE
        h = hashlib.blake2b(digest_size=16)
        hit = count = 0
        boundary = min_tokens
        for seg in segments:
            h.update(b"\x01" + seg.role.encode() + b"\x00")
            n = count_tokens(seg.text)
            if count + n < boundary:  # no boundary inside this block
                h.update(seg.text.encode())
                count += n
                continue
            pos = 0
            for m in TOKEN_RE.finditer(seg.text):
                count += 1
                if count == boundary:
                    h.update(seg.text[pos:m.end()].encode())
                    pos = m.end()
                    if self._touch(h.digest(), now):
                        hit = count
                    boundary += OPENAI_STEP
            h.update(seg.text[pos:].encode())
        return CacheUse(read=hit)

    def breakpoints(self, segments: Sequence[Segment], min_tokens: int, now: float) -> CacheUse:
        """Anthropic: prefixes ending at a `cache_control` block of at least min_tokens only."""
        h = hashlib.blake2b(digest_size=16)
        count = hit = last = 0
        for seg in segments:
            h.update(b"\x01" + seg.role.encode() + b"\x00" + seg.text.encode())
            count += count_tokens(seg.text)
            if seg.breakpoint and count >= min_tokens:
                if self._touch(h.digest(), now):
                    hit = count
                last = count
        return CacheUse(read=hit, write=max(0, last - hit))
