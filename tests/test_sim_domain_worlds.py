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


def test_gsm8k_prompts_stay_in_the_arithmetic_world_and_math500_prompts_go_latex():
    import orjson

    from conftest import ROOT

    from agen.gen.prompts import generation_prompt
    from agen.types import Example

    def prompt(path: str, field: str) -> list[str]:
        rows = [orjson.loads(line) for line in (ROOT / "data" / path).read_bytes().splitlines() if line.strip()]
        return [generation_prompt("verifiable_generate.txt", "verifiable_example.txt", [Example("s", r[field], None)])
                for r in rows]

    assert not any(latex_world.is_latex_prompt(p) for p in prompt("gsm8k_sample.jsonl", "question"))
    latex = [latex_world.is_latex_prompt(p) for p in prompt("math500_sample.jsonl", "problem")]
    assert sum(latex) / len(latex) >= 0.8  # the rest are plain text: both shots plain in ~3% of prompts
