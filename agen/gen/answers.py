"""Decide when two final answers are the same: canonicalise first, then compare.

`answer_key` turns an answer into one of three canonical forms, so votes tally with a dict:

- an exact number (`int`/`Fraction`): "42", "3.0", "\\frac{6}{2}", "\\$1,200", "18 dollars"
  (a unit from `UNITS` only), "1.5 million", "2 dozen", "1e6", "1.5 \\times 10^{6}";
- a `Quantity` (a number followed by words that are not in `UNITS`: "1200 cents", "5 apples"),
  equal only to the same quantity and never to a bare number — a word we do not know may
  change the value, and a false merge costs precision while a false split costs only recall;
- a `str`: the normalised spelling of anything else (radicals, intervals, choices, words).

Keys alone decide unless one side is a symbolic `str` (and neither side is a `Quantity`, a
plain word or a single letter): then math-verify decides, **both ways round** (it is asymmetric,
e.g. for intervals against inequalities) so the relation is symmetric by construction, with every
decimal rewritten as an exact fraction first — math-verify rounds floats to 6 digits, which would
make "\\sqrt{2}" equal "1.414214". Its parse and verify each have a timeout, and answers longer
than `MAX_SYMBOLIC_CHARS` are compared by key only, so one comparison is bounded.

math-verify arms `signal.alarm` for its timeouts, which only works in the main thread: call
`equivalent` / `AnswerClasses` from the main thread (the event loop's) or from a process pool,
never from a thread pool. The alarm's handler raises wherever the main thread is when it fires;
inside a garbage-collector callback (hypothesis and `engine/loop_lag` install one) the exception
is "ignored" — the timeout is lost and the process reports an unraisable error — so the
collector is paused while an alarm is armed. A math-verify timeout answers "not equal", so it is
longer than the equivalence pool's per-comparison limit: in the pool a slow comparison is killed
as undecidable, never counted as a disagreeing vote. Every pair in `tests/data/equivalence.tsv`
is checked by the suite.
"""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

__all__ = ["AnswerClasses", "MAGNITUDES", "Quantity", "UNITS", "answer_key", "equivalent",
           "group_answers", "is_numeric_key"]

# Unit words that label a number without changing it, so "18 dollars" is 18. Nothing else is
# stripped: "1200 cents" and "5 apples" become Quantities. Units of one dimension are not
# converted ("90 minutes" and "90 hours" both key as 90): the question fixes the unit.
UNITS = frozenset("""
    dollar dollars usd euro euros percent degree degrees unit units point points
    second seconds sec secs minute minutes min mins hour hours hr hrs day days week weeks
    month months year years cm mm km meter meters metre metres kilometer kilometers kilometre
    kilometres mile miles foot feet ft inch inches yard yards gram grams kg kilogram kilograms
    lb lbs pound pounds ounce ounces oz ton tons liter liters litre litres ml gallon gallons
    cup cups quart quarts mph
""".split())
MAGNITUDES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9,
              "trillion": 10**12, "dozen": 12}
_MAX_EXPONENT = 300  # 1e100000 would be a huge exact integer; leave it a string
MAX_SYMBOLIC_CHARS = 256
_MV_TIMEOUT_S = 5  # per math-verify parse and per verify (whole seconds: signal.alarm); above the
#   equivalence pool's COMPARE_TIMEOUT_S, whose kill decides a slow comparison (undecidable)

_WRAPPERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("{", "}"))
_BOXED = re.compile(r"^\\(?:boxed|fbox)\s*\{(.*)\}$", re.DOTALL)
_TEXT = re.compile(r"\\(?:text|textrm|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,!;: ]|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_VAR_EQ = re.compile(r"^[A-Za-z]\w*\s*=\s*(?=\S)")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\s*(?:\{([^{}]*)\}|(\d))\s*(?:\{([^{}]*)\}|(\d))$")
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_THOUSANDS = re.compile(r"^([-+]?)(\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+)(\.\d+)?$")
_SLASH = re.compile(r"^([-+]?\d+)\s*/\s*([-+]?\d+)$")
_E_NOTATION = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?\d+)$")
_TIMES_TEN = re.compile(r"^([-+]?)(?:(\d+\.?\d*|\.\d+)\s*(?:\\times|\\cdot|×|\*)\s*)?"
                        r"10\s*\^\s*(?:\{\s*([-+]?\d+)\s*\}|([-+]?\d+))$")
