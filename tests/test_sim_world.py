"""The sim's closed world: problems round-trip through their text, foreign text is rejected."""

from __future__ import annotations

import random
import re
from pathlib import Path

import orjson
from rapidfuzz.distance import LCSseq

from agen.sim.world import (
    generate_problem,
    parse_problem,
    plausible_wrong,
    problem_steps,
    true_answer,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "gsm8k_sample.jsonl"


def test_round_trip_thousands() -> None:
    """true_answer recomputes the generated answer for every one of 3,000 problems of 2..5 steps."""
    rng = random.Random(7)
    for _ in range(3000):
        steps = rng.randint(2, 5)
        q, a = generate_problem(rng, steps)
        assert true_answer(q) == a, q
        assert int(a) >= 0
        prob = parse_problem(q)
        assert prob is not None and prob.steps == steps


def test_gsm8k_text_is_foreign() -> None:
    """Real GSM8K questions are not from the grammar: true_answer is None."""
    lines = DATA.read_bytes().splitlines()
    assert lines
    for line in lines:
        assert true_answer(orjson.loads(line)["question"]) is None


def test_mangled_text_is_foreign() -> None:
    """A grammar problem with a sentence changed or its question removed no longer parses."""
    q, _ = generate_problem(random.Random(3), 3)
    sentences = re.split(r"(?<=[.?!])\s+", q)
    assert true_answer(" ".join(sentences[:-1])) is None  # no question
    assert true_answer(" ".join(sentences[:1] + ["The sky is green today."] + sentences[1:])) is None
    assert true_answer(q.replace("?", ".")) is None
    assert true_answer("Hello there. How are you? Fine.") is None


def test_generation_is_deterministic() -> None:
    """The same RNG seed yields the same problems."""
    a = [generate_problem(random.Random(11), s) for s in (2, 3, 4, 5)]
    b = [generate_problem(random.Random(11), s) for s in (2, 3, 4, 5)]
    assert a == b


def test_plausible_wrong_answers() -> None:
    """Three distinct non-negative wrong values, never the truth, stable across calls."""
    rng = random.Random(5)
    for _ in range(500):
        q, a = generate_problem(rng, rng.randint(2, 5))
        wrong = plausible_wrong(q)
        assert len(wrong) == 3 and len(set(wrong)) == 3 and a not in wrong
        assert all(int(w) >= 0 for w in wrong)
        assert plausible_wrong(q) == wrong


def test_near_duplicate_rate_is_low() -> None:
    """Fewer than 2% of pairs among 300 problems reach ROUGE-L F1 >= 0.7 on word tokens."""
    rng = random.Random(2024)
    toks = [re.findall(r"\w+", generate_problem(rng, rng.randint(2, 5))[0].lower()) for _ in range(300)]
    pairs = dups = 0
    for i in range(len(toks)):
        for j in range(i + 1, len(toks)):
            lcs = LCSseq.similarity(toks[i], toks[j])
            pairs += 1
            dups += 2 * lcs / (len(toks[i]) + len(toks[j])) >= 0.7
    assert dups / pairs < 0.02


def test_problem_steps_is_the_hidden_difficulty() -> None:
    """problem_steps reads the number of operations back from the text; None for foreign text."""
    rng = random.Random(12)
    for steps in (2, 3, 4, 5):
        assert problem_steps(generate_problem(rng, steps)[0]) == steps
    assert problem_steps(orjson.loads(DATA.read_bytes().splitlines()[0])["question"]) is None


def _propose_prompt(seeds: list[str]) -> str:
    from agen.gen.prompts import generation_prompt
    from agen.types import Example

    return generation_prompt("verifiable_generate.txt", "verifiable_example.txt",
                             [Example(f"s{i}", q, None) for i, q in enumerate(seeds)])


def test_imitator_copies_in_world_difficulty_and_falls_back_on_human_seeds() -> None:
    """A cheap imitator (ambition 0, default_steps 2) copies the step count of grammar examples
    and writes easy problems from human seeds; an ambitious model goes one step beyond either."""
    from agen.sim.config import SimModel
    from agen.sim.model import target_steps

    cheap, strong = SimModel(ambition=0, default_steps=2), SimModel(ambition=1, default_steps=None)
    rng = random.Random(21)
    human = [orjson.loads(line)["question"] for line in DATA.read_bytes().splitlines()]
    for steps in (2, 3, 4):
        prompt = _propose_prompt([generate_problem(rng, steps)[0] for _ in range(2)])
        got = [target_steps(prompt, random.Random(i), cheap) for i in range(200)]
        assert sum(g == steps for g in got) >= 150 and all(abs(g - steps) <= 1 for g in got)
        up = [target_steps(prompt, random.Random(i), strong) for i in range(200)]
        assert abs(sum(up) / len(up) - (steps + 1)) < 0.2
    prompts = [_propose_prompt(rng.sample(human, 2)) for _ in range(200)]
    easy = [target_steps(p, random.Random(i), cheap) for i, p in enumerate(prompts)]
    hard = [target_steps(p, random.Random(i), strong) for i, p in enumerate(prompts)]
    assert sum(easy) / len(easy) < 2.2 and sum(hard) / len(hard) > 3.2
