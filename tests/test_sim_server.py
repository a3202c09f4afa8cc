"""The sim over real HTTP: wire formats, exact usage, determinism, errors, scripts, limits, stats."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import aiohttp
import orjson
import pytest

from agen.sim import SimProcess, SimServer, start_sim
from agen.sim.limits import TokenBucket, duration
from agen.sim.model import count_tokens
from agen.sim.world import generate_problem, plausible_wrong, true_answer
from conftest import FAST, script

CFG: dict[str, Any] = {
    "models": {
        "m": {**FAST, "solve_correct_p": 0.8},
        "exact": {**FAST, "solve_correct_p": 1.0, "propose_wrong_p": 0.0, "format_broken_p": 0.0},
        "sloppy": {**FAST, "solve_correct_p": 0.0},
        "rpm2": {**FAST, "rpm": 2},
        "tpm": {**FAST, "tpm": 1000},
        "quota": {**FAST, "faults": {"quota_after": 2}},
        "boom": {**FAST, "faults": {"error_5xx_p": 1.0}},
        "t429": {**FAST, "faults": {"error_429_p": 1.0}},
        "junk": {**FAST, "faults": {"malformed_p": 1.0}},
        "small": {**FAST, "context_window": 50},
    },
    "max_body_bytes": 20_000,
}
AV = {"anthropic-version": "2023-06-01"}
SOLVE = "Solve the following problem. Reason step by step, then give only the final answer inside \\boxed{{}} on the last line.\n\nProblem:\n{q}"


async def oai(http: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with http.post(sim.base_url + "/v1/chat/completions", json=body, headers=headers) as r:
        raw = await r.read()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = raw
        return r.status, data, r.headers


async def ant(http: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with http.post(sim.base_url + "/v1/messages", json=body, headers=AV if headers is None else headers) as r:
        return r.status, orjson.loads(await r.read()), r.headers


async def stats(http: aiohttp.ClientSession, sim: SimServer) -> dict[str, Any]:
    async with http.get(sim.base_url + "/sim/stats") as r:
        return orjson.loads(await r.read())  # type: ignore[no-any-return]


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are careful."}, {"role": "user", "content": text}]


def boxed(text: str) -> str:
    return re.findall(r"\\boxed\{([^}]*)\}", text)[-1]


async def test_openai_happy_path_exact_usage(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """OpenAI shape, n choices billed input once, usage = sim tokenizer counts, stats agree."""
    status, data, headers = await oai(http, sim, {"model": "m", "messages": msgs("Tell me about owls."), "n": 3,
                                                  "seed": 1, "max_tokens": 500, "frequency_penalty": 0.1})
    assert status == 200 and headers["x-request-id"].startswith("req_")
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-") and data["model"] == "m"
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] == "stop" and c["message"]["role"] == "assistant" for c in data["choices"])
    u = data["usage"]
    assert u["prompt_tokens"] == count_tokens("You are careful.") + count_tokens("Tell me about owls.")
    assert u["completion_tokens"] == sum(count_tokens(c["message"]["content"]) for c in data["choices"])
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"] == {"cached_tokens": 0}
    assert u["completion_tokens_details"] == {"reasoning_tokens": 0}
    s = (await stats(http, sim))["m"]
    assert s["requests"] == 1 and s["status"] == {"200": 1}
    assert (s["input_tokens"], s["output_tokens"], s["cached_input_tokens"]) == (
        u["prompt_tokens"], u["completion_tokens"], 0)


async def test_anthropic_happy_path_and_truncation(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """Anthropic shape with block contents; max_tokens cuts the text and sets stop_reason."""
    body = {"model": "m", "max_tokens": 1000, "system": [{"type": "text", "text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello owls"}]}]}
    status, data, headers = await ant(http, sim, body)
    assert status == 200 and headers["request-id"].startswith("req_")
    assert data["type"] == "message" and data["id"].startswith("msg_") and data["stop_reason"] == "end_turn"
    assert data["stop_sequence"] is None and data["content"][0]["type"] == "text"
    assert data["usage"] == {"input_tokens": count_tokens("Be brief.") + count_tokens("Hello owls"),
                             "output_tokens": count_tokens(data["content"][0]["text"]),
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    status, cut, _ = await ant(http, sim, {**body, "max_tokens": 3})
    assert cut["stop_reason"] == "max_tokens" and cut["usage"]["output_tokens"] == 3
    assert count_tokens(cut["content"][0]["text"]) == 3


async def test_n_choices_equal_seeded_samples(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """Choice i of seed=s equals the single choice of seed=s+i; no seed gives varied samples."""
    q, _ = generate_problem(random.Random(1), 4)
    base = {"model": "m", "messages": msgs(SOLVE.format(q=q)), "max_tokens": 400}
    _, many, _ = await oai(http, sim, {**base, "n": 4, "seed": 10})
    singles = [(await oai(http, sim, {**base, "seed": 10 + i}))[1]["choices"][0]["message"]["content"]
               for i in range(4)]
    assert [c["message"]["content"] for c in many["choices"]] == singles
    _, unseeded, _ = await oai(http, sim, {**base, "n": 12})
    assert len({c["message"]["content"] for c in unseeded["choices"]}) > 1


async def test_solve_truth_and_plausible_mistakes(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A perfect solver boxes the true answer; a hopeless one boxes the skewed plausible mistakes."""
    q, a = generate_problem(random.Random(9), 3)
    _, good, _ = await oai(http, sim, {"model": "exact", "messages": msgs(SOLVE.format(q=q)), "n": 8, "seed": 0})
    assert {boxed(c["message"]["content"]) for c in good["choices"]} == {a}
    assert all(c["message"]["content"].rstrip().endswith("\\boxed{%s}" % a) for c in good["choices"])
    _, bad, _ = await oai(http, sim, {"model": "sloppy", "messages": msgs(SOLVE.format(q=q)), "n": 100, "seed": 0})
    answers = [boxed(c["message"]["content"]) for c in bad["choices"]]
    wrong = plausible_wrong(q)
    assert set(answers) <= set(wrong)
    assert answers.count(wrong[0]) > answers.count(wrong[2])


