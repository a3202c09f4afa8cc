"""The sim's open-ended world over real HTTP: prompts with hidden quality, responses, judge, classifier,
and the leaf-level RIP check that filtering by responses finds the better prompts."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from agen.config import ModelConfig, Price
from agen.gen.category_parse import CATEGORIES, parse_category
from agen.gen.dedup import Deduper
from agen.gen.judge import parse_judge_score
from agen.gen.parse import ParseFailure, parse_open_generation
from agen.gen.prompts import generation_prompt, load_template
from agen.gen.rip_metrics import calibrate, compute_metrics, keep, response_length
from agen.providers import Providers
from agen.sim import SimServer, prompt_quality
from agen.sim.open_world import (
    CONSTRAINTS,
    GRAMMAR,
    TOPIC_OF,
    classify_text,
    count_constraints,
    generate_open_prompt,
    open_topic,
    render_constraint,
)
from agen.types import ChatRequest, Example
from conftest import FAST, ROOT

CFG: dict[str, Any] = {"models": {
    "big": {**FAST, "open_skill": 0.75, "format_broken_p": 0.04, "judge_noise": 0.7, "judge_malformed_p": 0.02},
    "small": {**FAST, "open_skill": 0.5},
    "broken": {**FAST, "format_broken_p": 1.0, "judge_malformed_p": 1.0},
}}
SEEDS = [orjson.loads(line)["question"] for line in (ROOT / "data" / "self_instruct_prompts.jsonl").read_bytes().splitlines()]


@pytest.fixture
async def providers(sim: SimServer) -> AsyncIterator[Providers]:
    models = {name: ModelConfig(model=name, base_url=sim.openai_base_url, price=Price(input=1, output=1))
              for name in CFG["models"]}
    async with Providers(models, prices={}) as p:
        yield p


async def ask(providers: Providers, model: str, text: str, *, n: int = 1, seed: int = 0) -> list[str]:
    out = await providers[model].complete(ChatRequest(({"role": "user", "content": text},), max_tokens=2048, n=n,
                                                      seed=seed))
    return list(out.texts)


def propose_prompt(seeds: list[str]) -> str:
    return generation_prompt("open_generate.txt", "open_example.txt",
                             [Example(f"s{i}", q, None) for i, q in enumerate(seeds)])


def test_prompt_quality_from_text() -> None:
    """q is in [0, 1], recomputed from the text; constraints raise it and vague phrasing lowers it."""
    assert prompt_quality("") is None
    rng = random.Random(1)
    topics = [open_topic(rng, cat) for cat in GRAMMAR for _ in range(12)]
    plain = [prompt_quality(f"Write a short story about {t}.") for t in topics]
    rich = [prompt_quality(f"Write a short story about {t}. " + " ".join(render_constraint(rng, i) for i in range(3)))
            for t in topics]
    vague = [prompt_quality(f"Tell me something about {t}.") for t in topics]
    assert all(q is not None and 0 <= q <= 1 for q in plain + rich + vague)
    assert statistics.mean(rich) > statistics.mean(plain) + 0.3 > statistics.mean(vague) + 0.3  # type: ignore[arg-type]
    assert prompt_quality("Write a short story about a robot learning to paint.") == prompt_quality(
        "Write a short story about a robot learning to paint.")


async def test_propose_stays_in_the_seeds_category(providers: Providers) -> None:
    """A generated prompt parses, and its category (by the classification call) is the seeds' category."""
    rng = random.Random(3)
    same = total = 0
    for i in range(40):
        cat = rng.choice(list(GRAMMAR))
        tasks = GRAMMAR[cat][0]
        seeds = [f"{rng.choice(tasks)} {open_topic(rng, cat)}." for _ in range(2)]
        text = (await ask(providers, "big", propose_prompt(seeds), seed=i))[0]
        cand = parse_open_generation(text)
        if isinstance(cand, ParseFailure):
            continue
        reply = (await ask(providers, "small", load_template("classify_category.txt").format(prompt=cand.question)))[0]
        total += 1
        same += parse_category(reply) == cat
    assert total >= 35 and same == total


async def test_broken_model_breaks_format_and_judge(providers: Providers) -> None:
    """format_broken_p=1 never gives a parseable prompt; judge_malformed_p=1 never a parseable score."""
    for i in range(12):
        text = (await ask(providers, "broken", propose_prompt(SEEDS[:2]), seed=i))[0]
        assert isinstance(parse_open_generation(text), ParseFailure)
        judge = load_template("open_judge.txt").format(prompt="Plan a trip.", response="- It depends.")
        assert parse_judge_score((await ask(providers, "broken", judge, seed=i))[0]) is None


