"""`verify: code`: a table of solutions scored against tests in the sandbox, the parse step, the vote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from agen.config import SandboxConfig
from agen.gen.parse import ParseFailure
from agen.gen.vote import Tally
from agen.verify import domain_fields
from agen.verify.code import PASS, CodeVerifier
from agen.verify.code_format import extract_code, split_tests

ROWS = [orjson.loads(line) for line in (Path(__file__).parent / "data" / "verify_pairs_code.jsonl").read_bytes().splitlines()
        if line.strip()]
TESTS = {r["problem"]: r["tests"] for r in ROWS if "problem" in r}
PAIRS = [r for r in ROWS if "p" in r]


def _question(problem: str) -> str:
    return f"Implement `{problem}`.\n\ndef {problem}(...):\n\nTests:\n" + "\n".join(TESTS[problem])


def test_table_of_solutions_scored_in_the_sandbox():
    """≥ 50 (solution, tests) pairs, passing and failing, each run as its own sandboxed process."""
    assert len(PAIRS) >= 50
    assert sum(p["passes"] for p in PAIRS) >= 20 and sum(not p["passes"] for p in PAIRS) >= 20
    v = CodeVerifier(sandbox=SandboxConfig(cpu_s=2, wall_s=10))

    async def score() -> list[str]:
        runs = await asyncio.gather(*(v.run(_question(p["p"]), p["code"]) for p in PAIRS))
        return [r.outcome for r in runs]

    outcomes = asyncio.run(score())
    wrong = [(p["p"], p["code"], o) for p, o in zip(PAIRS, outcomes) if (o == PASS) is not p["passes"]]
    assert not wrong


def test_split_tests_and_extract_code():
    q = _question("add")
    statement, tests = split_tests(q)
    assert statement.startswith("Implement `add`") and tests == tuple(TESTS["add"])
    assert extract_code("x\n```python\ndef a(): pass\n```\nthen\n```py\ndef b(): pass\n```") == "def b(): pass"
    assert extract_code("<think>```python\ndef a(): pass\n```</think> no code") is None
    assert domain_fields("code", q) == {"domain": "code", "tests": list(TESTS["add"])}
    assert domain_fields("choice", "q") == {"domain": "choice"}


def _proposal(question: str, block: str) -> str:
    return (f"[New Question Begin]{question}[New Question End]\n"
            f"[Final Answer to New Question Begin]\n{block}\n[Final Answer to New Question End]")


def test_parse_needs_tests_and_reference_code():
    v = CodeVerifier()
    good = v.parse(_proposal(_question("add"), "```python\ndef add(a, b):\n    return a + b\n```"))
    assert good.answer == "def add(a, b):\n    return a + b"
    assert v.parse(_proposal("Implement add.", "```python\ndef add(a, b): return a + b\n```")) == ParseFailure("no_tests")
    assert v.parse(_proposal(_question("add"), "def add(a, b): return a + b")) == ParseFailure("no_reference_code")


def test_reference_must_pass_before_any_vote():
    v = CodeVerifier()
    q = _question("add")
    assert asyncio.run(v.check_candidate(q, "def add(a, b):\n    return a + b")) is None
    assert asyncio.run(v.check_candidate(q, "def add(a, b):\n    return a - b")) == "reference_fails"


def test_vote_is_over_test_outcomes():
    """Passing solutions must outnumber failing ones; failures of any kind are one class."""
    v = CodeVerifier()
    q = _question("add")
    texts = ["```python\ndef add(a, b):\n    return a + b\n```"] * 3 + [
        "```python\ndef add(a, b):\n    return a - b\n```", "```python\ndef add(a, b):\n    while True: pass\n```",
        "no code at all"]
    votes = asyncio.run(v.votes(q, texts))
    assert votes[:3] == [PASS] * 3 and votes[3] == "fail:tests" and votes[4] in ("fail:cpu", "fail:timeout")
    assert votes[5] is None
    tally = Tally("", 6, 0.5, classes=v.classes(q, ""))
    for vote in votes:
        tally.add(vote)
    d = tally.decision()
    assert d.accepted and d.agree == 3  # 3 pass vs 2 fail (one class), one without code
