"""The set of committed record ids, kept compact: one bit per task index and stage.

Task ids are `{fingerprint[:8]}-{stage}-{index:08d}`, dense from 0, so a bitmap per (prefix,
stage) holds a million of them in 125 KB, where a set of strings takes ~100 MB. Ids of any other
shape (none are written today) go to a plain set, so membership is exact for every string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["CommittedIds"]

_TASK_ID = re.compile(r"([0-9a-f]{8})-([a-z_]+)-(\d{8})")


class CommittedIds:
    """A set of id strings (`in`, `add`, `len`, iteration) stored as bitmaps per stage."""

    __slots__ = ("_bits", "_count", "_other")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._bits: dict[tuple[str, str], bytearray] = {}
        self._other: set[str] = set()
        self._count = 0
        for i in ids:
            self.add(i)

    @staticmethod
    def _split(rid: str) -> tuple[tuple[str, str], int] | None:
        m = _TASK_ID.fullmatch(rid)
        return ((m.group(1), m.group(2)), int(m.group(3))) if m else None

    def add(self, rid: str) -> None:
        split = self._split(rid)
        if split is None:
            if rid not in self._other:
                self._other.add(rid)
                self._count += 1
            return
        key, index = split
        bits = self._bits.get(key)
        if bits is None:
            bits = self._bits[key] = bytearray()
        byte, mask = index >> 3, 1 << (index & 7)
        if byte >= len(bits):
            bits.extend(bytes(max(byte + 1 - len(bits), len(bits) // 2)))  # amortised growth
        if not bits[byte] & mask:
            bits[byte] |= mask
            self._count += 1

    def __contains__(self, rid: object) -> bool:
        if not isinstance(rid, str):
            return False
        split = self._split(rid)
        if split is None:
            return rid in self._other
        key, index = split
        bits = self._bits.get(key)
        byte = index >> 3
        return bits is not None and byte < len(bits) and bool(bits[byte] & (1 << (index & 7)))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        for (prefix, stage), bits in self._bits.items():
            for byte in range(len(bits)):  # not enumerate: mypyc (2.4) fails to compile it over a bytearray
                value = bits[byte]
                if value:
                    for bit in range(8):
                        if value & (1 << bit):
                            yield f"{prefix}-{stage}-{byte * 8 + bit:08d}"
        yield from self._other

    def nbytes(self) -> int:
        """Bytes held by the bitmaps (the fallback set aside)."""
        return sum(len(b) for b in self._bits.values())
