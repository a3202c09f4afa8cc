"""`verify: math` is a thin adapter over gen/answers + gen/parse: a table of MATH-style pairs
(fractions, radicals, intervals, sets, tuples, expressions with variables) and the adapter's shape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from agen.gen.vote import Tally
from agen.verify.math import MathVerifier

PAIRS = [orjson.loads(line) for line in (Path(__file__).parent / "data" / "verify_pairs_math.jsonl").read_bytes().splitlines()
         if line.strip()]


def test_table_has_at_least_50_pairs_both_ways():
    assert len(PAIRS) >= 50
    assert sum(p["equal"] for p in PAIRS) >= 20 and sum(not p["equal"] for p in PAIRS) >= 20


@pytest.mark.parametrize("row", PAIRS, ids=lambda r: f"{r['a']!r}~{r['b']!r}")
def test_pair(row):
    assert MathVerifier.same(row["a"], row["b"]) is row["equal"]
    assert MathVerifier.same(row["b"], row["a"]) is row["equal"]


def test_votes_are_the_last_box_outside_reasoning():
    v = MathVerifier()
    texts = ["<think>\\boxed{1}</think> so \\boxed{\\frac{1}{2}}", "no box here", "\\boxed{0.5}"]
    assert asyncio.run(v.votes("q", texts)) == ["\\frac{1}{2}", None, "0.5"]


def test_classes_group_equivalent_latex():
    v = MathVerifier()
    tally = Tally("2\\sqrt{2}", 4, 0.5, classes=v.classes("q", "2\\sqrt{2}"))
    for vote in ("\\sqrt{8}", "2\\sqrt{2}", "\\sqrt{2}", None):
        tally.add(vote)
    d = tally.decision()
    assert d.accepted and d.agree == 2
