"""Tests for agen.gen.answers: numeric keys, math-verify fallback, answer classes."""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agen.gen.answers import (
    UNITS,
    AnswerClasses,
    Quantity,
    answer_key,
    equivalent,
    group_answers,
    is_numeric_key,
)


@pytest.mark.parametrize(
    ("spelling", "value"),
    [
        ("42", 42),
        (" 42. ", 42),
        ("3.0", 3),
        ("\\frac{6}{2}", 3),
        ("\\dfrac{3}{4}", Fraction(3, 4)),
        ("\\tfrac12", Fraction(1, 2)),
        ("3/4", Fraction(3, 4)),
        ("-\\frac{1}{2}", Fraction(-1, 2)),
        ("\\frac{-1}{2}", Fraction(-1, 2)),
        ("\u22125", -5),
        ("- 5", -5),
        ("\\$1,200", 1200),
        ("$1,200.50$", Fraction(2401, 2)),
        ("1{,}000", 1000),
        ("1\\,000", 1000),
        ("18 \\text{ dollars}", 18),
        ("18 dollars", 18),
        ("5 million", 5_000_000),
        ("1.5 million", 1_500_000),
        ("2 hundred", 200),
        ("12 dozen", 144),
        ("1e6", 1_000_000),
        ("2.5E-3", Fraction(1, 400)),
        ("1.5 \\times 10^{6}", 1_500_000),
        ("10^{6}", 1_000_000),
        ("\\text{5}", 5),
        ("50\\%", 50),
        ("30^\\circ", 30),
        ("x = 5", 5),
        ("\\boxed{7}", 7),
        ("{0.25}", Fraction(1, 4)),
    ],
)
def test_answer_key_numeric_spellings(spelling: str, value: Fraction) -> None:
    """Common spellings of a number all key to the exact same value."""
    key = answer_key(spelling)
    assert is_numeric_key(key)
    assert key == value and hash(key) == hash(Fraction(value))


@pytest.mark.parametrize("spelling", ["1,2", "(1,2)", "\\sqrt{2}", "3 pi", "2 x", "1/0", "5 \\text{cm}^2", "x+1"])
def test_answer_key_non_numeric_stays_string(spelling: str) -> None:
    """Tuples, radicals, symbols and ambiguous commas are not forced into numbers."""
    assert isinstance(answer_key(spelling), str)


def test_answer_key_string_normalization() -> None:
    """Choice letters, yes/no spellings and LaTeX spacing normalize to one string."""
    assert answer_key("(B)") == answer_key("B") == "B"
    assert answer_key("b") != answer_key("B")  # single letters keep their case ("e" is not "E")
    assert answer_key("Yes") == answer_key("yes") == answer_key("True") == "yes"
    assert answer_key("\\left(1, 2\\right)") == answer_key("(1,2)")
    assert answer_key("\\dfrac{\\sqrt{3}}{2}") == answer_key("\\frac{\\sqrt{3}}{2}")


@given(st.fractions(max_denominator=50).filter(lambda f: abs(f) < 10**6))
def test_answer_key_fraction_spellings_agree(value: Fraction) -> None:
    """`a/b`, `\\frac{a}{b}` and (for integers) the bare integer key identically."""
    n, d = value.numerator, value.denominator
    keys = {answer_key(f"{n}/{d}"), answer_key(f"\\frac{{{n}}}{{{d}}}")}
    if d == 1:
        keys.add(answer_key(str(n)))
        keys.add(answer_key(f"{n}.0"))
    assert keys == {value}


def test_equivalent_numeric_fast_path() -> None:
    """Plain numbers compare exactly without math-verify."""
    assert equivalent("3", "\\frac{6}{2}")
    assert not equivalent("0.333", "1/3")
    assert not equivalent("3", "4")


def test_equivalent_falls_back_to_math_verify() -> None:
    """Non-numeric answers are settled by math-verify."""
    assert equivalent("\\sqrt{4}", "2")
    assert equivalent("2\\sqrt{2}", "\\sqrt{8}")
    assert equivalent("(1,2)", "(1, 2)")
    assert not equivalent("\\pi", "3")
    assert not equivalent("\\sqrt{2}", "\\sqrt{3}")


def test_equivalent_refuses_other_threads() -> None:
    """The math-verify path raises off the main thread instead of failing obscurely."""
    errors: list[BaseException] = []
    numeric: list[bool] = []

    def run() -> None:
        numeric.append(equivalent("3", "3.0"))  # the numeric path is thread-safe
        try:
            equivalent("\\sqrt{5}", "\\sqrt{6}")
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert numeric == [True]
    assert len(errors) == 1 and "main thread" in str(errors[0])


def test_no_gc_callback_runs_inside_math_verify() -> None:
    """math-verify's SIGALRM handler raises wherever the main thread is; inside a gc callback
    (hypothesis and the loop-lag monitor install one) that exception would be swallowed as
    unraisable and the timeout lost. So no collection, hence no callback, runs inside it."""
    import gc
    import sys

    import math_verify  # noqa: F401  (its import, which collects, is not what this is about)

    inside: list[int] = []

    def callback(phase: str, info: dict) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_globals.get("__name__", "").startswith(("math_verify", "sympy", "latex2sympy2")):
                inside.append(info["generation"])
                return
            frame = frame.f_back

    gc.callbacks.append(callback)
    try:
        # fresh spellings (nothing cached), each parse and verify allocating thousands of objects
        for i in range(40):
            equivalent(f"\\sqrt{{{i + 1000}}}+\\frac{{x_{i}}}{{y}}", f"\\frac{{x_{i}}}{{y}}+\\sqrt{{{i + 1000}}}")
    finally:
        gc.callbacks.remove(callback)
    assert inside == []
    assert gc.isenabled()  # the collector runs again once math-verify returns