# the words after the number: a letter, then letters and blanks (`(?:[A-Za-z]+\s*)+` says the same
# with nested repeats, and backtracked exponentially when the rest did not match: 47 s on the loop
# for "A $90^\circ$ rotation around the origin in the counter-clock"; tests/test_answers.py)
_TRAILING_WORDS = re.compile(r"^(.*?\d\.?)\s*([A-Za-z][A-Za-z\s]*)$")
# Words that are mathematics, not units: "3 pi" is a number but not this module's to decide.
_MATH_WORDS = frozenset({"pi", "sqrt", "inf", "infty", "infinity", "ln", "log", "sin", "cos",
                         "tan", "exp", "frac", "cdot", "times", "circ"})
_PAREN_LETTER = re.compile(r"^\(\s*([A-Za-z])\s*\)$")
_BOOLEANS = {"true": "yes", "yes": "yes", "false": "no", "no": "no"}
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number with a unit we do not know (plural folded): equal only to the same quantity."""

    value: int | Fraction
    unit: str

    def __reduce__(self) -> tuple[Any, ...]:  # pickled to equivalence workers; compiled, a class needs it said
        return Quantity, (self.value, self.unit)


def _unwrap(s: str) -> str:
    """Peel `$…$`, `\\(…\\)`, `{…}` and a whole `\\boxed{…}` off the outside, repeatedly."""
    changed = True
    while changed and s:
        changed = False
        m = _BOXED.match(s)
        if m:
            s, changed = m.group(1).strip(), True
            continue
        for left, right in _WRAPPERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                inner = s[len(left) : len(s) - len(right)]
                if left == "{" and ("{" in inner or "}" in inner):
                    continue  # "{a}{b}" is not one group
                s, changed = inner.strip(), True
                break
    return s


def _plain_number(s: str) -> int | Fraction:
    # int() is ~10x cheaper than Fraction(str); equal ints and Fractions hash alike.
    return Fraction(s) if "." in s else int(s)


def _power_of_ten(mantissa: str | None, exponent: str, sign: str = "") -> int | Fraction | None:
    e = int(exponent)
    if abs(e) > _MAX_EXPONENT:
        return None
    value = (Fraction(mantissa) if mantissa else Fraction(1)) * Fraction(10) ** e
    value = -value if sign == "-" else value
    return int(value) if value.denominator == 1 else value


def _to_number(s: str) -> int | Fraction | None:
    """Parse an integer, decimal, `a/b`, `\\frac{a}{b}` or scientific notation (cleaned) exactly."""
    if _NUMBER.match(s):
        return _plain_number(s)
    m = _THOUSANDS.match(s)
    if m:
        return _plain_number(m.group(1) + m.group(2).replace(",", "").replace(" ", "") + (m.group(3) or ""))
    m = _SLASH.match(s)
    if m:
        den = int(m.group(2))
        return Fraction(int(m.group(1)), den) if den else None
    m = _E_NOTATION.match(s)
    if m:
        return _power_of_ten(m.group(1), m.group(2))
    m = _TIMES_TEN.match(s)
    if m:
        return _power_of_ten(m.group(2), m.group(3) or m.group(4), m.group(1))
    m = _FRAC.match(s)
    if m:
        num_s = (m.group(2) if m.group(2) is not None else m.group(3)).strip()
        den_s = (m.group(4) if m.group(4) is not None else m.group(5)).strip()
        top, bottom = _to_number(num_s), _to_number(den_s)
        if top is None or bottom is None or bottom == 0:
            return None
        value = Fraction(top, bottom)
        return -value if m.group(1) else value
    return None


# Letters that after a number are SI unit symbols (metre, second, gram, hour, litre, volt, watt,
# joule), not variables: "10 m" is a quantity, while "3 x" or "2 n" stays mathematics.
UNIT_LETTERS = frozenset("msghlvwj")


def _fold_plural(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _with_words(number: str, words: list[str]) -> int | Fraction | Quantity | None:
    """A number followed by words: units from `UNITS` are dropped, a leading magnitude word
    multiplies, anything else makes a Quantity. None when a word is mathematics ("3 pi")."""
    value = _to_number(number)
    if value is None or any((len(w) == 1 and w not in UNIT_LETTERS) or w in _MATH_WORDS for w in words):
        return None
    if len(words) == 1 and words[0] in UNIT_LETTERS:  # "10 m" is ten metres: not 10, not 10 km
        return Quantity(value, words[0])
    while words and words[-1] in UNITS:
        words = words[:-1]
    if words and (words[0] in MAGNITUDES or words[0].rstrip("s") in MAGNITUDES):
        value = value * MAGNITUDES[words[0] if words[0] in MAGNITUDES else words[0].rstrip("s")]
        if isinstance(value, Fraction) and value.denominator == 1:
            value = int(value)
        words = words[1:]
    if not words:
        return value
    return Quantity(value, " ".join(_fold_plural(w) for w in words))


def _numeric(ans: str) -> int | Fraction | Quantity | None:
    s = _unwrap(ans.strip())
    s = s.replace("\\$", "").replace("$", "").replace("\u2212", "-").replace("{,}", ",")
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("\\left", "").replace("\\right", "")
    s = _TEXT.sub(lambda m: " " + m.group(1) + " ", s)
    s = _unwrap(" ".join(s.split()))
    s = _VAR_EQ.sub("", s).strip().rstrip(".").strip()
    if s.startswith("-") or s.startswith("+"):
        s = s[0] + s[1:].lstrip()
    value = _to_number(s)
    if value is not None:
        return value
    m = _TRAILING_WORDS.match(s)
    if m:
        return _with_words(m.group(1).strip(), m.group(2).lower().split())
    return None


def _normalized(ans: str) -> str:
    s = _unwrap(ans.strip())
    s = _TEXT.sub(lambda m: m.group(1), s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    s = s.replace("\\tfrac", "\\frac")
    s = _SPACING.sub("", s)
    s = "".join(s.split()).rstrip(".")
    m = _PAREN_LETTER.match(s)
    if m:
        return m.group(1)  # "(B)" is the choice B; case is kept: "e" is not "E"
    if s.isalpha() and len(s) > 1:
        low = s.lower()
        return _BOOLEANS.get(low, low)
    return s


def answer_key(ans: str) -> Hashable:
    """A canonical, hashable form of an answer, so votes can be tallied with a dict.

    An exact `int`/`Fraction` for numbers (so "3", "3.0", "\\frac{6}{2}", "\\$3", "3 dollars"
    share a key), a `Quantity` for a number with an unknown word, else a normalised `str`
    (multi-letter words lower-cased, true/false folded into yes/no, single letters kept as
    written). Equal keys mean equal answers; different keys mean different answers unless
    `equivalent` sends the pair to math-verify. Percent signs are dropped (50\\% keys as 50).
    """
    plain = ans.strip()
    if _NUMBER.match(plain):  # the common case, skip the clean-up
        return _plain_number(plain)
    value = _numeric(ans)
    return value if value is not None else _normalized(ans)


def is_numeric_key(key: Hashable) -> bool:
    """Whether a key is an exact number (then key equality is the whole story between numbers)."""
    return isinstance(key, (int, Fraction))


def _symbolic(key: Hashable) -> bool:
    """A str key that math-verify may equate with something else: not a word, not a single
    letter (math-verify reads "e" and "E" alike), no unknown words ("5 cm^2" is not 5), short."""
    if not isinstance(key, str) or len(key) > MAX_SYMBOLIC_CHARS:
        return False
    if len(key) == 1 or key.isalpha():
        return False
    return all(w.lower() in _MATH_WORDS for w in _WORD.findall(key))


def _needs_math_verify(ka: Hashable, kb: Hashable) -> bool:
    """Unequal keys still may be equal answers only when one side is symbolic and the other
    is symbolic or a number (never a Quantity or a final str)."""
    return (_symbolic(ka) or _symbolic(kb)) and _open(ka) and _open(kb)


def _open(k: Hashable) -> bool:
    """Symbolic or a number: a key math-verify may still find equal to another."""
    return is_numeric_key(k) or _symbolic(k)


def _mv_text(ans: str, key: Hashable) -> str:
    """What math-verify reads: a number's exact value, or the answer with exact decimals."""
    if isinstance(key, int):
        return str(key)
    if isinstance(key, Fraction):
        sign = "-" if key < 0 else ""
        return f"{sign}\\frac{{{abs(key.numerator)}}}{{{key.denominator}}}"
    return _DECIMAL.sub(lambda m: f"(\\frac{{{int(m.group(1) + m.group(2))}}}{{1{'0' * len(m.group(2))}}})",
                        ans.strip())


