"""The simulator's MATH-style world: problems with LaTeX answers whose truth it recomputes.

Four families, each recognised by its own phrasing (whoever wrote the text) so `true_answer`
recomputes the answer: simplify a square root (`a\\sqrt{b}`), add two fractions (a reduced
`\\frac{p}{q}`), solve `x^2 < k` in interval notation (`(-r, r)`), and the roots of a monic
quadratic (`a, b`). Used when a propose prompt's examples are LaTeX (MATH-style seeds, or the
accepted proposals of such a run), and for any solve prompt whose problem is from this world.

Solvers do not write the canonical form: a right answer comes as `6\\sqrt{2}`, `\\sqrt{72}`,
`6 \\cdot \\sqrt{2}`, `\\dfrac{7}{12}`, `7/12`, `\\left(-3, 3\\right)`, `5, 2`, `x = 2, 5`, … (the
assumption "equal answers are written alike" is broken on purpose), and a wrong one is a
mistake the family invites (the wrong factor, numerators and denominators added, a closed
interval, a sign flipped), so wrong votes cluster.
"""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction

from agen.sim.config import SimModel

__all__ = ["is_latex_prompt", "propose", "solve", "true_answer"]

_SQRT = re.compile(r"Simplify \$\\sqrt\{(\d+)\}\$(?: completely)?\.")
_FRAC = re.compile(r"Compute \$\\frac\{(\d+)\}\{(\d+)\} \+ \\frac\{(\d+)\}\{(\d+)\}\$\. Express your answer as a common fraction\.")
_INEQ = re.compile(r"Find all real \$x\$ with \$x\^2 < (\d+)\$\. Express your answer in interval notation\.")
_ROOTS = re.compile(r"Find all solutions of \$x\^2 ([+-]) (\d+)x ([+-]) (\d+) = 0\$\. Enter the solutions, separated by commas\.")


# a `$…$` math span (`$N$`, `$(2, -6)$`, `$x^2 + 1$`): no space inside its dollars, unlike the
# text between two of GSM8K's prices (`$5 and $3`)
_MATH_SPAN = re.compile(r"\$(?=\S)[^$\n]*\S\$")
_EXAMPLES_END = re.compile(r"^Your task|\[New Question Begin\]", re.M)


def is_latex_prompt(prompt: str) -> bool:
    """A propose prompt with LaTeX among its examples (MATH-style seeds, not GSM8K's dollars): the
    text from the first `Seed Question` up to the template's task description."""
    start = prompt.find("Seed Question")
    if start < 0:
        return False
    end = _EXAMPLES_END.search(prompt, start)
    examples = prompt[start: end.start() if end else len(prompt)]
    return "\\" in examples or _MATH_SPAN.search(examples) is not None


def _sqrt_parts(n: int) -> tuple[int, int]:
    a = max(k for k in range(1, math.isqrt(n) + 1) if n % (k * k) == 0)
    return a, n // (a * a)


def _tex_frac(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"\\frac{{{f.numerator}}}{{{f.denominator}}}"


def _parse(question: str) -> tuple[str, tuple[int, ...]] | None:
    q = question.strip()
    for kind, rx in (("sqrt", _SQRT), ("frac", _FRAC), ("ineq", _INEQ)):
        m = rx.search(q)
        if m and m.end() == len(q):
            return kind, tuple(int(g) for g in m.groups())
    m = _ROOTS.search(q)
    if m is not None and m.end() != len(q):
        m = None
    if m:
        b = int(m.group(2)) * (-1 if m.group(1) == "-" else 1)
        c = int(m.group(4)) * (-1 if m.group(3) == "-" else 1)
        return "roots", (b, c)
    return None


def _roots(b: int, c: int) -> tuple[int, int] | None:
    disc = b * b - 4 * c
    if disc < 0 or math.isqrt(disc) ** 2 != disc:
        return None
    r = math.isqrt(disc)
    return (-b - r) // 2, (-b + r) // 2


def true_answer(question: str) -> str | None:
    """The canonical answer, recomputed from the text; None if the text is not from this world."""
    got = _parse(question)
    if got is None:
        return None
    kind, v = got
    if kind == "sqrt":
        a, b = _sqrt_parts(v[0])
        return str(a) if b == 1 else f"{'' if a == 1 else a}\\sqrt{{{b}}}"
    if kind == "frac":
        return _tex_frac(Fraction(v[0], v[1]) + Fraction(v[2], v[3]))
    if kind == "ineq":
        r = math.isqrt(v[0])
        return f"(-{r}, {r})" if r * r == v[0] else f"(-\\sqrt{{{v[0]}}}, \\sqrt{{{v[0]}}})"
    roots = _roots(*v)
    return None if roots is None else ", ".join(str(x) for x in sorted(set(roots)))


def _variants(question: str, right: bool, rng: random.Random) -> str:
    """One way a solver writes its (right or mistaken) answer."""
    kind, v = _parse(question)  # type: ignore[misc]
    if kind == "sqrt":
        a, b = _sqrt_parts(v[0])
        if not right:
            a2 = a + rng.choice((-1, 1)) if a > 1 else a + 1
            return f"{a2}\\sqrt{{{b}}}"
        return rng.choice((f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{v[0]}}}", f"{a} \\cdot \\sqrt{{{b}}}",
                           f"{a}\\sqrt {b}" if b < 10 else f"{a}\\sqrt{{ {b} }}"))
    if kind == "frac":
        f = Fraction(v[0], v[1]) + Fraction(v[2], v[3])
        if not right:
            return _tex_frac(Fraction(v[0] + v[2], v[1] + v[3]))
        return rng.choice((_tex_frac(f), f"\\dfrac{{{f.numerator}}}{{{f.denominator}}}", f"{f.numerator}/{f.denominator}"))
    if kind == "ineq":
        t = true_answer(question) or ""
        lo, hi = t[1:-1].split(", ")
        if not right:
            return f"[{lo}, {hi}]"
        return rng.choice((t, f"\\left({lo}, {hi}\\right)", f"({lo},{hi})"))
    roots = sorted(set(_roots(*v) or (0,)))
    if not right:
        return ", ".join(str(-x) for x in roots)
    shown = roots if rng.random() < 0.5 else roots[::-1]
    return rng.choice((", ".join(map(str, shown)), "x = " + ", ".join(map(str, shown)), ",".join(map(str, shown))))


