"""The simulator's multiple-choice world: questions whose correct option it recomputes from the text.

Three families, each with a truth computable from the question alone (whoever wrote it):
an arithmetic word problem from `world` with four numeric options; "which number is prime";
"the greatest common divisor of a and b". `correct_letters` returns every option that is right,
so a flawed proposal (two primes among the options: the assumption "exactly one correct option"
broken on purpose, in FLAWED_P of the prime family's proposals) makes solvers split between two letters, which the
vote must reject.

Solvers do not answer with a bare letter: they write `\\boxed{B}`, `\\boxed{(B)}`, `\\boxed{B) 42}`,
the option's text, or an `Answer: B` line without a box (ANSWER_FORMS), so the verifier's
normalisation is tested against what the sim writes, not against what it expects.
"""

from __future__ import annotations

import math
import random
import re

from agen.sim.config import SimModel
from agen.sim.world import generate_problem, parse_problem, plausible_wrong

__all__ = ["FLAWED_P", "correct_letters", "is_propose", "is_solve", "propose", "question_of", "solve"]

LETTERS = "ABCD"
FLAWED_P = 0.3  # share of prime-family proposals with two correct options
FAMILY_SHARES = (0.7, 0.15, 0.15)  # word problem, prime, gcd
ANSWER_FORMS = (("box", 0.45), ("paren", 0.15), ("letter_text", 0.15), ("text", 0.1), ("line", 0.15))
_OPTION = re.compile(r"^([A-D])\) (.+)$", re.M)
_PRIME_STEMS = (
    "Which of the following numbers is prime?",
    "Exactly one of these numbers has no divisor other than 1 and itself. Which one is it?",
    "A student sorts numbers into primes and composites. Which of these belongs with the primes?",
    "Which number below cannot be written as a product of two smaller whole numbers?",
)
_GCD_STEMS = (
    "What is the greatest common divisor of {a} and {b}?",
    "A baker has {a} rolls and {b} buns and wants identical trays with no leftovers. "
    "What is the largest number of trays she can fill?",
    "Two ropes are {a} cm and {b} cm long. What is the longest length, in cm, into which both can be cut exactly?",
)
_GCD_RES = tuple(re.compile("^" + re.escape(t).replace(r"\{a\}", r"(\d+)").replace(r"\{b\}", r"(\d+)") + "$")
                 for t in _GCD_STEMS)
_QUESTION_LINE = re.compile(r"^Question:[ \t]*$", re.M)


def is_propose(last_user: str) -> bool:
    return "[New Question Begin]" in last_user and "multiple-choice question" in last_user


def is_solve(last_user: str) -> bool:
    return "letter of the correct option" in last_user and _QUESTION_LINE.search(last_user) is not None


def question_of(last_user: str) -> str:
    m = _QUESTION_LINE.search(last_user)
    return last_user[m.end():].strip() if m else ""


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def _split(question: str) -> tuple[str, dict[str, str]]:
    options = dict(_OPTION.findall(question))
    first = _OPTION.search(question)
    return (question[: first.start()].strip() if first else question.strip()), options


def correct_letters(question: str) -> list[str] | None:
    """Every correct option's letter, recomputed from the text; None if the sim cannot tell."""
    stem, options = _split(question)
    if len(options) < 2:
        return None
    if stem in _PRIME_STEMS:
        return [k for k, v in options.items() if v.isdigit() and _is_prime(int(v))]
    m = next((m for rx in _GCD_RES if (m := rx.match(stem))), None)
    if m:
        g = str(math.gcd(int(m.group(1)), int(m.group(2))))
        return [k for k, v in options.items() if v == g]
    prob = parse_problem(stem)
    if prob is None:
        return None
    truth = str(prob.evaluate())
    return [k for k, v in options.items() if v == truth]


def _composite(rng: random.Random) -> int:
    while True:  # odd, not divisible by 5, looks prime-ish
        p, q = rng.choice((3, 7, 11, 13, 17, 19)), rng.randint(7, 60)
        n = p * q
        if n % 2 and n % 5 and n > 20:
            return n


def _prime(rng: random.Random) -> int:
    while True:
        n = rng.randrange(23, 400, 2)
        if _is_prime(n):
            return n