def _check_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "math-verify uses signal.alarm for timeouts and only works in the main thread; "
            "compare non-numeric answers in the main thread or in a process pool"
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage-collector callback runs while math-verify's alarm is armed, so its timeout
    exception lands in math-verify's own frames (which turn it into "not equal")."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@lru_cache(maxsize=8192)
def _mv_parse(text: str) -> Any:
    from math_verify import parse

    # A bare "\sqrt{4}" is not found without an anchor; a box is always found.
    with _collector_paused():
        return parse("\\boxed{" + text + "}", parsing_timeout=_MV_TIMEOUT_S)


@lru_cache(maxsize=16384)
def _mv_equal_sorted(a: str, b: str) -> bool:
    from math_verify import verify

    pa, pb = _mv_parse(a), _mv_parse(b)
    if not pa or not pb:
        return False
    with _collector_paused():
        return bool(verify(pa, pb, timeout_seconds=_MV_TIMEOUT_S)) or bool(
            verify(pb, pa, timeout_seconds=_MV_TIMEOUT_S))


def _mv_equal(a: str, ka: Hashable, b: str, kb: Hashable) -> bool:
    _check_main_thread()
    ta, tb = _mv_text(a, ka), _mv_text(b, kb)
    return _mv_equal_sorted(ta, tb) if ta <= tb else _mv_equal_sorted(tb, ta)


