"""The sim's OpenAI Files and Batch APIs, driven by the official `openai` SDK unchanged."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import yaml

from agen.sim import SimProcess, SimServer, start_sim

LIMITED = {"latency_ms": {"median": 0}, "rpm": 1, "tpm": 100}  # online: one tiny request a minute
CFG = {"batch": {"delay_s": 0.3}, "models": {"sim-small": LIMITED, "sim-large": {"latency_ms": {"median": 0}}}}
QUESTION = "Solve the problem. Tom has 3 apples and buys 4 more. How many apples does he have?"


def line(cid: str, model: str = "sim-small", **body: Any) -> dict[str, Any]:
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 400,
                     "seed": 7, **body}}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(x) + b"\n" for x in lines)


def client(sim: SimServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0)


async def submit(c: openai.AsyncOpenAI, lines: list[dict[str, Any]], **kw: Any) -> Any:
    f = await c.files.create(file=("in.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    return await c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  **kw)


async def wait_end(c: openai.AsyncOpenAI, bid: str) -> Any:
    seen = []
    deadline = time.monotonic() + 60  # only a batch that never ends gets there
    while time.monotonic() < deadline:
        b = await c.batches.retrieve(bid)
        if not seen or seen[-1] != b.status:
            seen.append(b.status)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            b.seen = seen  # type: ignore[attr-defined]
            return b
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {bid} never ended: {seen}")


async def read_lines(c: openai.AsyncOpenAI, fid: str | None) -> dict[str, dict[str, Any]]:
    if fid is None:
        return {}
    data = (await c.files.content(fid)).content
    return {x["custom_id"]: x for x in map(orjson.loads, data.splitlines())}


async def batch_stats(sim: SimServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(sim.base_url + "/sim/batch_stats") as r:
        return orjson.loads(await r.read())


@pytest.mark.parametrize("n", [1, 3])
async def test_sdk_batch_round_trip_matches_online(sim: SimServer, n: int) -> None:
    """files.create -> batches.create -> retrieve until completed -> files.content: every line answered as
    the online endpoint answers the same body (same texts and usage, `n` honoured), with the official line shape,
    and none of it counted against the online RPM/TPM (1 request, 100 tokens a minute here)."""
    async with client(sim) as c:
        lines = [line(f"q-{i}", seed=100 + i, n=n) for i in range(5)]
        b = await submit(c, lines, metadata={"run": "abc", "key": "k1"})
        assert b.status == "validating" and b.metadata == {"run": "abc", "key": "k1"}
        assert b.request_counts is not None and b.request_counts.total == 0
        done = await wait_end(c, b.id)
        seen = done.seen  # type: ignore[attr-defined]
        order = ["validating", "in_progress", "finalizing", "completed"]
        assert seen[-1] == "completed" and "in_progress" in seen  # polls every 20 ms over a 300 ms batch
        assert [order.index(x) for x in seen] == sorted(order.index(x) for x in seen)  # never backwards
        assert done.request_counts.total == 5 and done.request_counts.completed == 5
        assert done.error_file_id is None and done.in_progress_at and done.completed_at
        out = await read_lines(c, done.output_file_id)
        meta = await c.files.retrieve(done.output_file_id)
        assert meta.purpose == "batch_output" and meta.bytes > 0
    assert set(out) == {f"q-{i}" for i in range(5)}
    first = out["q-0"]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["request_id"]
    body = first["response"]["body"]
    assert body["object"] == "chat.completion" and len(body["choices"]) == n
    # the same body online (on a sim without the tiny limits) says the same and bills the same
    async with await start_sim({"models": {"sim-small": {"latency_ms": {"median": 0}}}}) as online:
        async with client(online) as c2:
            resp = await c2.chat.completions.create(**lines[0]["body"])
    assert [ch.message.content for ch in resp.choices] == [ch["message"]["content"] for ch in body["choices"]]
    assert resp.usage.prompt_tokens == body["usage"]["prompt_tokens"]
    assert resp.usage.completion_tokens == body["usage"]["completion_tokens"]
    usage = done.usage
    assert usage.input_tokens == sum(x["response"]["body"]["usage"]["prompt_tokens"] for x in out.values())
    s = await batch_stats(sim)
    assert s["submitted"] == {"openai": 1} and s["by_model"]["sim-small"]["lines"] == 5
    assert s["by_model"]["sim-small"]["output_tokens"] == usage.output_tokens
    assert s["resubmitted_custom_ids"] == [] and s["identical_batches"] == 0


async def test_line_errors_go_to_the_error_file(sim: SimServer) -> None:
    """A line the online endpoint would refuse (here: n out of range) is answered with that error in the
    error file, `response.status_code` 400 and `error` null, counted as failed; the other lines complete."""
    async with client(sim) as c:
        b = await submit(c, [line("good"), line("bad", n=0 - 5)])
        done = await wait_end(c, b.id)
        ok, bad = await read_lines(c, done.output_file_id), await read_lines(c, done.error_file_id)
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    assert set(ok) == {"good"} and set(bad) == {"bad"}
    r = bad["bad"]["response"]
    assert r["status_code"] == 400 and r["body"]["error"]["type"] == "invalid_request_error"
    assert bad["bad"]["error"] is None


async def test_invalid_input_file_fails_the_batch(sim: SimServer) -> None:
    """Validation errors fail the whole batch with errors.data naming the code and line; no files written."""
    rows = [line("a"), line("a"), {**line("b"), "url": "/v1/embeddings"}, line("c", model="sim-large")]
    async with client(sim) as c:
        f = await c.files.create(file=("in.jsonl", io.BytesIO(jsonl(rows) + b"not json\n")), purpose="batch")
        b = await c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        done = await wait_end(c, b.id)
    assert done.status == "failed" and done.failed_at and done.output_file_id is None
    codes = {(e.code, e.line) for e in done.errors.data}
    assert codes == {("duplicate_custom_id", 2), ("invalid_url", 3), ("mismatched_model", 4),
                     ("invalid_json_line", 5)}


async def test_create_refuses_bad_arguments(sim: SimServer) -> None:
    """Unknown file, wrong purpose, unsupported endpoint or window: a 400 at create, nothing submitted."""
    async with client(sim) as c:
        f = await c.files.create(file=("x.jsonl", io.BytesIO(jsonl([line("a")]))), purpose="user_data")
        for kw, param in (({"input_file_id": "file-nope"}, "input_file_id"), ({"input_file_id": f.id}, "input_file_id"),
                          ({"input_file_id": f.id, "endpoint": "/v1/images"}, "endpoint"),
                          ({"input_file_id": f.id, "completion_window": "1h"}, "completion_window")):
            args = {"endpoint": "/v1/chat/completions", "completion_window": "24h", **kw}
            with pytest.raises(openai.BadRequestError) as e:
                await c.batches.create(**args)
            assert e.value.param == param
        with pytest.raises(openai.NotFoundError):
            await c.batches.retrieve("batch_nope")
    assert (await batch_stats(sim))["submitted"] == {}


async def test_files_api(sim: SimServer) -> None:
    """files.create / retrieve / content / list / delete, and a 404 for a deleted file."""
    async with client(sim) as c:
        f = await c.files.create(file=("in.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="batch")
        assert (f.object, f.purpose, f.bytes, f.filename) == ("file", "batch", 9, "in.jsonl")
        assert (await c.files.retrieve(f.id)).id == f.id
        assert (await c.files.content(f.id)).content == b'{"a": 1}\n'
        assert [x.id async for x in c.files.list(purpose="batch")] == [f.id]
        d = await c.files.delete(f.id)
        assert d.deleted and d.id == f.id
        with pytest.raises(openai.NotFoundError):
            await c.files.retrieve(f.id)
        with pytest.raises(openai.BadRequestError):
            await c.files.create(file=("in.jsonl", io.BytesIO(b"{}")), purpose="nonsense")  # type: ignore[arg-type]


async def test_list_pages_find_a_batch_by_metadata(sim: SimServer) -> None:
    """batches.list pages newest first with `after`/`limit`; the SDK's auto-pagination sees every batch, so a
    resumed client can find its batch by metadata."""
    async with client(sim) as c:
        ids = [(await submit(c, [line(f"l{i}")], metadata={"key": f"k{i}"})).id for i in range(5)]
        page = await c.batches.list(limit=2)
        assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
        everything = [b async for b in c.batches.list(limit=2)]
        assert [b.id for b in everything] == ids[::-1]
        assert [b.id for b in everything if b.metadata == {"key": "k3"}] == [ids[3]]
        for bid in ids:
            await wait_end(c, bid)


async def test_cancel(sim: SimServer) -> None:
    """cancel -> cancelling -> cancelled; lines never answered are in the error file as batch_cancelled;
    cancelling an ended batch is a 409."""
    async with await start_sim({"batch": {"delay_s": 2.0}, "models": {"sim-small": LIMITED}}) as slow, client(slow) as c:
        b = await submit(c, [line(f"c{i}") for i in range(40)])
        await asyncio.sleep(0.5)
        cb = await c.batches.cancel(b.id)
        assert cb.status == "cancelling" and cb.cancelling_at
        done = await wait_end(c, b.id)
        assert done.status == "cancelled" and done.cancelled_at
        ok, bad = await read_lines(c, done.output_file_id), await read_lines(c, done.error_file_id)
        assert len(ok) + len(bad) == 40 and 0 < len(bad)
        assert {x["error"]["code"] for x in bad.values()} == {"batch_cancelled"}
        assert done.request_counts.completed == len(ok) and done.request_counts.failed == len(bad)
        with pytest.raises(openai.ConflictError):
            await c.batches.cancel(b.id)


@pytest.mark.parametrize("share", [0.0, 0.5])
async def test_expired_batches(share: float) -> None:
    """expire_p 1: the batch ends `expired`; its answered lines (expire_done_share of them) are in the output
    file, the rest in the error file as batch_expired."""
    cfg = {"batch": {"delay_s": 0.2, "expire_p": 1.0, "expire_done_share": share}, "models": {"sim-small": LIMITED}}
    async with await start_sim(cfg) as s, client(s) as c:
        done = await wait_end(c, (await submit(c, [line(f"e{i}") for i in range(10)])).id)
        ok, bad = await read_lines(c, done.output_file_id), await read_lines(c, done.error_file_id)
    assert done.status == "expired" and done.expired_at
    assert len(ok) == int(10 * share) and len(bad) == 10 - int(10 * share)
    assert {x["error"]["code"] for x in bad.values()} == {"batch_expired"}
    assert all(x["response"] is None for x in bad.values())


async def test_line_error_p_and_fail_p() -> None:
    """line_error_p 1: every line answered 500 server_error (error file); fail_p 1: a valid batch ends failed."""
    async with await start_sim({"batch": {"delay_s": 0.1, "line_error_p": 1.0},
                                "models": {"sim-small": LIMITED}}) as s, client(s) as c:
        done = await wait_end(c, (await submit(c, [line("x"), line("y")])).id)
        bad = await read_lines(c, done.error_file_id)
    assert done.status == "completed" and done.output_file_id is None and done.request_counts.failed == 2
    assert {x["response"]["status_code"] for x in bad.values()} == {500}
    assert {x["response"]["body"]["error"]["type"] for x in bad.values()} == {"server_error"}
    async with await start_sim({"batch": {"delay_s": 0.1, "fail_p": 1.0},
                                "models": {"sim-small": LIMITED}}) as s, client(s) as c:
        done = await wait_end(c, (await submit(c, [line("x")])).id)
    assert done.status == "failed" and done.errors.data[0].code == "server_error"


async def test_enqueued_token_limit_fails_the_second_batch() -> None:
    """max_enqueued_tokens (per model): a batch that would exceed what unfinished batches hold fails with
    the official token_limit_exceeded error; once they ended, a new batch fits again."""
    cfg = {"models": {"sim-small": {**LIMITED, "batch": {"delay_s": 0.5, "max_enqueued_tokens": 60}}}}
    async with await start_sim(cfg) as s, client(s) as c:
        first = await submit(c, [line("a"), line("b")])  # 2 x ~18 prompt tokens
        second = await submit(c, [line("c"), line("d")])
        assert (await wait_end(c, first.id)).status == "completed"
        refused = await wait_end(c, second.id)
        assert refused.status == "failed" and refused.errors.data[0].code == "token_limit_exceeded"
        assert "Enqueued token limit reached for sim-small" in refused.errors.data[0].message
        assert (await wait_end(c, (await submit(c, [line("e")])).id)).status == "completed"


async def test_resubmission_is_counted(sim: SimServer) -> None:
    """/sim/batch_stats names custom_ids that were submitted in more than one batch and counts identical
    batches, so a crash test can assert that nothing was submitted twice."""
    async with client(sim) as c:
        for _ in range(2):
            await submit(c, [line("same-1"), line("same-2")])
        await submit(c, [line("same-1"), line("other")])
    s = await batch_stats(sim)
    assert s["submitted"] == {"openai": 3} and s["identical_batches"] == 1
    assert s["resubmitted_custom_ids"] == ["openai:same-1", "openai:same-2"]


async def test_reset_and_restart_forget_batches(sim: SimServer) -> None:
    """Batch state lives in the sim process only: after /sim/reset (as after a restart) the batch is unknown."""
    async with client(sim) as c:
        b = await submit(c, [line("a")])
        async with aiohttp.ClientSession() as http, http.post(sim.base_url + "/sim/reset") as r:
            assert r.status == 200
        with pytest.raises(openai.NotFoundError):
            await c.batches.retrieve(b.id)


async def test_batch_endpoints_want_the_key() -> None:
    async with await start_sim({"require_api_key": "sk-sim-secret", "models": {"sim-small": LIMITED}}) as s:
        async with openai.AsyncOpenAI(base_url=s.openai_base_url, api_key="wrong", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError):
                await c.batches.list()
            with pytest.raises(openai.AuthenticationError):
                await c.files.create(file=("in.jsonl", io.BytesIO(b"{}")), purpose="batch")


async def test_restart_forgets_without_batch_dir_and_resumes_with_it(tmp_path: Path) -> None:
    """Without batch_dir a restarted sim knows no batch; with it, a restarted sim serves the ended batch and its
    files as they were, runs the unfinished one again to the same answers, and keeps the submission counts."""
    base = {"models": {"sim-small": LIMITED}}
    s = await start_sim({**base, "batch": {"delay_s": 0.1}})
    async with client(s) as c:
        gone = await submit(c, [line("a")])
    await s.aclose()
    s = await start_sim({**base, "batch": {"delay_s": 0.1}})
    async with client(s) as c:
        with pytest.raises(openai.NotFoundError):
            await c.batches.retrieve(gone.id)
    await s.aclose()

    kept = {**base, "batch_dir": str(tmp_path / "batches")}
    s = await start_sim({**kept, "batch": {"delay_s": 0.1}})
    async with client(s) as c:
        ended = await wait_end(c, (await submit(c, [line("x", seed=1), line("y", seed=2)], metadata={"k": "1"})).id)
        before = await read_lines(c, ended.output_file_id)
    await s.aclose()
    s = await start_sim({**kept, "batch": {"delay_s": 3.0}})
    async with client(s) as c:
        running = await submit(c, [line("z", seed=3)])
        await asyncio.sleep(0.2)
    await s.aclose()  # stops while `running` is still validating
    s = await start_sim({**kept, "batch": {"delay_s": 0.1}})
    async with client(s) as c:
        again = await c.batches.retrieve(ended.id)
        assert again.status == "completed" and again.metadata == {"k": "1"}
        assert await read_lines(c, again.output_file_id) == before
        done = await wait_end(c, running.id)
        z = await read_lines(c, done.output_file_id)
        assert [b.id async for b in c.batches.list()] == [running.id, ended.id]
    stats = await batch_stats(s)
    await s.aclose()
    assert done.status == "completed" and set(z) == {"z"}
    assert stats["submitted"] == {"openai": 2} and stats["resubmitted_custom_ids"] == []
    async with await start_sim({"models": {"sim-small": {"latency_ms": {"median": 0}}}}) as online, client(online) as c2:
        resp = await c2.chat.completions.create(**line("z", seed=3)["body"])
    assert z["z"]["response"]["body"]["choices"][0]["message"]["content"] == resp.choices[0].message.content


async def test_output_order_is_not_input_order(sim: SimServer) -> None:
    """As the docs warn, output lines come in an order of their own: only custom_id ties them to requests."""
    async with client(sim) as c:
        done = await wait_end(c, (await submit(c, [line(f"o{i:02d}", seed=i) for i in range(30)])).id)
        order = list(await read_lines(c, done.output_file_id))
    assert sorted(order) == [f"o{i:02d}" for i in range(30)] and order != sorted(order)


async def test_batch_api_rpm_limits_polling() -> None:
    """batch_api_rpm: the files/batch routes share one request budget, so a client polling without pause gets
    429s with retry-after (on both wires) instead of free status checks."""
    cfg = {"batch_api_rpm": 3, "batch": {"delay_s": 0.1}, "models": {"sim-small": LIMITED}}
    async with await start_sim(cfg) as s, client(s) as c:
        b = await submit(c, [line("a")])  # 2 requests: file + batch
        await c.batches.retrieve(b.id)
        with pytest.raises(openai.RateLimitError) as e:
            await c.batches.retrieve(b.id)
        assert int(e.value.response.headers["retry-after"]) >= 1
        async with aiohttp.ClientSession() as http, http.get(
                s.base_url + "/v1/messages/batches", headers={"anthropic-version": "2023-06-01"}) as r:
            assert r.status == 429 and (await r.json())["error"]["type"] == "rate_limit_error"


def test_batch_dir_survives_kill_9_of_the_sim_process(tmp_path: Path) -> None:
    """A sim child killed with SIGKILL mid-batch (as the built-in sim dies with agen) and started again on the
    same YAML with batch_dir: the batch is still known, ends completed, and the submission count is kept."""
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(yaml.safe_dump({"batch_dir": str(tmp_path / "kept"), "batch": {"delay_s": 1.5},
                                   "models": {"sim-small": {"latency_ms": {"median": 0}}}}))
    first = SimProcess(cfg).start()
    try:
        c = openai.OpenAI(base_url=first.base_url + "/v1", api_key="x", max_retries=0)
        f = c.files.create(file=("in.jsonl", io.BytesIO(jsonl([line("k1"), line("k2")]))), purpose="batch")
        b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.stop()
    with SimProcess(cfg) as second:
        c = openai.OpenAI(base_url=second.base_url + "/v1", api_key="x", max_retries=0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = c.batches.retrieve(b.id)
            if got.status == "completed":
                break
            time.sleep(0.05)
        assert got.status == "completed" and got.request_counts.completed == 2
        assert c.files.retrieve(f.id).bytes == len(jsonl([line("k1"), line("k2")]))
        with urllib.request.urlopen(second.base_url + "/sim/batch_stats", timeout=10) as r:
            assert orjson.loads(r.read())["submitted"] == {"openai": 1}
