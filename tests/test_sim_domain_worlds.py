"""The sim's choice, code and LaTeX worlds compute their own truth, independently of agen/verify."""

from __future__ import annotations

import asyncio
import random

from agen.gen.answers import equivalent
from agen.sim import code_world, latex_world
from agen.sim.choice_world import correct_letters
from agen.sim.choice_world import propose as propose_choice
from agen.sim.config import SimModel
from agen.verify.code import CodeVerifier

CLEAN = SimModel(propose_wrong_p=0, format_broken_p=0)


def _question(text: str) -> str:
    return text.split("[New Question Begin]")[1].split("[New Question End]")[0]


def test_latex_world_answers_are_right_in_every_spelling_and_mistakes_are_wrong():
    for i in range(300):
        q = _question(latex_world.propose(random.Random(i), CLEAN))
        truth = latex_world.true_answer(q)
        assert truth is not None, q
        for s in range(3):
            right = latex_world._variants(q, True, random.Random(i * 10 + s))
            assert equivalent(right, truth), (q, right, truth)
        wrong = latex_world._variants(q, False, random.Random(i))
        assert not equivalent(wrong, truth), (q, wrong, truth)
    assert latex_world.true_answer("What is 2 + 2?") is None
    assert latex_world.solve("What is 2 + 2?", 1, CLEAN) is None


def test_choice_world_knows_its_correct_options():
    for i in range(200):
        q = _question(propose_choice(random.Random(i), CLEAN))
        assert 1 <= len(correct_letters(q) or []) <= 2, q


def test_code_world_references_pass_and_family_bugs_are_caught():
    """Run in the sandbox: each family's correct code passes tests the sim computed; its bugs fail
    on at least some problems."""
    v = CodeVerifier()
    seen_bug_fail = set()

    async def go() -> None:
        for i in range(15):
            cand = v.parse(code_world.propose(random.Random(i), CLEAN))
            prob = code_world.parse_code_problem(cand.question)
            assert prob is not None
            assert (await v.run(cand.question, cand.answer)).outcome == "pass"
            for bug in prob.family.bugs:
                if (await v.run(cand.question, prob.source(bug))).outcome != "pass":
                    seen_bug_fail.add(prob.family.names[0])

    asyncio.run(go())
    assert len(seen_bug_fail) >= 3
