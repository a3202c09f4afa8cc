"""`verify: math` — a final answer in `\\boxed{}`, compared by `gen.answers` (numeric fast path,
math-verify for LaTeX: fractions, radicals, intervals, sets, tuples, expressions).

A thin adapter: extraction is `gen.parse.solution_answer`, equivalence is `gen.answers`; this
module only gives them the verifier's shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from agen.gen.answers import AnswerClasses, equivalent
from agen.gen.parse import solution_answer
from agen.verify.base import AnswerClassesLike, Verifier

__all__ = ["MathVerifier"]


class MathVerifier(Verifier):
    domain = "math"
    default_solve_template = "verifiable_solve.txt"
    pooled_equivalence = True

    async def votes(self, question: str, texts: Sequence[str]) -> list[str | None]:
        return [solution_answer(t) for t in texts]

    def classes(self, question: str, answer: str) -> AnswerClassesLike:
        return AnswerClasses(seed=answer)

    @staticmethod
    def same(a: str, b: str) -> bool:
        """Whether two final answers are the same (for tables and callers outside a vote)."""
        return equivalent(a, b)