def test_math_verify_timeouts_are_longer_than_the_pools_kill() -> None:
    """A math-verify timeout answers "not equal" (a vote against, cached); the equivalence pool's
    kill makes a slow comparison undecidable. The pool's limit must be the one that fires."""
    from agen.filters.equivalence_pool import COMPARE_TIMEOUT_S
    from agen.gen import answers

    assert answers._MV_TIMEOUT_S > COMPARE_TIMEOUT_S


def test_group_answers_merges_spellings() -> None:
    """Equivalent spellings (numeric and symbolic) merge; missing answers are skipped."""
    groups = group_answers(["3", "3.0", None, "\\frac{6}{2}", "\\sqrt{9}", "4", "", "4.0", "\\sqrt{16}"])
    assert groups == [("3", 4), ("4", 3)]


def test_answer_classes_seed_has_zero_count() -> None:
    """A seeded class starts at zero and is class 0; blanks join nothing."""
    classes = AnswerClasses(seed="\\frac{1}{2}")
    assert classes.counts == [0]
    assert classes.add("0.5") == 0
    assert classes.add("  ") is None
    assert classes.add("2") == 1
    assert classes.counts == [1, 1]


def test_unknown_words_make_quantities_not_numbers() -> None:
    """Only listed units are dropped; any other word keeps the number apart from bare numbers."""
    assert "cents" not in UNITS and "dollars" in UNITS
    assert answer_key("1200 cents") == answer_key("1,200 cents") == Quantity(1200, "cent")
    assert answer_key("5 apples") == Quantity(5, "apple")
    assert answer_key("2 dozen eggs") == Quantity(24, "egg")
    assert not equivalent("1200 cents", "1200") and not equivalent("5 apples", "5")


def test_sentences_with_numbers_key_in_linear_time() -> None:
    """The trailing-words pattern once nested its repeats and backtracked exponentially when a
    number came after the words: 47 s (on the event loop, for one vote sample) for the first text
    here. Each now takes well under a millisecond; run in a child with a hang guard so a
    regression fails instead of stalling the suite. The keys of words after a number hold."""
    texts = ["A $90^\\circ$ rotation around the origin in the counter-clock",
             "200 pounds of carrots are to be distributed to 40 restaurant",
             "1 " + "abcdefghij " * 60 + "2 x"]
    code = ("from agen.gen.answers import answer_key\n"
            f"for t in {texts!r}: answer_key(t)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert answer_key("12 big red apples") == Quantity(12, "big red apple")
    assert answer_key("7.5 m s") == answer_key("7.5  m   s")


def _table() -> list[tuple[str, str, bool, str]]:
    path = Path(__file__).parent / "data" / "equivalence.tsv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(r["a"], r["b"], r["expected"] == "=", r["note"]) for r in rows]


TABLE = _table()


def test_equivalence_table_is_broad() -> None:
    """The shipped table has >= 100 pairs, both verdicts, and every pair the audit listed."""
    assert len(TABLE) >= 100
    assert sum(e for _, _, e, _ in TABLE) >= 40 and sum(not e for _, _, e, _ in TABLE) >= 40
    pairs = {(a, b) for a, b, _, _ in TABLE}
    audit = [("5 million", "5"), ("3 thousand", "3"), ("12 dozen", "12"), ("1200 cents", "1200"),
             ("\\sqrt{2}", "1.414214"), ("\\pi", "3.141593"), ("e", "E"), ("2 hundred", "200"),
             ("1.5 million", "1500000"), ("1e6", "1000000"), ("True", "yes"), ("(0,1)", "0<x<1")]
    assert [p for p in audit if p not in pairs] == []


@pytest.mark.parametrize(("a", "b", "expected", "note"), TABLE, ids=[f"{a} | {b}" for a, b, _, _ in TABLE])
def test_equivalence_table(a: str, b: str, expected: bool, note: str) -> None:
    """Each pair has the table's verdict, in both orders, and groups the same either way."""
    assert equivalent(a, b) is expected, note
    assert equivalent(b, a) is expected, note
    assert len(group_answers([a, b])) == (1 if expected else 2)
    assert len(group_answers([b, a])) == (1 if expected else 2)


ANSWERS = sorted({x for a, b, _, _ in TABLE for x in (a, b)})


@settings(deadline=None)  # math-verify on a loaded machine: hypothesis's 200 ms deadline was a timed assertion
@given(st.sampled_from(ANSWERS), st.sampled_from(ANSWERS))
def test_equivalent_is_symmetric(a: str, b: str) -> None:
    """Symmetric by construction: keys compare both ways and math-verify is asked both ways."""
    assert equivalent(a, b) == equivalent(b, a)


def test_long_answers_never_reach_math_verify() -> None:
    """An answer past MAX_SYMBOLIC_CHARS is compared by key only, so no comparison is unbounded."""
    from agen.gen import answers

    long = "+".join(["x"] * (answers.MAX_SYMBOLIC_CHARS // 2 + 1))
    before = answers._mv_parse.cache_info()
    assert not equivalent(long, "\\sqrt{2}")
    assert equivalent(long, " " + long)
    after = answers._mv_parse.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)
