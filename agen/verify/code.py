"""`verify: code` — a problem statement with a signature and `assert` tests; answers are Python.

The proposer's answer is a reference solution (a fenced code block in its final-answer block);
each solver sample is a solution. Every one is run against the question's tests in the sandbox
(`agen.verify.sandbox`: a separate, limited process), so generated code never runs in agen's own
process. The vote is over test outcomes: a sample votes `pass` or `fail:<why>`, all failures are
one class, so the usual rule keeps a candidate when solutions that pass outnumber those that fail
and reach `vote.min_share` — and only if its own reference solution passed first (checked before
any solver is paid for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agen.config import SandboxConfig
from agen.gen.parse import Candidate, ParseFailure, split_generation
from agen.verify.base import AnswerClassesLike, KeyClasses, Verifier
from agen.verify.code_format import extract_code, split_tests
from agen.verify.sandbox import Limits, Sandbox, SandboxResult

__all__ = ["CodeVerifier", "PASS"]

PASS = "pass"


def _outcome_class(vote: str) -> str:
    return PASS if vote == PASS else "fail"


class CodeVerifier(Verifier):
    domain = "code"
    default_solve_template = "code_solve.txt"

    def __init__(self, solve_template: str | None = None, sandbox: SandboxConfig | None = None) -> None:
        super().__init__(solve_template)
        sc = sandbox or SandboxConfig()
        self.sandbox = Sandbox(Limits(cpu_s=sc.cpu_s, wall_s=sc.wall_s, memory_mb=sc.memory_mb), sc.parallel)

    def parse(self, text: str) -> Candidate | ParseFailure:
        """The generic markers; the question must hold `assert` tests and the answer block code.

        Extra reasons: `no_tests`, `no_reference_code`.
        """
        parts = split_generation(text)
        if isinstance(parts, ParseFailure):
            return parts
        question, block = parts
        if not split_tests(question)[1]:
            return ParseFailure("no_tests")
        code = extract_code(block)
        if code is None:
            return ParseFailure("no_reference_code")
        return Candidate(question=question, answer=code)

    async def run(self, question: str, code: str) -> SandboxResult:
        """One solution against the question's tests, in the sandbox."""
        return await self.sandbox.run(code, split_tests(question)[1])

    async def check_candidate(self, question: str, answer: str | None) -> str | None:
        if not answer:
            return "reference_fails"
        result = await self.run(question, answer)
        return None if result.outcome == PASS else "reference_fails"

    async def votes(self, question: str, texts: Sequence[str]) -> list[str | None]:
        codes = [extract_code(t) for t in texts]
        runs = await asyncio.gather(*(self.run(question, c) for c in codes if c is not None))
        it = iter(runs)
        return [next(it).outcome if c is not None else None for c in codes]

    def classes(self, question: str, answer: str) -> AnswerClassesLike:
        return KeyClasses(PASS, key=_outcome_class)