def _new_question(rng: random.Random, steps: int, flawed: bool) -> tuple[str, list[str]]:
    """(stem, options) with the correct option(s) first; the caller shuffles."""
    u = rng.random()  # word problems vary without end; the two short families repeat (dedup drops most)
    family = 0 if u < FAMILY_SHARES[0] else 1 if u < FAMILY_SHARES[0] + FAMILY_SHARES[1] else 2
    if family == 0:
        stem, truth = generate_problem(rng, steps)
        wrong = [w for w in plausible_wrong(stem) if w != truth][:3]
        while len(wrong) < 3:
            wrong.append(str(int(truth) + 2 + len(wrong)))
        return stem, [truth, *wrong]
    if family == 1:
        opts = [str(_prime(rng))]
        if flawed:
            while (p := str(_prime(rng))) in opts:
                pass
            opts.append(p)
        while len(opts) < 4:
            c = str(_composite(rng))
            if c not in opts:
                opts.append(c)
        return rng.choice(_PRIME_STEMS), opts
    g = rng.choice((2, 3, 4, 6, 7, 8, 9, 12, 14, 15))
    a, b = g * rng.randint(2, 19), g * rng.randint(2, 19)
    while math.gcd(a, b) != g or a == b:
        a, b = g * rng.randint(2, 19), g * rng.randint(2, 19)
    truth = math.gcd(a, b)
    wrong = []
    for w in (truth * 2, max(1, truth // 2), abs(a - b), truth + 1, truth * 3):
        if w != truth and str(w) not in wrong:
            wrong.append(str(w))
    return rng.choice(_GCD_STEMS).format(a=a, b=b), [str(truth), *wrong[:3]]


def propose(rng: random.Random, cfg: SimModel) -> str:
    """A short plan and a new four-option question in the required markers; sometimes wrong or broken."""
    flawed = rng.random() < FLAWED_P
    stem, opts = _new_question(rng, rng.randint(2, 4), flawed)
    order = list(range(len(opts)))
    rng.shuffle(order)
    shown = [opts[i] for i in order]
    right = LETTERS[order.index(0)]
    stated = right
    if rng.random() < cfg.propose_wrong_p:
        stated = LETTERS[order.index(1)]
    question = stem + "\n" + "\n".join(f"{LETTERS[i]}) {t}" for i, t in enumerate(shown))
    cot = ("Analysis: the seed questions are multiple-choice questions with one correct option.\n"
           "Plan: a new question, one correct option and three distractors from likely mistakes.\n")
    answer = rng.choice((stated, f"({stated})", stated))
    if rng.random() < cfg.format_broken_p:
        return cot + f"[New Question Begin]{question}\nThe answer is {stated}."
    return (cot + f"[New Question Begin]{question}[New Question End]\n"
            f"[Final Answer to New Question Begin]\\boxed{{{answer}}}[Final Answer to New Question End]")


def _pick(u: float, weighted: tuple[tuple[str, float], ...]) -> str:
    acc = 0.0
    for name, w in weighted:
        acc += w
        if u < acc:
            return name
    return weighted[-1][0]


def solve(question: str, seed: int, cfg: SimModel) -> str:
    """A solution naming one option, right with p = solve_correct_p ** (steps / 3), in a varied form."""
    rng = random.Random(seed)
    stem, options = _split(question)
    letters = sorted(options) or list(LETTERS)
    correct = correct_letters(question)
    prob = parse_problem(stem)
    p = cfg.solve_correct_p ** ((prob.steps if prob else 3) / 3)
    if correct and rng.random() < p:
        letter = rng.choice(correct)  # two correct options: solvers split between them
    else:
        wrong = [x for x in letters if not correct or x not in correct]
        # wrong answers cluster on the most tempting distractor (fixed per question)
        h = sum(map(ord, question)) % len(wrong)
        letter = wrong[h] if rng.random() < 0.6 else rng.choice(wrong)
    text = options.get(letter, letter)
    form = _pick(rng.random(), ANSWER_FORMS)
    body = "Let me check each option in turn.\n"
    if form == "line":
        return body + f"Answer: {letter}"
    shown = {"box": letter, "paren": f"({letter})", "letter_text": f"{letter}) {text}", "text": text}[form]
    return body + f"The correct option is\n\\boxed{{{shown}}}"