async def test_responses_are_deterministic_per_choice(providers: Providers) -> None:
    """Choice i of a request with seed s equals the single choice of a request with seed s+i."""
    text = load_template("open_respond.txt").format(prompt="Write a poem about a robot learning to paint.")
    batch = await ask(providers, "small", text, n=3, seed=100)
    assert batch[2] == (await ask(providers, "small", text, seed=102))[0]
    assert len(set(batch)) == 3


def test_constraints_are_counted_from_the_text() -> None:
    """Every rendering of every constraint template counts once; the count caps nothing by itself."""
    rng = random.Random(4)
    for i in range(len(CONSTRAINTS)):
        for _ in range(20):
            assert count_constraints(render_constraint(rng, i)) == 1
    assert count_constraints(" ".join(render_constraint(rng, i) for i in range(len(CONSTRAINTS)))) == len(CONSTRAINTS)
    assert count_constraints("Write a poem about the sea.") == 0


def test_grammar_phrases_classify_generated_prompts() -> None:
    """No phrase that votes for a category occurs inside another category's phrase, and every
    generated prompt (vague ones included) is classified into the category it was written for."""
    phrases = list(TOPIC_OF.items()) + [(t, c) for c, (tasks, _, _) in GRAMMAR.items() for t in tasks]
    assert not [(a, b) for a, ca in phrases for b, cb in phrases if ca != cb and a in b]
    rng = random.Random(6)
    for cat in GRAMMAR:
        for _ in range(150):
            text = generate_open_prompt(rng, cat, rng.choice((0.0, 0.5, 1.0)))
            assert classify_text(text) == cat, text


def test_generated_prompts_are_rarely_near_duplicates() -> None:
    """A cheap model writing 100 prompts per category: under 6% are near-duplicates (ROUGE-L >= 0.7)
    of an earlier one, as agen's deduper judges them (a real amplify run sees a few percent)."""
    rng = random.Random(8)
    dedup, dups = Deduper(0.7), 0
    for cat in GRAMMAR:
        for i in range(100):
            dups += dedup.check_and_add(generate_open_prompt(rng, cat, 0.5), f"{cat}-{i}") is not None
    assert dups / (100 * len(GRAMMAR)) < 0.06


def test_classifier_reads_self_instruct_seeds() -> None:
    """Every shipped seed gets one of the eight categories, and more than one category is used."""
    cats = {classify_text(q) for q in SEEDS}
    assert cats <= set(CATEGORIES) and len(cats) >= 5


async def test_rip_keeps_better_prompts(providers: Providers) -> None:
    """~300 proposed prompts, K=8 responses each, judged: prompts kept by RIP at the 50th percentiles
    have clearly higher hidden quality than the whole pool."""
    respond_t, judge_t = load_template("open_respond.txt"), load_template("open_judge.txt")
    rng = random.Random(7)
    shots = [rng.sample(SEEDS, 2) for _ in range(300)]
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> tuple[str, Any] | None:
        async with sem:
            cand = parse_open_generation((await ask(providers, "big", propose_prompt(shots[i]), seed=i))[0])
            if isinstance(cand, ParseFailure):
                return None
            responses = await ask(providers, "small", respond_t.format(prompt=cand.question), n=8, seed=1000 * i)
            judged = await asyncio.gather(*(ask(providers, "big", judge_t.format(prompt=cand.question, response=r),
                                                seed=1000 * i + j) for j, r in enumerate(responses)))
            scores = [parse_judge_score(t[0]) for t in judged]
            return cand.question, compute_metrics(scores, [response_length(r) for r in responses])

    pool = [r for r in await asyncio.gather(*(one(i) for i in range(300))) if r is not None]
    thresholds = calibrate([m for _, m in pool], {})
    kept = [q for q, m in pool if keep(m, thresholds)[0]]
    q_all = statistics.mean(prompt_quality(q) or 0.0 for q, _ in pool)
    q_kept = statistics.mean(prompt_quality(q) or 0.0 for q in kept)
    print(f"\nRIP leaf check: {len(pool)} prompts, mean q(all)={q_all:.3f}; "
          f"{len(kept)} kept, mean q(kept)={q_kept:.3f}; thresholds={thresholds}")
    assert len(pool) >= 270 and 0.15 * len(pool) <= len(kept) <= 0.6 * len(pool)
    assert q_kept > q_all + 0.12
