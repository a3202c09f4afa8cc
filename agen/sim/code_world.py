"""The simulator's code world: small Python function problems whose correct behaviour it knows.

A problem comes from one of a few families (sum above a threshold, count a letter, every k-th
element, clamp a list, digit sum modulo m), with its own constants, function name and phrasing,
and 3-5 `assert` tests whose expected values the sim computes with its own implementation of the
family (never by running anyone's code). `parse_code_problem` recognises a family's statement in
any text, so `solve` writes correct code with p = solve_correct_p, a family bug otherwise.

Assumptions broken on purpose, so the verifier is tested against them:
* a proposer sometimes (propose_wrong_p) states tests computed from its own *buggy* reference
  (reference and tests agree, the statement disagrees: only the vote can catch it), or writes one
  wrong expected value (its correct reference then fails its tests);
* solvers sometimes (HOSTILE_P) write code that loops forever, allocates without bound, opens a
  socket, reads an API key from the environment, writes outside its directory, or forks;
* solutions come in ```python, ```py or bare ``` fences, or (format_broken_p) with no fence.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from agen.sim.config import SimModel

__all__ = ["HOSTILE", "HOSTILE_P", "is_propose", "is_solve", "parse_code_problem", "propose", "question_of", "solve"]

HOSTILE_P = 0.02
HOSTILE = {
    "loop": "def {name}(*args):\n    while True:\n        pass\n",
    "alloc": "def {name}(*args):\n    hog = []\n    while True:\n        hog.append(bytearray(10**7))\n",
    "socket": "import socket\n\ndef {name}(*args):\n    socket.create_connection(('127.0.0.1', 9))\n",
    "env": "import os\n\ndef {name}(*args):\n    return os.environ['OPENAI_API_KEY']\n",
    "write": "def {name}(*args):\n    open('/tmp/agen-sim-escape.txt', 'w').write('escaped')\n    return None\n",
    "fork": "import os\n\ndef {name}(*args):\n    while True:\n        os.fork()\n",
}
_QUESTION_LINE = re.compile(r"^Programming problem:[ \t]*$", re.M)


@dataclass(frozen=True, slots=True)
class Family:
    names: tuple[str, ...]
    statements: tuple[str, ...]  # with {name} and the family's constants
    signature: str
    correct: str  # body source with the constants
    bugs: tuple[str, ...]
    impl: Callable[..., Callable[..., Any]]  # constants -> the function, for computing tests
    consts: Callable[[random.Random], dict[str, Any]]
    inputs: Callable[[random.Random, dict[str, Any]], tuple[Any, ...]]


def _ints(rng: random.Random, lo: int = -20, hi: int = 40) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(0, 7))]


FAMILIES = (
    Family(("sum_above", "total_greater_than", "add_large_values"),
           ("Write a function `{name}(xs)` that returns the sum of the integers in the list `xs` that are "
            "strictly greater than {k}. An empty list gives 0.",
            "Given a list of integers `xs`, `{name}(xs)` must add up only the values larger than {k} "
            "(values equal to {k} are not counted) and return the total."),
           "def {name}(xs):", "    return sum(x for x in xs if x > {k})",
           ("    return sum(x for x in xs if x >= {k})", "    return sum(xs)"),
           lambda k: lambda xs: sum(x for x in xs if x > k),
           lambda rng: {"k": rng.randint(0, 15)},
           lambda rng, c: (_ints(rng) + [c["k"]] * rng.randint(0, 1),)),
    Family(("count_letter", "letter_frequency", "how_many_of"),
           ("Write a function `{name}(s)` that returns how many times the letter '{c}' occurs in the string "
            "`s`, counting upper and lower case alike.",
            "`{name}(s)` counts the occurrences of '{c}' in `s`, ignoring case, and returns that count."),
           "def {name}(s):", "    return s.lower().count('{c}')",
           ("    return s.count('{c}')", "    return len(s)"),
           lambda c: lambda s: s.lower().count(c),
           lambda rng: {"c": rng.choice("aeiorstnl")},
           lambda rng, c: ("".join(rng.choice("aeiorstnlAEIORSTNL xyz") for _ in range(rng.randint(0, 14))),)),
    Family(("every_kth", "take_every", "stride_pick"),
           ("Write a function `{name}(xs)` that returns a new list with every {k}th element of `xs`, "
            "starting with the first element (index 0).",
            "`{name}(xs)` keeps the elements of `xs` at positions 0, {k}, {k2}, and so on, and returns them "
            "as a list."),
           "def {name}(xs):", "    return xs[::{k}]",
           ("    return xs[{k}::{k}]", "    return xs[1::{k}]"),
           lambda k, **_: lambda xs: xs[::k],
           lambda rng: (lambda k: {"k": k, "k2": 2 * k})(rng.randint(2, 4)),
           lambda rng, c: ([rng.randint(0, 99) for _ in range(rng.randint(0, 11))],)),
    Family(("clamp_all", "limit_values", "bound_list"),
           ("Write a function `{name}(xs)` that returns a new list in which every value of `xs` below {lo} "
            "is replaced by {lo} and every value above {hi} is replaced by {hi}; other values are kept.",
            "`{name}(xs)` clamps each integer of `xs` into the range {lo}..{hi} (inclusive) and returns "
            "the clamped values as a list, in order."),
           "def {name}(xs):", "    return [min(max(x, {lo}), {hi}) for x in xs]",
           ("    return [min(x, {hi}) for x in xs]", "    return [max(x, {lo}) for x in xs]"),
           lambda lo, hi: lambda xs: [min(max(x, lo), hi) for x in xs],
           lambda rng: (lambda lo: {"lo": lo, "hi": lo + rng.randint(5, 30)})(rng.randint(-10, 10)),
           lambda rng, c: (_ints(rng, -30, 50),)),
    Family(("digit_sum_mod", "digits_modulo", "sum_digits_mod"),
           ("Write a function `{name}(n)` that returns the sum of the decimal digits of the non-negative "
            "integer `n`, taken modulo {m}.",
            "`{name}(n)` adds up the digits of `n` (an integer, n >= 0) and returns the remainder of that "
            "sum divided by {m}."),
           "def {name}(n):", "    return sum(int(d) for d in str(n)) % {m}",
           ("    return sum(int(d) for d in str(n))", "    return n % {m}"),
           lambda m: lambda n: sum(int(d) for d in str(n)) % m,
           lambda rng: {"m": rng.randint(3, 11)},
           lambda rng, c: (rng.randint(0, 10 ** rng.randint(1, 7)),)),
)


def _statement_regex(template: str) -> re.Pattern[str]:
    out = re.escape(template)
    for slot in ("name", "k", "k2", "c", "lo", "hi", "m"):
        out = out.replace(re.escape("{" + slot + "}"), f"(?P<{slot}>[-\\w]+)", 1)
        out = out.replace(re.escape("{" + slot + "}"), f"(?P={slot})")
    return re.compile(out)


_PARSERS = [(f, _statement_regex(t)) for f in FAMILIES for t in f.statements]


@dataclass(frozen=True, slots=True)
class CodeProblem:
    family: Family
    name: str
    consts: dict[str, Any]

    def source(self, body: str) -> str:
        return self.family.signature.format(name=self.name) + "\n" + body.format(**self.consts) + "\n"


def parse_code_problem(question: str) -> CodeProblem | None:
    """The family, function name and constants of a problem written from a family; None otherwise."""
    for fam, rx in _PARSERS:
        m = rx.search(question)
        if m:
            vals = m.groupdict()
            name = vals.pop("name")
            consts = {k: (v if k == "c" else int(v)) for k, v in vals.items()}
            return CodeProblem(fam, name, consts)
    return None


def _test_line(name: str, args: tuple[Any, ...], expected: Any) -> str:
    return f"assert {name}({', '.join(map(repr, args))}) == {expected!r}"


def propose(rng: random.Random, cfg: SimModel) -> str:
    """A new problem with tests and a reference solution; sometimes wrong (see the module doc)."""
    fam = rng.choice(FAMILIES)
    consts = fam.consts(rng)
    prob = CodeProblem(fam, rng.choice(fam.names), consts)
    body = fam.correct
    func = fam.impl(**consts)
    mistake = rng.random() < cfg.propose_wrong_p
    if mistake and rng.random() < 0.5:  # tests follow a buggy reference: consistent, but not the statement
        body = rng.choice(fam.bugs)
        ns: dict[str, Any] = {}
        exec(prob.source(body), ns)  # the sim's own bug template, never a model's output
        func = ns[prob.name]
        mistake = False
    tests = []
    for i in range(rng.randint(3, 5)):
        args = fam.inputs(rng, consts)
        expected = func(*args)
        if mistake and i == 0:
            expected = expected + 1 if isinstance(expected, int) else expected[:-1] if expected else [0]
        tests.append(_test_line(prob.name, args, expected))
    statement = rng.choice(fam.statements).format(name=prob.name, **consts)
    question = f"{statement}\n\n{fam.signature.format(name=prob.name)}\n\nTests:\n" + "\n".join(tests)
    cot = ("Analysis: the seed problems ask for one small Python function with exact tests.\n"
           "Plan: a new function, a precise statement, tests that cover an edge case.\n")
    answer = f"```python\n{prob.source(body)}```"
    if rng.random() < cfg.format_broken_p:
        answer = prob.source(body)  # no fence: no reference code
    return (cot + f"[New Question Begin]{question}[New Question End]\n"
            f"[Final Answer to New Question Begin]\n{answer}\n[Final Answer to New Question End]")


def solve(question: str, seed: int, cfg: SimModel) -> str:
    """A solution: correct with p = solve_correct_p, else a family bug, rarely hostile code."""
    rng = random.Random(seed)
    prob = parse_code_problem(question)
    name = prob.name if prob else (re.findall(r"def (\w+)\(", question) or ["solution"])[0]
    if rng.random() < HOSTILE_P:
        code = HOSTILE[rng.choice(sorted(HOSTILE))].format(name=name)
    elif prob is None:
        code = f"def {name}(*args):\n    return None\n"
    elif rng.random() < cfg.solve_correct_p:
        code = prob.source(prob.family.correct)
    else:
        code = prob.source(rng.choice(prob.family.bugs))
    if rng.random() < cfg.format_broken_p:
        return "Here is my solution:\n" + code
    fence = rng.choice(("```python", "```python", "```py", "```"))
    return f"Let me write the function.\n{fence}\n{code}```"


def is_propose(last_user: str) -> bool:
    return "[New Question Begin]" in last_user and "Python programming problem" in last_user


def is_solve(last_user: str) -> bool:
    return _QUESTION_LINE.search(last_user) is not None


def question_of(last_user: str) -> str:
    m = _QUESTION_LINE.search(last_user)
    return last_user[m.end():].strip() if m else ""
