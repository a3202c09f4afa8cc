"""Tests for agen.gen.dedup: exact and ROUGE-L near-duplicates, LSH recall vs brute force."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from rapidfuzz.distance import LCSseq
from rapidfuzz.process import cdist

from agen.gen.dedup import Deduper, DupMatch, rouge_l, tokenize
from agen.gen.dedup_store import MultiMap

GSM8K = Path(__file__).resolve().parents[1] / "data" / "gsm8k_sample.jsonl"


def test_tokenize_and_rouge_l() -> None:
    """Tokens are lowercased letter/digit runs; ROUGE-L F1 is 2·LCS/(la+lb)."""
    assert tokenize("It's 3:45, Bob!") == ["it", "s", "3", "45", "bob"]
    assert rouge_l("a b c d", "a x c d e") == 2 * 3 / 9
    assert rouge_l("", "a") == 0.0


def test_exact_duplicates_ignore_case_and_whitespace() -> None:
    """Case and whitespace variants are exact duplicates of the kept text."""
    dd = Deduper()
    assert dd.check_and_add("How many apples does  Tom have?", "q1") is None
    assert dd.check_and_add("how many APPLES\ndoes tom have?  ", "q2") == DupMatch("exact", "q1", 1.0)
    assert len(dd) == 1


def test_near_duplicate_at_threshold() -> None:
    """ROUGE-L exactly at the threshold is a duplicate; just below is not."""
    base = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
    at = "alpha bravo charlie delta echo foxtrot golf xray yankee zulu"  # LCS 7/10 -> 0.7
    below = "alpha bravo charlie delta echo foxtrot wolf xray yankee zulu"  # 0.6
    dd = Deduper(bands=64, rows=2)  # retrieval certain here: this pins the threshold rule
    dd.add(base, "b")
    match = dd.check(at)
    assert match is not None and match.kind == "near" and match.match_id == "b"
    assert abs(match.score - 0.7) < 1e-12
    assert dd.check(below) is None
    assert len(dd) == 1  # check never adds


def test_distinct_questions_are_kept() -> None:
    """Unrelated questions are all kept; the best near match is reported."""
    questions = [json.loads(line)["question"] for line in GSM8K.read_text().splitlines()]
    dd = Deduper()
    kept = [q for i, q in enumerate(questions) if dd.check_and_add(q, f"g{i}") is None]
    assert len(kept) == len(dd) == len(set(q.lower() for q in questions))


def test_textless_input_is_exact_only() -> None:
    """A text without word tokens can only be an exact duplicate."""
    dd = Deduper()
    dd.add("?!", "p")
    assert dd.check("?!") == DupMatch("exact", "p", 1.0)
    assert dd.check("...") is None


def test_multimap_merges_keep_order_and_limit() -> None:
    """Values survive buffer merges, newest `limit` per key (in no particular order)."""
    mm = MultiMap(np.uint32, merge_at=4)
    for value in range(10):
        mm.add([7, 100 + value], value)
    keys = np.array([7, 105, 999], dtype=np.uint32)
    assert sorted(mm.get(keys, limit=100)) == sorted(list(range(10)) + [5])
    assert sorted(mm.get(np.array([7], dtype=np.uint32), limit=3)) == [7, 8, 9]


def _variant(rng: random.Random, words: list[str], vocab: list[str], f: float) -> str:
    out: list[str] = []
    for w in words:
        if w.isdigit():
            out.append(str(rng.randint(1, 500)))
            continue
        r = rng.random()
        if r < f / 3:
            out.append(rng.choice(vocab))
        elif r < 2 * f / 3:
            continue
        elif r < f:
            out.extend((w, rng.choice(vocab)))
        else:
            out.append(w)
    return " ".join(out)


def test_recall_against_brute_force() -> None:
    """LSH finds ≥95% of the queries that brute-force ROUGE-L says are duplicates, and no others.

    Pool: 200 GSM8K questions + 800 made of GSM8K words; queries: edits of pool questions
    (numbers changed, 0–40% of words swapped/dropped/inserted), so many sit just above and
    below 0.7. Measured: recall 635/639 = 0.994 overall, 74/77 = 0.96 for [0.70, 0.75).
    """
    rng = random.Random(1)
    gsm = [json.loads(line)["question"] for line in GSM8K.read_text().splitlines()]
    vocab = [w for q in gsm for w in q.split()]
    pool = gsm + [" ".join(rng.choices(vocab, k=rng.randint(15, 80))) for _ in range(800)]
    queries = [_variant(rng, rng.choice(pool).split(), vocab, rng.uniform(0.0, 0.4)) for _ in range(700)]

    dd = Deduper()
    for i, q in enumerate(pool):
        dd.add(q, str(i))

    # Brute force, independent of dedup's hashing: tokens -> private chars, all-pairs LCS.
    ids: dict[str, str] = {}
    enc = ["".join(ids.setdefault(t, chr(0x4E00 + len(ids))) for t in tokenize(s)) for s in pool + queries]
    lcs = cdist(enc[len(pool) :], enc[: len(pool)], scorer=LCSseq.similarity, workers=1)
    qlen = np.array([len(s) for s in enc[len(pool) :]], dtype=float)[:, None]
    plen = np.array([len(s) for s in enc[: len(pool)]], dtype=float)[None, :]
    best = (2 * lcs / (qlen + plen)).max(axis=1)

    positives = found = low_pos = low_found = 0
    for q, truth in zip(queries, best, strict=True):
        match = dd.check(q)
        if truth >= 0.7:
            positives += 1
            found += match is not None
            if truth < 0.75:
                low_pos += 1
                low_found += match is not None
            if match is not None:
                assert 0.7 <= match.score <= truth + 1e-9
        else:
            assert match is None  # candidates are verified exactly: no false positives
    assert positives >= 250 and low_pos >= 30
    assert found / positives >= 0.95
    assert low_found / low_pos >= 0.85


def test_index_merges_in_the_background_and_finds_everything():
    """Full buffers merge in a worker thread; a lookup during or after a merge finds every stored
    value, the most recent `limit` per key, as one sorted array would."""
    import numpy as np


    m = MultiMap(np.uint32, merge_at=8)
    ref: dict[int, list[int]] = {}
    for v in range(400):
        keys = [v % 37, (v * 7) % 53 + 100]
        m.add(keys, v)
        for k in keys:
            ref.setdefault(k, []).append(v)
        if v % 50 == 0:  # mid-merge or not: the answer is the same
            probe = np.array([3, 140, 999], dtype=np.uint32)
            got = sorted(m.get(probe, 5))
            assert got == sorted(x for k in (3, 140, 999) for x in ref.get(k, [])[-5:])
    m.wait_merged()
    assert m._merging is None and m._frozen is None
    probe = np.array(sorted(ref), dtype=np.uint32)
    assert sorted(m.get(probe, 1000)) == sorted(x for k in ref for x in ref[k])
