"""Decide when two final answers are the same: a µs numeric path, math-verify for the rest.

Almost every vote compares plain numbers ("42", "3.0", "\\frac{6}{2}", "\\$1,200"), so
`answer_key` turns those into an exact `Fraction` that a dict can tally in microseconds.
Only answers that are not plain numbers (radicals, intervals, expressions) go to math-verify,
which costs milliseconds and is **not thread-safe**: it arms `signal.alarm` for its timeouts,
which only works in the main thread. Call `equivalent` / `AnswerClasses` from the main thread
(the event loop's thread) or from a process pool, never from a thread pool.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable, Iterable
from fractions import Fraction
from functools import lru_cache
from typing import Any

__all__ = ["AnswerClasses", "answer_key", "equivalent", "group_answers", "is_numeric_key"]

_WRAPPERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("{", "}"))
_BOXED = re.compile(r"^\\(?:boxed|fbox)\s*\{(.*)\}$", re.DOTALL)
_TEXT = re.compile(r"\\(?:text|textrm|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,!;: ]|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_VAR_EQ = re.compile(r"^[A-Za-z]\w*\s*=\s*(?=\S)")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\s*(?:\{([^{}]*)\}|(\d))\s*(?:\{([^{}]*)\}|(\d))$")
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_THOUSANDS = re.compile(r"^([-+]?)(\d{1,3}(?:,\d{3})+)(\.\d+)?$")
_SLASH = re.compile(r"^([-+]?\d+)\s*/\s*([-+]?\d+)$")
# Trailing plain-word units ("18 dollars", "5 apples"); letters that are math (pi, e, i, x)
# must not be eaten, so single letters and a few names are kept.
_UNIT_WORDS = re.compile(r"^(.*?\d\.?)\s+([A-Za-z]{2,}(?:\s+[A-Za-z]+)*)\s*$")
_NOT_UNITS = frozenset({"pi", "sqrt", "inf", "infty", "infinity", "ln", "log", "sin", "cos", "tan"})
_LETTER_CHOICE = re.compile(r"^\(?\s*([A-Za-z])\s*\)?$")


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


def _to_number(s: str) -> int | Fraction | None:
    """Parse an integer, decimal, `a/b` or `\\frac{a}{b}` (already cleaned) exactly."""
    if _NUMBER.match(s):
        return _plain_number(s)
    m = _THOUSANDS.match(s)
    if m:
        return Fraction(m.group(1) + m.group(2).replace(",", "") + (m.group(3) or ""))
    m = _SLASH.match(s)
    if m:
        den = int(m.group(2))
        return Fraction(int(m.group(1)), den) if den else None
    m = _FRAC.match(s)
    if m:
        num_s = (m.group(2) if m.group(2) is not None else m.group(3)).strip()
        den_s = (m.group(4) if m.group(4) is not None else m.group(5)).strip()
        num, den = _to_number(num_s), _to_number(den_s)
        if num is None or den is None or den == 0:
            return None
        value = Fraction(num, den)
        return -value if m.group(1) else value
    return None


def _numeric(ans: str) -> int | Fraction | None:
    s = _unwrap(ans.strip())
    s = s.replace("\\$", "").replace("$", "").replace("\u2212", "-").replace("{,}", ",")
    s = _SPACING.sub("", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("\\left", "").replace("\\right", "")
    stripped = _TEXT.sub("", s).strip()
    s = stripped if stripped else _TEXT.sub(lambda m: m.group(1), s).strip()
    s = _unwrap(s)
    m = _UNIT_WORDS.match(s)
    if m and not (set(m.group(2).lower().split()) & _NOT_UNITS):
        s = m.group(1)
    s = _VAR_EQ.sub("", s).strip().rstrip(".").strip()
    if s.startswith("-") or s.startswith("+"):
        s = s[0] + s[1:].lstrip()
    return _to_number(s)


def _normalized(ans: str) -> str:
    s = _unwrap(ans.strip())
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    s = s.replace("\\tfrac", "\\frac")
    s = _SPACING.sub("", s)
    s = "".join(s.split()).rstrip(".")
    m = _LETTER_CHOICE.match(s)
    if m:
        return m.group(1).upper()
    if s.isalpha():
        return s.lower()
    return s


def answer_key(ans: str) -> Hashable:
    """A canonical, hashable form of an answer, so votes can be tallied with a dict.

    Plain numbers become an exact `int` or `Fraction` (so "3", "3.0", "\\frac{6}{2}", "\\$3" share a key);
    anything else becomes a whitespace- and spelling-normalized `str`. Equal keys mean equal
    answers; different keys only mean "not provably equal without math-verify" when either
    key is a str. Percent signs are dropped (50\\% keys as 50, not 0.5).
    """
    plain = ans.strip()
    if _NUMBER.match(plain):  # the common case, skip the clean-up
        return _plain_number(plain)
    value = _numeric(ans)
    return value if value is not None else _normalized(ans)


def is_numeric_key(key: Hashable) -> bool:
    """Whether a key came from the numeric fast path (then key equality is the whole story)."""
    return isinstance(key, (int, Fraction))


def _check_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "math-verify uses signal.alarm for timeouts and only works in the main thread; "
            "compare non-numeric answers in the main thread or in a process pool"
        )


@lru_cache(maxsize=8192)
def _mv_parse(ans: str) -> Any:
    from math_verify import parse

    # A bare "\sqrt{4}" is not found without an anchor; a box is always found.
    return parse("\\boxed{" + ans + "}")


@lru_cache(maxsize=16384)
def _mv_equal(a: str, b: str) -> bool:
    from math_verify import verify

    pa, pb = _mv_parse(a), _mv_parse(b)
    if not pa or not pb:
        return False
    return bool(verify(pa, pb))


def equivalent(a: str, b: str) -> bool:
    """Whether two answers are mathematically the same.

    Numeric fast path first (exact fractions, ~µs); math-verify (ms, main thread only) only
    when either side is not a plain number.
    """
    ka, kb = answer_key(a), answer_key(b)
    if ka == kb:
        return True
    if is_numeric_key(ka) and is_numeric_key(kb):
        return False
    _check_main_thread()
    return _mv_equal(a.strip(), b.strip())


class AnswerClasses:
    """Equivalence classes of answers, built one answer at a time.

    Each answer joins the first existing class whose representative it is equivalent to, else
    starts a new one; a class's representative is its first member (or the `seed`). Answers
    with a key already seen join that key's class without any comparison, so the common
    numeric case is one dict lookup. None and blank answers join no class.

    With math-verify in play equivalence need not be transitive, so classes can depend on
    arrival order; for plain numbers they never do.
    """

    __slots__ = ("_by_key", "_numeric_rep", "counts", "representatives")

    def __init__(self, seed: str | None = None) -> None:
        self.representatives: list[str] = []
        self.counts: list[int] = []
        self._numeric_rep: list[bool] = []
        self._by_key: dict[Hashable, int] = {}
        if seed is not None:
            self._new_class(seed, answer_key(seed), count=0)

    def _new_class(self, ans: str, key: Hashable, count: int) -> int:
        idx = len(self.representatives)
        self.representatives.append(ans)
        self.counts.append(count)
        self._numeric_rep.append(is_numeric_key(key))
        self._by_key[key] = idx
        return idx

    def classify(self, ans: str | None) -> int | None:
        """The class `ans` belongs to (without counting it); None for a missing answer."""
        if ans is None or not ans.strip():
            return None
        key = answer_key(ans)
        idx = self._by_key.get(key)
        if idx is not None:
            return idx
        numeric = is_numeric_key(key)
        for i, rep in enumerate(self.representatives):
            if numeric and self._numeric_rep[i]:
                continue  # two different numbers: keys already said no
            _check_main_thread()
            if _mv_equal(rep.strip(), ans.strip()):
                self._by_key[key] = i
                return i
        return self._new_class(ans, key, count=0)

    def add(self, ans: str | None) -> int | None:
        """Count `ans` in its class and return the class index (None for a missing answer)."""
        idx = self.classify(ans)
        if idx is not None:
            self.counts[idx] += 1
        return idx

    def __len__(self) -> int:
        return len(self.representatives)


def group_answers(answers: Iterable[str | None]) -> list[tuple[str, int]]:
    """Group answers into equivalence classes: (representative, count), largest first.

    Missing answers (None, blank) are skipped. Ties keep first-seen order.
    """
    classes = AnswerClasses()
    for ans in answers:
        classes.add(ans)
    pairs = list(zip(classes.representatives, classes.counts, strict=True))
    return sorted(pairs, key=lambda p: -p[1])