async def test_propose_writes_marked_problem(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A propose prompt gets a CoT and a new grammar problem in the markers, with its true answer."""
    seeds = "\n\n".join(f"Seed Question {i}: {generate_problem(random.Random(i), 3)[0]}" for i in (1, 2))
    prompt = f"Make a question.\n\n{seeds}\n\n[New Question Begin]{{q}}[New Question End]\n\\boxed{{a}}"
    _, data, _ = await oai(http, sim, {"model": "exact", "messages": msgs(prompt), "n": 5, "seed": 3})
    for c in data["choices"]:
        text = c["message"]["content"]
        q = re.search(r"\[New Question Begin\](.*?)\[New Question End\]", text, re.S)
        a = re.search(r"\[Final Answer to New Question Begin\]\\boxed\{(.*?)\}\[Final Answer to New Question End\]",
                      text)
        assert q and a and true_answer(q.group(1)) == a.group(1)


async def test_request_errors_match_providers(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """404 unknown model, 400 missing max_tokens/missing version/context, 413 huge body."""
    status, data, _ = await oai(http, sim, {"model": "nope", "messages": msgs("hi")})
    assert status == 404 and data["error"]["code"] == "model_not_found"
    status, data, headers = await ant(http, sim, {"model": "nope", "max_tokens": 5, "messages": msgs("hi")[1:]})
    assert status == 404 and data["type"] == "error" and data["error"]["type"] == "not_found_error"
    assert data["request_id"] == headers["request-id"]
    status, data, _ = await ant(http, sim, {"model": "m", "messages": msgs("hi")[1:]})
    assert status == 400 and data["error"]["type"] == "invalid_request_error"
    status, data, _ = await ant(http, sim, {"model": "m", "max_tokens": 5, "messages": msgs("hi")[1:]}, headers={})
    assert status == 400 and "anthropic-version" in data["error"]["message"]
    status, data, _ = await oai(http, sim, {"model": "small", "messages": msgs("word " * 60)})
    assert status == 400 and data["error"]["code"] == "context_length_exceeded"
    status, data, _ = await ant(http, sim, {"model": "m", "max_tokens": 5, "messages": msgs("x" * 30_000)[1:]})
    assert status == 413 and data["error"]["type"] == "request_too_large"
    async with http.post(sim.base_url + "/v1/chat/completions", data=b"{not json") as r:
        assert r.status == 400 and "x-request-id" in r.headers
    s = await stats(http, sim)
    assert s["nope"]["status"] == {"404": 2} and s["m"]["status"] == {"400": 2}
    assert s["_unknown"]["status"] == {"400": 1, "413": 1}  # no model could be read from the body


async def test_scripts_fifo(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """Scripted responses are consumed in order before normal processing, in each wire format."""
    await script(http, sim, "m", {"status": 429, "retry_after_s": 0.5, "retry_after_ms": 500},
                 {"status": 200, "body": '{"choices": [', "headers": {"x-extra": "1"}},
                 {"status": 500, "code": "boom", "message": "scripted"}, {"status": 200})
    s1, d1, h1 = await oai(http, sim, {"model": "m", "messages": msgs("hi")})
    assert s1 == 429 and d1["error"]["code"] == "rate_limit_exceeded"
    assert h1["retry-after"] == "0.5" and h1["retry-after-ms"] == "500"
    s2, d2, h2 = await oai(http, sim, {"model": "m", "messages": msgs("hi")})
    assert s2 == 200 and d2 == b'{"choices": [' and h2["x-extra"] == "1"
    s3, d3, _ = await oai(http, sim, {"model": "m", "messages": msgs("hi")})
    assert s3 == 500 and d3["error"] == {"message": "scripted", "type": "server_error", "param": None, "code": "boom"}
    s4, d4, _ = await oai(http, sim, {"model": "m", "messages": msgs("hi")})
    assert s4 == 200 and d4["choices"]
    await script(http, sim, "m", {"status": 529})
    s5, d5, _ = await ant(http, sim, {"model": "m", "max_tokens": 5, "messages": msgs("hi")[1:]})
    assert s5 == 529 and d5["error"]["type"] == "overloaded_error"
    assert (await stats(http, sim))["m"]["status"] == {"200": 2, "429": 1, "500": 1, "529": 1}


async def test_scripted_hang_trips_read_timeout(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """hang_s sends no bytes, so the client's read timeout fires; stats record it as 499."""
    await script(http, sim, "m", {"hang_s": 60})
    with pytest.raises(asyncio.TimeoutError):
        await http.post(sim.base_url + "/v1/chat/completions", json={"model": "m", "messages": msgs("hi")},
                        timeout=aiohttp.ClientTimeout(sock_read=0.2))
    # until the sim has counted the request: 499 once it sees the hang-up; a sim that sat the hang
    # out would count a 200 after 60 s
    while not (await stats(http, sim)).get("m", {}).get("status"):
        await asyncio.sleep(0.02)
    assert (await stats(http, sim))["m"]["status"] == {"499": 1}


async def test_script_replace_drops_what_is_queued(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """`"replace": true` empties a model's queue before adding (hangs nobody consumed are dropped)."""
    await script(http, sim, "m", {"status": 500}, {"status": 500})
    async with http.post(sim.base_url + "/sim/script", json={"model": "m", "responses": [{"status": 503}],
                                                            "replace": True}) as r:
        assert (await r.json())["queued"] == 1
    async with http.post(sim.base_url + "/v1/chat/completions", json={"model": "m", "messages": msgs("hi")}) as r:
        assert r.status == 503
    async with http.post(sim.base_url + "/v1/chat/completions", json={"model": "m", "messages": msgs("hi")}) as r:
        assert r.status == 200


async def test_rate_limits_headers_and_429(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """rpm=2: headers on every response, the third call is a 429 with retry-after; TPM says tokens."""
    body = {"model": "rpm2", "messages": msgs("hi"), "max_tokens": 10}
    s1, _, h1 = await oai(http, sim, body)
    assert s1 == 200 and h1["x-ratelimit-limit-requests"] == "2" and h1["x-ratelimit-remaining-requests"] == "1"
    assert re.fullmatch(r"\d+(\.\d+)?s|\d+ms", h1["x-ratelimit-reset-requests"])
    await oai(http, sim, body)
    s3, d3, h3 = await oai(http, sim, body)
    assert s3 == 429 and d3["error"]["type"] == "requests" and d3["error"]["code"] == "rate_limit_exceeded"
    assert int(h3["retry-after"]) >= 1 and 1 <= int(h3["retry-after-ms"]) <= 30_000
    assert h3["x-ratelimit-remaining-requests"] == "0"
    s4, d4, h4 = await ant(http, sim, {**body, "messages": msgs("hi")[1:]})
    assert s4 == 429 and d4["error"]["type"] == "rate_limit_error" and "retry-after" in h4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", h4["anthropic-ratelimit-requests-reset"])
    t1, _, ht = await oai(http, sim, {"model": "tpm", "messages": msgs("hi"), "max_tokens": 600})
    left = 1000 - 600 - count_tokens("You are careful. hi")
    assert t1 == 200 and left <= int(ht["x-ratelimit-remaining-tokens"]) <= left + 1
    t2, dt, _ = await oai(http, sim, {"model": "tpm", "messages": msgs("hi"), "max_tokens": 600})
    assert t2 == 429 and dt["error"]["type"] == "tokens"
    s5, _, h5 = await oai(http, sim, {**body, "n": "three"})
    assert s5 == 400 and h5["x-ratelimit-limit-requests"] == "2"  # headers on error responses too
    assert (await stats(http, sim))["rpm2"]["status"] == {"200": 2, "400": 1, "429": 2}


def test_token_bucket_and_durations() -> None:
    """The bucket refills at limit/60 per second; durations print in OpenAI's style."""
    b = TokenBucket(60, now=0.0)
    b.take(60)
    assert b.wait_for(1, now=0.0) == pytest.approx(1.0)
    assert b.wait_for(1, now=1.0) == 0.0
    assert b.wait_for(61, now=1.0) == float("inf")
    assert [duration(x) for x in (0.012, 1, 1.5, 360, 90.5)] == ["12ms", "1s", "1.5s", "6m0s", "1m30.5s"]


async def test_quota_after(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """After quota_after calls: OpenAI 429 insufficient_quota, Anthropic 400 credit balance."""
    body = {"model": "quota", "messages": msgs("hi")[1:], "max_tokens": 5}
    assert [(await oai(http, sim, body))[0] for _ in range(2)] == [200, 200]
    status, data, _ = await oai(http, sim, body)
    assert status == 429 and data["error"]["type"] == data["error"]["code"] == "insufficient_quota"
    status, data, _ = await ant(http, sim, body)
    assert status == 400 and data["error"]["type"] == "invalid_request_error"
    assert "credit balance is too low" in data["error"]["message"]


async def test_random_faults(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """Fault probabilities of 1 give 5xx server errors, 429s and malformed 200s."""
    for _ in range(5):
        status, data, _ = await oai(http, sim, {"model": "boom", "messages": msgs("hi")})
        assert status in (500, 502, 503) and data["error"]["type"] == "server_error"
        status, data, _ = await ant(http, sim, {"model": "boom", "max_tokens": 5, "messages": msgs("hi")[1:]})
        assert status in (500, 529) and data["error"]["type"] in ("api_error", "overloaded_error")
    status, data, headers = await oai(http, sim, {"model": "t429", "messages": msgs("hi")})
    assert status == 429 and "retry-after" in headers
    for _ in range(6):
        status, data, _ = await oai(http, sim, {"model": "junk", "messages": msgs("hi")})
        assert status == 200
        assert isinstance(data, bytes) or not data.get("choices")
    assert (await stats(http, sim))["junk"]["input_tokens"] == 0


async def test_require_api_key() -> None:
    """With require_api_key set, a missing or wrong key is a 401 in each wire format."""
    server = await start_sim({**CFG, "require_api_key": "sk-sim-test"})
    try:
        async with aiohttp.ClientSession() as http:
            body = {"model": "m", "messages": msgs("hi")[1:], "max_tokens": 5}
            status, data, _ = await oai(http, server, body)
            assert status == 401 and data["error"]["code"] == "invalid_api_key"
            status, _, _ = await oai(http, server, body, {"Authorization": "Bearer sk-sim-test"})
            assert status == 200
            status, data, _ = await ant(http, server, body, {**AV, "x-api-key": "wrong"})
            assert status == 401 and data["error"]["type"] == "authentication_error"
            status, _, _ = await ant(http, server, body, {**AV, "x-api-key": "sk-sim-test"})
            assert status == 200
    finally:
        await server.aclose()


async def test_prompt_cache_and_reset(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """A repeated >=1024-token prefix is reported cached (inside OpenAI's prompt_tokens, outside
    Anthropic's, where only a cache_control breakpoint caches); /sim/reset empties the cache."""
    long = " ".join(f"w{i}" for i in range(1500))
    _, d1, _ = await oai(http, sim, {"model": "m", "messages": msgs(long), "max_tokens": 20})
    _, d2, _ = await oai(http, sim, {"model": "m", "messages": msgs(long + " tail"), "max_tokens": 20})
    assert d1["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = d2["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and cached % 128 == 0 and cached <= d2["usage"]["prompt_tokens"]
    system = [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}]
    body = {"model": "m", "max_tokens": 20, "system": system, "messages": [{"role": "user", "content": "Be terse."}]}
    _, a1, _ = await ant(http, sim, body)
    _, a2, _ = await ant(http, sim, body)
    total = count_tokens("Be terse.") + count_tokens(long)
    assert a1["usage"]["cache_creation_input_tokens"] == count_tokens(long) and a1["usage"]["cache_read_input_tokens"] == 0
    assert a2["usage"]["cache_read_input_tokens"] == a1["usage"]["cache_creation_input_tokens"]
    assert a2["usage"]["input_tokens"] + a2["usage"]["cache_read_input_tokens"] == total
    s = (await stats(http, sim))["m"]
    assert s["input_tokens"] == d1["usage"]["prompt_tokens"] + d2["usage"]["prompt_tokens"] + 2 * total
    assert s["cached_input_tokens"] == cached + a2["usage"]["cache_read_input_tokens"]
    assert s["cache_write_tokens"] == a1["usage"]["cache_creation_input_tokens"]
    async with http.post(sim.base_url + "/sim/reset") as r:
        assert r.status == 200
    assert await stats(http, sim) == {}
    _, d3, _ = await oai(http, sim, {"model": "m", "messages": msgs(long), "max_tokens": 20})
    assert d3["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


async def test_models_list(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """GET /v1/models lists the configured models in OpenAI's list format."""
    async with http.get(sim.base_url + "/v1/models") as r:
        data = orjson.loads(await r.read())
    assert data["object"] == "list" and {m["id"] for m in data["data"]} == set(CFG["models"])


def test_sim_process_serves() -> None:
    """SimProcess starts `python -m agen.sim` with the shipped config and stops it on exit."""
    import urllib.request

    with SimProcess() as proc:
        assert proc.base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(proc.base_url + "/v1/models", timeout=5) as r:
            ids = {m["id"] for m in orjson.loads(r.read())["data"]}
        assert {"sim-large", "sim-small"} <= ids
        pid = proc.pid
    assert pid is not None and proc.pid is None
