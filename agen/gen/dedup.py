"""Drop exact and near-duplicate questions as they stream in, in small memory at 1M items.

Self-Instruct's rule: a question is a near-duplicate when its ROUGE-L F1 against any kept
question is ≥ threshold (0.7), on lowercased word tokens. All-pairs ROUGE-L does not scale,
so each check goes:

1. exact: a 64-bit hash of the case- and whitespace-normalized text;
2. candidates: MinHash-LSH over the question's *content words* (stop words and numbers left
   out: they are what unrelated math questions share) as a multiset, `bands` × `rows`;
3. verify: exact ROUGE-L (an LCS: `gen/_lcs.c` in the compiled build, rapidfuzz's otherwise)
   against the candidates only.

Why unigrams: for a pair at ROUGE-L F1 = 0.7 the multiset Jaccard of its words is ≥ 0.54 (tight
for scattered word swaps), while word n-grams fall much lower. Why bands=32, rows=4: measured
on GSM8K questions with synthetic edits, it finds ~99% of pairs at ROUGE-L ≥ 0.7 (~96% of those
in [0.70, 0.75)) at ~1e-4 candidates per stored unrelated question.

Storage (`gen/dedup_store`): ~0.45 kB an item (vs ~5 kB for datasketch's LSH) of which ~14 bytes
stay in RAM. The LSH and the exact hashes are sorted-array multimaps (uint32 band key + int32
item = 8 bytes a band) whose bounded recent part is in RAM and the rest in sorted files; tokens
are kept as 20-bit codes (4 bytes a word, appended with the id to one file) so ROUGE-L runs on
`str`s of codes, and only an LSH candidate's codes are read back. `store` is the folder for the
files (a cache: emptied at start, rebuilt from the shards); without it a temporary folder is used
once the index outgrows RAM. A 20-bit code collision can only raise an LCS, by about one word in
~0.2% of comparisons: immaterial at a 0.7 threshold.

CPU per check (it runs on the event loop for every candidate): no Python object per token, band
key or candidate in the compiled build, where an ASCII question's tokens, signature and exact-key
text are one call (`gen/_minhash.c`), the index's buffer and sorted-run lookups are `gen/_keybuf.c`
and the verification is `gen/_lcs.c`: 43 µs a check in a run at 1.7k kept questions, 177 µs before
those helpers. The pure build keeps every step in Python without a loop over a question's tokens
or keys: C-level passes (`bytes.translate`, `map` over dicts filled on a miss), cached MinHash rows
(one gather and one min a question), and buffers that take and look up 32 keys in C-level passes.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rapidfuzz.distance import LCSseq

from agen.gen.dedup_store import ItemLog, MultiMap, SpillDir

try:  # the C helper built with the compiled engine (setup.py); absent in a pure-Python install
    from agen.gen._minhash import signature as _c_signature
    from agen.gen._minhash import signature_text as _c_signature_text
except ImportError:
    _c_signature = _c_signature_text = None

__all__ = ["DupMatch", "Deduper", "rouge_l", "tokenize"]

_WORD = re.compile(r"[^\W_]+")
# Words shared by most unrelated questions: left out of the LSH features only (ROUGE-L
# still counts them), so unrelated questions rarely collide in a band.
_STOP = frozenset(
    """a an the and or but if then else of to in on at by for with from as is are was were be
    been being am do does did done have has had having it its this that these those there here
    he she they we you i me him her them us his hers their our your my what which who whom whose
    when where why how many much more most less least some any each every all both either
    neither no not nor only own same so than too very can could will would shall should may
    might must just also into over under about above below up down out off again further once
    per after before during while until because through between against s t""".split()
)
_STOP_BYTES = frozenset(w.encode() for w in _STOP)
# ASCII text (nearly all of it) is tokenized as bytes: one C-level translate (letters lowered,
# everything but letters and digits to spaces) and a split give `tokenize`'s tokens at half the
# cost of the Unicode regex; other text goes through `tokenize` itself.
_ASCII_WORDS = bytes(ord(chr(b).lower()) if chr(b).isalnum() else 0x20 for b in range(128)) + b" " * 128
# LSH keys (32 a question) in RAM before a merge (dict buffer, ~40 B a key: ~1k questions) and in the
# sorted in-RAM run before it goes to a file (8 B a key: ~8k questions); both reached before 10k.
MERGE_AT = 1 << 15
SPILL_AT = 1 << 18
TOKEN_CACHE = 1 << 13  # distinct tokens remembered (common words); past it both caches start over
MINHASH_ROWS = 1 << 13  # features whose min-hash values are remembered (2 MB of uint16)
_CODE_SPAN = 0x110000 - 0x800  # code points minus the surrogate block
_RANK_SHIFT = 21  # a code fits in 21 bits; the k-th repeat of a word adds k << 21


def exact_key(text: str) -> int:
    """The exact-duplicate key: a 64-bit hash of the case- and whitespace-normalised text."""
    return _hash_normalised(" ".join(text.casefold().split()).encode())


def _hash_normalised(norm: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(norm, digest_size=8).digest(), "little")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens as rouge-score makes them (runs of letters/digits, any script)."""
    return _WORD.findall(text.lower())


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts on `tokenize` tokens: 2·LCS / (len_a + len_b)."""
    ta, tb = tokenize(a), tokenize(b)
    if not ta or not tb:
        return 0.0
    return 2 * LCSseq.similarity(ta, tb) / (len(ta) + len(tb))


class _Codes(dict):  # type: ignore[type-arg]
    """Token (bytes or str) → its 20-bit code as a one-character str (ROUGE-L runs on strings of
    them). A plain dict whose misses fill it, so `map(codes.__getitem__, tokens)` runs in C."""

    def __missing__(self, token: bytes | str) -> str:
        c = zlib.crc32(token if isinstance(token, bytes) else token.encode()) % _CODE_SPAN
        char = self[token] = chr(c + 0x800 if c >= 0xD800 else c)
        return char


class _Features(dict):  # type: ignore[type-arg]
    """Token → its LSH feature (its code), or -1 for a stop word or a number (left out)."""

    def __missing__(self, token: bytes | str) -> int:
        stop = token in _STOP_BYTES if isinstance(token, bytes) else token in _STOP
        f = self[token] = -1 if stop or token.isdigit() else ord(_CODES[token])
        return f


_CODES = _Codes()
_FEATURES = _Features()


def _tokens(text: str) -> list[bytes] | list[str]:
    """`tokenize(text)`, as bytes when the text is ASCII (the same tokens, found faster)."""
    if text.isascii():
        return text.encode().translate(_ASCII_WORDS).split()
    return tokenize(text)


class _MinHashRows(dict):  # type: ignore[type-arg]
    """Feature → its slot in `table`: a bounded cache of each feature's hash under every MinHash
    permutation (multiply-add-shift of the 32-bit feature, top 16 bits), so a question's min-hashes
    are one gather and one min over its features' rows instead of a (features × permutations)
    product. 16 bits lose nothing that matters: two different features tie in a row ~1e-4 of the
    time, and a band needs all its rows to tie. A miss takes the next slot; the rows missed by one
    question are computed together. Full: it starts over (rows are a pure function of the feature).
    """

    def __init__(self, a: np.ndarray, c: np.ndarray, size: int) -> None:
        super().__init__()
        self.table = np.empty((size, len(a)), dtype=np.uint16)  # pages are touched as slots fill
        self._a, self._c = a, c
        self._missed: list[int] = []

    def __missing__(self, feature: int) -> int:
        slot = self[feature] = len(self)
        self._missed.append(feature)
        return slot

    def slots(self, features: list[int]) -> list[int]:
        """The slots of distinct `features`, their rows filled."""
        if len(self) + len(features) > len(self.table):
            self.clear()
        slots = list(map(self.__getitem__, features))
        if missed := self._missed:  # they took the last slots, in order
            h = np.array(missed, dtype=np.uint64)[:, None] * self._a
            h += self._c
            h >>= np.uint64(48)
            self.table[len(self) - len(missed) : len(self)] = h
            missed.clear()
        return slots


_CONTENT = (-1).__ne__  # filter()'s test for "not a stop word or a number", in C


def _as_set(feats: list[int]) -> list[int]:
    """A multiset as a set: the k-th repeat of a feature (k ≥ 1) becomes a feature of its own
    (`f | k << 21`). Counting is one C pass; only repeated features are visited in Python."""
    counts = Counter(feats)
    if len(counts) == len(feats):
        return feats
    return [*counts, *[f | k << _RANK_SHIFT for f, m in counts.items() if m > 1 for k in range(1, m)]]


@dataclass(frozen=True, slots=True)
class DupMatch:
    """Why a text was judged a duplicate: which kept item it matches, and how closely."""

    kind: Literal["exact", "near"]
    match_id: str
    score: float


@dataclass(slots=True)
class _Prepared:
    exact: int
    query: str  # one code a character, one character a token
    band_list: list[int]  # its LSH band keys (none for a text without tokens)


class Deduper:
    """Streaming exact + near-duplicate filter over a growing pool of kept questions.

    `check` never changes the pool; `check_and_add` keeps a text only if it is not a
    duplicate, which is how the pipeline uses it. Not thread-safe. I/O: page-cache preads of a
    few hundred bytes once the index has spilled to files; spills and merges in a worker thread.
    """

    def __init__(
        self,
        threshold: float = 0.7,
        *,
        bands: int = 32,
        rows: int = 4,
        max_bucket: int = 64,
        seed: int = 0,
        store: Path | None = None,
        merge_at: int | None = None,
        spill_at: int | None = None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.bands = bands
        self.rows = rows
        self.max_bucket = max_bucket  # per band bucket, bounds the work for crowded buckets
        rng = np.random.default_rng(seed)
        n = bands * rows
        odd = np.uint64(1)
        a = (rng.integers(0, 1 << 63, n, dtype=np.uint64) << odd) | odd
        c = rng.integers(0, 1 << 63, n, dtype=np.uint64)
        self._rows = _MinHashRows(a, c, MINHASH_ROWS)
        # a band's rows are packed into one uint64 (16 bits a row) when they fit, else mixed by odd
        # multipliers; each band's own odd multiplier then hashes it to 32 bits (multiply-shift)
        self._row_mix = (rng.integers(0, 1 << 63, (bands, rows), dtype=np.uint64) << odd) | odd
        self._band_mix = (rng.integers(0, 1 << 63, bands, dtype=np.uint64) << odd) | odd
        # the same parameters for the C helper, which computes what `_band_keys` does
        self._c_args = (_STOP_BYTES, _STOP, a.tobytes(), c.tobytes(), self._band_mix.tobytes(), rows,
                        self._row_mix.tobytes())
        merge_at = MERGE_AT if merge_at is None else merge_at
        spill_at = SPILL_AT if spill_at is None else spill_at
        self._spill = SpillDir(store)
        # merge_at/spill_at count LSH keys (`bands` a question); the exact map has one a question,
        # so both reach their bounds at the same number of questions
        self._exact = MultiMap(np.uint64, max(1, merge_at // bands), max(1, spill_at // bands), self._spill, "exact")
        self._lsh = MultiMap(np.uint32, merge_at, spill_at, self._spill, "lsh")
        self._items = ItemLog(self._spill, 4 * spill_at)  # every kept item's token codes and id (a 1 MB tail)
        self.candidates_checked = 0
        self.last_exact_key = 0  # `exact_key` of the text last checked: the run-wide set takes it as is

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Remove the index's files (the shards are the record; a resumed run rebuilds from them)."""
        for store in (self._exact, self._lsh, self._items):
            store.close()
        self._spill.close()

    # -- features ---------------------------------------------------------------------------

    def _prepare(self, text: str) -> _Prepared:
        if _c_signature_text is not None and text.isascii():
            got = _c_signature_text(text, *self._c_args)
            if got is not None:
                query, keys, norm = got
                return _Prepared(_hash_normalised(norm), query, [] if keys is None else keys)
        tokens = _tokens(text)
        if _c_signature is not None:
            query, keys = _c_signature(tokens, *self._c_args)
        else:
            query, keys = self.py_signature(tokens)
        return _Prepared(exact_key(text), query, [] if keys is None else keys)

    def py_signature(self, tokens: list[bytes] | list[str]) -> tuple[str, list[int] | None]:
        """A question's token codes (one character a token) and LSH band keys (None for no
        tokens), in Python; `_minhash.signature` computes the same in C."""
        if len(_CODES) > TOKEN_CACHE:  # bounded: rare words and numbers would grow it forever
            _CODES.clear()
            _FEATURES.clear()
        query = "".join(map(_CODES.__getitem__, tokens))
        if not query:
            return query, None
        keys = self._band_keys(query, list(filter(_CONTENT, map(_FEATURES.__getitem__, tokens))))
        return query, keys.tolist()

    def _band_keys(self, query: str, content: list[int]) -> np.ndarray:
        """The `bands` LSH keys of a question's content features (its codes, stop words and
        numbers left out) as a multiset: min-hashes by multiply-add-shift, `rows` a band."""
        if len(content) < 3:  # nearly all numbers / stop words: use every word
            content = list(map(ord, query))
        rows = self._rows
        mins = np.minimum.reduce(rows.table.take(rows.slots(_as_set(content)), axis=0))
        if self.rows == 4:  # the default: a band's four 16-bit mins are one uint64, exactly
            packed = mins.view(np.uint64)
        else:
            packed = (mins.reshape(self.bands, self.rows) * self._row_mix).sum(axis=1, dtype=np.uint64)
        keys = packed * self._band_mix
        keys >>= np.uint64(32)
        return keys.astype(np.uint32)

    # -- lookups ----------------------------------------------------------------------------

    def _check(self, p: _Prepared) -> DupMatch | None:
        hit = self._exact.newest(p.exact)
        if hit is not None:
            return DupMatch("exact", self._items.item_id(hit), 1.0)
        if not p.band_list:
            return None
        cands = self._lsh.get(p.band_list, self.max_bucket)
        if not cands:
            return None
        # ascending ids: the oldest of equal best scores wins; a candidate even a full overlap
        # could not bring to the threshold is not read
        best_idx, best, checked = self._items.best_match(p.query, cands, self.threshold)
        self.candidates_checked += checked
        if best >= self.threshold:
            return DupMatch("near", self._items.item_id(best_idx), best)
        return None

    def _add(self, p: _Prepared, item_id: str) -> None:
        idx = len(self)
        self._exact.add([p.exact], idx)
        if p.band_list:
            self._lsh.add(p.band_list, idx)
        self._items.append(p.query, item_id)

    def check(self, text: str) -> DupMatch | None:
        """The kept item `text` duplicates (exact first, else the best near match), or None."""
        return self._check(self._prepare(text))

    def add(self, text: str, item_id: str) -> None:
        """Keep `text` in the pool unconditionally (e.g. seeds, or restoring a run)."""
        self._add(self._prepare(text), item_id)

    def check_and_add(self, text: str, item_id: str) -> DupMatch | None:
        """Check `text` and keep it only if it is not a duplicate; returns the match if any."""
        p = self._prepare(text)
        self.last_exact_key = p.exact
        match = self._check(p)
        if match is None:
            self._add(p, item_id)
        return match

    def nbytes(self) -> int:
        """Bytes in RAM for the compact stores (excludes the bounded dict buffers)."""
        return self._exact.nbytes() + self._lsh.nbytes() + self._items.nbytes()

    def file_bytes(self) -> int:
        """Bytes of the index in its files (page cache, not this process's memory)."""
        return self._exact.file_bytes() + self._lsh.file_bytes() + self._items.file_bytes()
