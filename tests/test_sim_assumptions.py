"""The sim world's tunable assumptions, over HTTP: traps, hardness, missing boxes, RIP's premise.

Each one breaks something the filters would like to assume (independent solver errors, equal
difficulty, always-boxed answers, response quality tracking prompt quality), so the suite and
the benchmarks can see what the filters do when it does not hold.
"""

from __future__ import annotations

import random
import re
from statistics import mean
from typing import Any

import aiohttp

from agen.gen.parse import solution_answer
from agen.gen.vote import decide_full
from agen.sim import SimServer
from agen.sim.config import SimModel
from agen.sim.model import hardness, is_trap, solve_p, trap_draw
from agen.sim.open_world import generate_open_prompt, prompt_quality, respond, response_quality
from agen.sim.world import generate_problem, plausible_wrong, true_answer
from conftest import FAST

CFG: dict[str, Any] = {
    "models": {
        "trapped": {**FAST, "solve_correct_p": 1.0, "trap_share": 1.0, "trap_p": 1.0},
        "proposer": {**FAST, "trap_share": 1.0, "trap_p": 1.0, "format_broken_p": 0.0},
        "boxless": {**FAST, "solve_correct_p": 1.0, "no_box_p": 1.0},
        "exact": {**FAST, "solve_correct_p": 1.0},
    },
}
SOLVE = "Solve the following problem. Reason step by step, then give only the final answer inside \\boxed{{}} on the last line.\n\nProblem:\n{q}"
PROPOSE = "Make a question.\n\nSeed Question 1: {q}\n\n[New Question Begin]{{q}}[New Question End]\n\\boxed{{a}}"


async def _texts(http: aiohttp.ClientSession, sim: SimServer, model: str, prompt: str, n: int) -> list[str]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "n": n, "seed": 0}
    async with http.post(sim.base_url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200
        return [c["message"]["content"] for c in (await r.json())["choices"]]


async def test_trap_problems_fool_proposer_and_every_vote(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """On a trap the proposal states the shared wrong answer and a perfect solver agrees with it,
    so Answer-Consistency accepts a wrong example however large K is."""
    q, truth = generate_problem(random.Random(4), 3)
    trap = plausible_wrong(q)[0]
    votes = [solution_answer(t) for t in await _texts(http, sim, "trapped", SOLVE.format(q=q), 32)]
    assert set(votes) == {trap} and trap != truth
    assert decide_full(trap, votes, 32, 0.5).accepted
    for text in await _texts(http, sim, "proposer", PROPOSE.format(q=q), 6):
        new_q = re.search(r"\[New Question Begin\](.*?)\[New Question End\]", text, re.S).group(1)
        stated = re.search(r"\[Final Answer to New Question Begin\]\\boxed\{(.*?)\}", text).group(1)
        assert stated == plausible_wrong(new_q)[0] != true_answer(new_q)


def test_traps_are_shared_across_models() -> None:
    """A problem that traps a model with a small trap_share traps every model with a larger one."""
    qs = [generate_problem(random.Random(i), 3)[0] for i in range(400)]
    low, high = SimModel(trap_share=0.1), SimModel(trap_share=0.3)
    few = {q for q in qs if is_trap(q, low)}
    many = {q for q in qs if is_trap(q, high)}
    assert few <= many and 0.05 < len(few) / len(qs) < 0.15 and 0.2 < len(many) / len(qs) < 0.4
    assert not any(is_trap(q, SimModel()) for q in qs)
    assert all(0 <= trap_draw(q) < 1 for q in qs)


def test_difficulty_spread_moves_accuracy_per_problem() -> None:
    """Without spread every 3-step problem is solved equally often; with it, hard problems (z > 0)
    are solved less often than easy ones, by every model alike."""
    qs = [generate_problem(random.Random(i), 3)[0] for i in range(300)]
    flat, spread = SimModel(solve_correct_p=0.7), SimModel(solve_correct_p=0.7, difficulty_spread=1.5)
    assert {round(solve_p(q, 3, flat), 9) for q in qs} == {0.7}
    ps = {q: solve_p(q, 3, spread) for q in qs}
    assert min(ps.values()) < 0.3 and max(ps.values()) > 0.95
    assert all((ps[q] < 0.7) == (hardness(q) > 0) for q in qs)
    other = SimModel(solve_correct_p=0.9, difficulty_spread=1.5)
    assert all((solve_p(q, 3, other) < 0.9) == (hardness(q) > 0) for q in qs)


async def test_solutions_without_a_box_give_no_vote(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A solver that states its answer in words leaves the vote without an answer."""
    q, truth = generate_problem(random.Random(5), 3)
    boxless = await _texts(http, sim, "boxless", SOLVE.format(q=q), 8)
    assert all("\\boxed" not in t and t.rstrip().endswith(f"{truth}.") for t in boxless)
    assert [solution_answer(t) for t in boxless] == [None] * 8
    assert {solution_answer(t) for t in await _texts(http, sim, "exact", SOLVE.format(q=q), 8)} == {truth}
    assert decide_full(truth, [solution_answer(t) for t in boxless], 8, 0.5).reason == "no_answers"


def test_open_quality_link_zero_decouples_responses_from_prompts() -> None:
    """At link 0 a response's quality does not depend on its prompt's; at 1 (RIP's premise) good
    prompts get better responses."""
    rng = random.Random(3)
    prompts = [generate_open_prompt(rng, "technical_programming", 0.6) for _ in range(200)]
    prompts.sort(key=lambda p: prompt_quality(p) or 0.0)
    low, high = prompts[:40], prompts[-40:]
    for link, differs in ((0.0, False), (1.0, True)):
        cfg = SimModel(open_quality_link=link)
        lo = [response_quality(respond(p, s, cfg)) for p in low for s in range(5)]
        hi = [response_quality(respond(p, s, cfg)) for p in high for s in range(5)]
        if differs:
            assert mean(hi) - mean(lo) > 0.2
        else:
            assert lo == [response_quality(respond(p, s, cfg)) for p in high for s in range(5)]


def test_prose_answer_p_boxes_a_sentence_around_the_answer() -> None:
    """`prose_answer_p` boxes a sentence holding the solution's answer (and other numbers)."""
    from agen.sim.model import solve

    q, truth = generate_problem(random.Random(7), 3)
    prose_cfg = SimModel(**FAST, solve_correct_p=1.0, prose_answer_p=1.0)
    answers = {solution_answer(solve(q, seed, prose_cfg)) for seed in range(40)}
    assert all(a and " " in a for a in answers) and len(answers) > 3
    assert all(truth in a for a in answers if "rotation" not in a)  # the rotation has no answer in it
    plain = {solution_answer(solve(q, seed, SimModel(**FAST, solve_correct_p=1.0))) for seed in range(40)}
    assert plain == {truth}
