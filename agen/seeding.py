"""Deterministic sampling seeds derived from a task's identity, identical across processes."""

from __future__ import annotations

import hashlib


def stable_int(text: str) -> int:
    """A 30-bit seed from text (unlike hash(), the same in every process and every run)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") & 0x3FFFFFFF