def equivalent(a: str, b: str) -> bool:
    """Whether two answers are mathematically the same; `equivalent(a, b) == equivalent(b, a)`.

    Keys first (exact, ~µs); math-verify (ms, main thread only) only when a side is symbolic.
    """
    ka, kb = answer_key(a), answer_key(b)
    if ka == kb:
        return True
    if not _needs_math_verify(ka, kb):
        return False
    return _mv_equal(a, ka, b, kb)


class AnswerClasses:
    """Equivalence classes of answers, built one answer at a time.

    Each answer joins the first existing class whose representative it is equivalent to, else
    starts a new one; a class's representative is its first member (or the `seed`). Answers
    with a key already seen join that key's class without any comparison, so the common
    numeric case is one dict lookup. None and blank answers join no class.

    `equivalent` is symmetric, but with math-verify in play it need not be transitive, so
    classes of symbolic answers can still depend on arrival order; for keys alone (numbers,
    quantities, words) they never do.
    """

    __slots__ = ("_by_key", "_rep_keys", "counts", "representatives")

    def __init__(self, seed: str | None = None) -> None:
        self.representatives: list[str] = []
        self.counts: list[int] = []
        self._rep_keys: list[Hashable] = []
        self._by_key: dict[Hashable, int] = {}
        if seed is not None:
            self._new_class(seed, answer_key(seed), count=0)

    def _new_class(self, ans: str, key: Hashable, count: int) -> int:
        idx = len(self.representatives)
        self.representatives.append(ans)
        self.counts.append(count)
        self._rep_keys.append(key)
        self._by_key[key] = idx
        return idx

    def classify(self, ans: str | None, key: Hashable = None) -> int | None:
        """The class `ans` belongs to (without counting it); None for a missing answer. `key`:
        its `answer_key`, if the caller has it."""
        if ans is None or not ans.strip():
            return None
        if key is None:
            key = answer_key(ans)
        idx = self._by_key.get(key)
        if idx is not None:
            return idx
        for i, rep in enumerate(self.representatives):
            rep_key = self._rep_keys[i]
            if _needs_math_verify(rep_key, key) and _mv_equal(rep, rep_key, ans, key):
                self._by_key[key] = i
                return i
        return self._new_class(ans, key, count=0)

    def __reduce__(self) -> tuple[Any, ...]:  # the equivalence pool pickles tallies to its workers
        return _classes_from, (self.representatives, self.counts, self._rep_keys, self._by_key)

    def add(self, ans: str | None, key: Hashable = None) -> int | None:
        """Count `ans` in its class and return the class index (None for a missing answer)."""
        idx = self.classify(ans, key)
        if idx is not None:
            self.counts[idx] += 1
        return idx

    def __len__(self) -> int:
        return len(self.representatives)


def _classes_from(representatives: list[str], counts: list[int], rep_keys: list[Hashable],
                  by_key: dict[Hashable, int]) -> AnswerClasses:
    classes = AnswerClasses()
    classes.representatives, classes.counts, classes._rep_keys, classes._by_key = representatives, counts, rep_keys, by_key
    return classes


def group_answers(answers: Iterable[str | None]) -> list[tuple[str, int]]:
    """Group answers into equivalence classes: (representative, count), largest first.

    Missing answers (None, blank) are skipped. Ties keep first-seen order.
    """
    classes = AnswerClasses()
    for ans in answers:
        classes.add(ans)
    pairs = list(zip(classes.representatives, classes.counts, strict=True))
    return sorted(pairs, key=lambda p: -p[1])
