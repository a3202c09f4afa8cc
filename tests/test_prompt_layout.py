"""Cache-aware prompt layout, Anthropic cache_control marking, and what caching saved."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest

from agen.config import Price, parse_config
from agen.cost import CostBook, cache_saved_usd, cost_usd
from agen.gen.prompts import (generation_messages, generation_prompt, layout_messages, load_template,
                              split_template, static_prefix)
from agen.providers.prompt_cache import anthropic_min_tokens
from agen.providers.wire import anthropic_body, openai_body
from agen.types import CallRecord, ChatRequest, Example, Usage
from agen.sim import SimServer
from conftest import FAST, quick_raw

CFG = {"models": {"m": FAST}}

SHOTS = [Example("s1", "Tom has 3 apples and buys 4 more. How many now?", "7"),
         Example("s2", "A train goes 60 km in 1.5 hours. What is its speed?", "40")]


def test_layout_puts_the_static_instructions_first_and_the_examples_last() -> None:
    """With the layout: a system message holding every instruction and no example, then the examples;
    the system message is the same whatever examples are shown. Without: the template as written."""
    on = generation_messages("verifiable_generate.txt", "verifiable_example.txt", SHOTS, True)
    other = generation_messages("verifiable_generate.txt", "verifiable_example.txt", SHOTS[::-1], True)
    assert [m["role"] for m in on] == ["system", "user"]
    assert on[0] == other[0] and on[1] != other[1]
    assert "Tom has" not in on[0]["content"] and "[New Question Begin]" in on[0]["content"]
    assert on[1]["content"].startswith("Seed Question 1: Tom has")
    off = generation_messages("verifiable_generate.txt", "verifiable_example.txt", SHOTS, False)
    assert off == ({"role": "user", "content": generation_prompt("verifiable_generate.txt", "verifiable_example.txt",
                                                                  SHOTS)},)
    words = set(off[0]["content"].split())  # nothing is lost or added, only moved
    assert words == set((on[0]["content"] + " " + on[1]["content"]).split())


async def test_the_sim_reads_every_shown_example_in_either_layout(sim: SimServer) -> None:
    """The sim reads the examples a proposer is shown from the request's text: in the layout the
    first example starts the user message and must still be read (it once was not, which made
    layout-on runs cheaper for a reason that had nothing to do with caching)."""
    async with aiohttp.ClientSession() as http:
        for layout in (True, False):
            msgs = generation_messages("verifiable_generate.txt", "verifiable_example.txt", SHOTS, layout)
            body = {"model": "m", "max_tokens": 512, "messages": list(msgs), "seed": 1}
            async with http.post(sim.openai_base_url + "/chat/completions", json=body) as r:
                text = orjson.loads(await r.read())["choices"][0]["message"]["content"]
            assert text.startswith("Analysis: the 2 seed questions"), (layout, text[:60])


def test_split_rule_keeps_marked_blocks_together() -> None:
    """A lone block placeholder (`{examples}`) lets the paragraphs after it join the static part; an
    inline one (the judge's markers) ends the static part at the paragraph before it."""
    solve = split_template(load_template("verifiable_solve.txt"))
    assert solve.variable == "Problem:\n{question}" and "\\boxed{}" in solve.static
    judge = split_template(load_template("open_judge.txt"))
    assert judge.static.startswith("You are an impartial judge") and "{prompt}" not in judge.static
    assert judge.variable.startswith("[User Request Begin]") and "Score: N" in judge.variable
    msgs = layout_messages("open_judge.txt", True, prompt="Write a haiku.", response="Snow falls.")
    assert msgs[0]["role"] == "system" and "[User Request Begin]\nWrite a haiku." in msgs[1]["content"]
    assert static_prefix("verifiable_example.txt") == ""  # nothing static before its placeholders


def test_cache_layout_is_output_defining(tmp_path: Path) -> None:
    """Switching the layout changes the run's fingerprint (a resume across it is refused)."""
    raw = quick_raw(tmp_path)
    on = parse_config({**raw, "prompts": {"cache_layout": True}})
    off = parse_config({**raw, "prompts": {"cache_layout": False}})
    assert on.prompts.cache_layout and on.fingerprint() == parse_config(raw).fingerprint()
    assert on.fingerprint() != off.fingerprint()


@pytest.mark.parametrize("model,minimum", [("claude-sonnet-4-5", 1024), ("claude-opus-4-1", 1024),
                                           ("claude-3-5-haiku-latest", 2048), ("claude-haiku-4-5", 4096),
                                           ("claude-opus-4-5", 4096), ("sim-large", 1024)])
def test_anthropic_minimum_by_model(model: str, minimum: int) -> None:
    assert anthropic_min_tokens(model) == minimum
    assert anthropic_min_tokens(model, override=333) == 333


def test_cache_control_only_when_the_static_prefix_is_long_enough() -> None:
    """A system prompt estimated at or over the model's minimum goes as one block marked ephemeral;
    a shorter one stays a plain string; the OpenAI body never carries cache_control."""
    def req(system: str) -> ChatRequest:
        return ChatRequest(({"role": "system", "content": system}, {"role": "user", "content": "Q"}), 64)
    long = "x" * (4 * 1024)
    body = anthropic_body(req(long), "claude-sonnet-4-5", {}, anthropic_min_tokens("claude-sonnet-4-5"))
    assert body["system"] == [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": "Q"}]
    short = anthropic_body(req(long[:-4]), "claude-sonnet-4-5", {}, 1024)
    assert short["system"] == long[:-4]
    haiku = anthropic_body(req(long), "claude-3-5-haiku-latest", {}, anthropic_min_tokens("claude-3-5-haiku-latest"))
    assert haiku["system"] == long  # under Haiku's 2,048: a breakpoint would cache nothing
    assert "cache_control" not in str(openai_body(req(long), "gpt-4o", {}, 1))


def test_cost_and_savings_with_cache_writes_and_reads() -> None:
    """Anthropic-style prices: a write costs 1.25x input, a read 0.1x; savings are net of writes."""
    price = Price(input=3.0, cached_input=0.3, cache_write=3.75, output=15.0)
    write = Usage(input_tokens=2000, cached_input_tokens=0, cache_write_tokens=1500, output_tokens=100)
    read = Usage(input_tokens=2000, cached_input_tokens=1500, cache_write_tokens=0, output_tokens=100)
    assert cost_usd(write, price) == pytest.approx((500 * 3.0 + 1500 * 3.75 + 100 * 15.0) / 1e6)
    assert cost_usd(read, price) == pytest.approx((500 * 3.0 + 1500 * 0.3 + 100 * 15.0) / 1e6)
    assert cache_saved_usd(write, price) == pytest.approx(-1500 * 0.75 / 1e6)
    assert cache_saved_usd(read, price) == pytest.approx(1500 * 2.7 / 1e6)
    book = CostBook()
    for u in (write, read):
        book.add(CallRecord(0.0, "m", "amplify.vote", "t", "ok", 200, u, cost_usd(u, price), 0.1,
                            saved_usd=cache_saved_usd(u, price)))
    snap = book.snapshot()["by_stage"]["amplify.vote"]
    assert snap["cache_hit_share"] == 0.375  # 1,500 of 4,000 prompt tokens
    assert snap["cache_saved_usd"] == pytest.approx(1500 * (2.7 - 0.75) / 1e6)
    no_cache = Usage(input_tokens=4000, output_tokens=200)
    assert cost_usd(no_cache, price) - snap["cost_usd"] == pytest.approx(snap["cache_saved_usd"])