_OPENERS = (
    "{name} is preparing for a regional mathematics contest", "While checking {pos} homework, {name} meets an exercise",
    "A practice sheet from {name}'s teacher has a question", "{name} found a problem in an old olympiad booklet",
    "During a study group on {day}, {name} challenges the others", "The last question of {name}'s quiz is tricky",
    "On the board, {name} writes an exercise for the class", "{name} wants to check an answer printed in a textbook",
    "In the puzzle column of the school paper, {name} reads a question", "Before the exam on {day}, {name} reviews",
    "{name} and a friend race to solve a problem", "A tutor gives {name} a warm-up problem",
)
_CLOSERS = (
    "with {k} minutes on the clock.", "and wants an exact answer.", "after finishing {k} easier ones.",
    "on page {p} of the workbook.", "as question {k} of {p}.", "before lunch.", "for extra credit.",
    "and writes the steps neatly.", "without a calculator.", "in under {k} minutes.",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_NAMES = ("Maya", "Liam", "Sofia", "Noah", "Amara", "Ethan", "Priya", "Mateo", "Hana", "Oliver", "Zara", "Kofi",
          "Ingrid", "Diego", "Leila", "Tomas", "Chloe", "Ravi", "Nadia", "Felix", "Yuki", "Omar", "Elena", "Jonah")


def _new_problem(rng: random.Random) -> str:
    """A problem of one family after a one-sentence preamble (the families' own sentences are short
    and alike, and near-duplicate detection would otherwise reject most of them)."""
    slots = {"name": rng.choice(_NAMES), "pos": rng.choice(("his", "her")), "day": rng.choice(_DAYS),
             "k": rng.randint(2, 40), "p": rng.randint(41, 300)}
    preamble = rng.choice(_OPENERS).format(**slots) + " " + rng.choice(_CLOSERS).format(**slots)
    return preamble + " " + _problem(rng)


def _problem(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(2, 12), rng.choice((2, 3, 5, 6, 7, 10, 11))
        return f"Simplify $\\sqrt{{{a * a * b}}}$."
    if kind == 1:
        b, d = rng.randint(2, 15), rng.randint(2, 15)
        return (f"Compute $\\frac{{{rng.randint(1, b - 1)}}}{{{b}}} + \\frac{{{rng.randint(1, d - 1)}}}{{{d}}}$. "
                f"Express your answer as a common fraction.")
    if kind == 2:
        k = rng.choice((rng.randint(2, 15) ** 2, rng.choice((2, 3, 5, 7, 10, 13))))
        return f"Find all real $x$ with $x^2 < {k}$. Express your answer in interval notation."
    r1, r2 = rng.randint(-9, 9), rng.randint(-9, 9)
    while r1 == r2 or r1 == -r2:  # distinct roots, and a sign flip must be a different answer
        r2 = rng.randint(-9, 9)
    b, c = -(r1 + r2), r1 * r2
    return (f"Find all solutions of $x^2 {'-' if b < 0 else '+'} {abs(b)}x {'-' if c < 0 else '+'} {abs(c)} = 0$. "
            f"Enter the solutions, separated by commas.")


def propose(rng: random.Random, cfg: SimModel) -> str:
    """A new problem and its boxed answer in the required markers; sometimes wrong or broken."""
    question = _new_problem(rng)
    right = rng.random() >= cfg.propose_wrong_p
    answer = _variants(question, right, rng)
    cot = ("Analysis: the seed questions are competition-style problems with exact LaTeX answers.\n"
           "Plan: a new problem whose answer is exact (a radical, a fraction, an interval or a list of roots).\n")
    if rng.random() < cfg.format_broken_p:
        return cot + f"[New Question Begin]{question}[New Question End]\nThe answer is {answer}."
    return (cot + f"[New Question Begin]{question}[New Question End]\n"
            f"[Final Answer to New Question Begin]\\boxed{{{answer}}}[Final Answer to New Question End]")


def solve(question: str, seed: int, cfg: SimModel) -> str | None:
    """A solution ending in a boxed answer written in one of several equivalent forms; None if the
    problem is not from this world."""
    if _parse(question) is None or true_answer(question) is None:
        return None
    rng = random.Random(seed)
    answer = _variants(question, rng.random() < cfg.solve_correct_p, rng)
    return f"Working through the algebra carefully.\nThe answer is\n\\boxed{{{answer}}}"
