"""Client CPU per 1,000 requests: agen's lane + client path vs a bare aiohttp+uvloop+orjson loop.

The sim runs in its own process (zero latency, no limits), so `time.process_time()` of this
process measures only the client side. Both paths send the same bodies with the same
concurrency; the bare loop is the floor for a client built on aiohttp (a semaphore, one POST,
orjson in and out). agen's POSTs go through its own HTTP/1.1 pool (`agen/providers/http1.py`),
which costs less than aiohttp's client, so the ratio can be under 1.

    python benchmarks/client_overhead.py [--requests 3000] [--concurrency 32] [--rounds 5] [--slices 6]

Prints a table (median CPU of each path) and one JSON line; the ratio is the median over paired
rounds, since CPU per request moves with machine load. Within a round both paths are open in one
loop and run in alternating slices (`--slices`, order flipped every slice and every round), so a
round's two figures see the same load; the start-up heap is frozen (`gc.freeze`) for both, so a
full collection of it lands in neither. Target: ratio <= 1.25 in every round.

It also measures the memory a request holds while it waits in a lane's queue (tracemalloc, 2,000
requests with a 3 KB prompt behind a lane of concurrency 1; the prompts themselves belong to the
caller and are not counted), against a bare waiter (a task awaiting a semaphore).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
import yaml

from agen.config import ModelConfig
from agen.providers import Providers
from agen.sim.process import SimProcess
from agen.types import ChatRequest

MODEL = "sim-fast"


def request(i: int) -> ChatRequest:
    return ChatRequest(messages=({"role": "system", "content": "Answer briefly."},
                                 {"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}),
                       max_tokens=64, temperature=0.7, stage="bench", task_id=str(i))


async def paired_round(base: str, n: int, conc: int, slices: int, agen_first: bool) -> tuple[list[float], list[float]]:
    """One round: both paths open side by side in one loop, then `slices` alternating slices of
    n/slices requests each (agen, bare, bare, agen, ...), so the two see the same machine load
    within a fraction of a second instead of seconds apart. Returns ([cpu, wall, ok] of agen,
    [cpu, wall, ok] of bare) summed over the slices."""
    models = {"m": ModelConfig(model=MODEL, max_concurrency=conc, max_retries=2)}
    url = base + "/v1/chat/completions"
    calls = 0

    def on_call(_rec: object) -> None:
        nonlocal calls
        calls += 1

    async with Providers(models, base_urls={"m": base + "/v1"}, on_call=on_call) as p, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        client = p["m"]
        sem = asyncio.Semaphore(conc)
        ok = 0

        async def agen_slice(ids: range) -> None:
            queue = iter(ids)

            async def worker() -> None:
                for i in queue:
                    await client.complete(request(i))

            await asyncio.gather(*(worker() for _ in range(conc * 2)))  # 2x workers: the lane queues the rest

        async def bare_slice(ids: range) -> None:
            async def one(i: int) -> None:
                nonlocal ok
                r = request(i)
                body = orjson.dumps({"model": MODEL, "messages": list(r.messages), "max_tokens": r.max_tokens,
                                     "temperature": r.temperature})
                async with sem:
                    async with s.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                        doc = orjson.loads(await resp.read())
                if resp.status == 200 and doc["choices"][0]["message"]["content"] is not None:
                    ok += 1

            await asyncio.gather(*(one(i) for i in ids))

        await agen_slice(range(conc))  # warm both connection pools
        await bare_slice(range(conc))
        calls = ok = 0
        agen, bare = [0.0, 0.0, 0], [0.0, 0.0, 0]
        per = n // slices
        for k in range(slices):
            ids = range(k * per, (k + 1) * per)
            order = [(agen_slice, agen), (bare_slice, bare)]
            if (k % 2 == 0) != agen_first:
                order.reverse()
            for run, acc in order:
                c0, w0 = time.process_time(), time.perf_counter()
                await run(ids)
                acc[0] += time.process_time() - c0
                acc[1] += time.perf_counter() - w0
        agen[2], bare[2] = calls, ok
        return agen, bare


PROMPT = "Here are some example problems.\n" + "Example: a farmer has 12 cows and buys 7 more. " * 64


async def queued_bytes(base: str, n: int = 2000) -> tuple[float, float]:
    """(bytes per request waiting in agen's lane queue, bytes per bare semaphore waiter)."""
    models = {"m": ModelConfig(model=MODEL, max_concurrency=1, max_retries=0)}
    reqs = [ChatRequest(messages=({"role": "user", "content": PROMPT + str(i)},), max_tokens=64,
                        stage="bench", task_id=str(i)) for i in range(n)]

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async with Providers(models, base_urls={"m": base + "/v1"}) as p:
        client = p["m"]
        await client.complete(reqs[0])  # warm: connection, imports
        sem = asyncio.Semaphore(0)

        async def bare(r: ChatRequest) -> None:
            async with sem:
                pass

        async def held(make: Any) -> float:
            gc.collect()
            t0 = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.create_task(make(r)) for r in reqs]
            await settle()  # every task is waiting (agen: one in flight, the rest in the lane queue)
            per = (tracemalloc.get_traced_memory()[0] - t0) / n
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            del tasks
            return per

        tracemalloc.start()
        bare_b = await held(bare)
        agen_b = await held(client.complete)
        tracemalloc.stop()
    return agen_b, bare_b


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="paired rounds; the median ratio is reported")
    ap.add_argument("--slices", type=int, default=6, help="alternating slices per round (same load for both)")
    args = ap.parse_args(argv)
    cfg = {"models": {MODEL: {"latency_ms": {"median": 0, "sigma": 0}}}}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim:
            gc.collect()
            gc.freeze()  # the start-up heap is never scanned again, by either path
            bare, agen = [], []
            for i in range(args.rounds):  # paired rounds, interleaved slices, alternating order
                a_res, b_res = uvloop.run(paired_round(sim.base_url, args.requests, args.concurrency,
                                                       args.slices, agen_first=i % 2 == 0))
                bare.append(b_res)
                agen.append(a_res)
            q_agen, q_bare = uvloop.run(queued_bytes(sim.base_url))
    per_k = lambda r: r[0] / (args.requests // args.slices * args.slices) * 1000  # noqa: E731
    ratios = sorted(per_k(a) / per_k(b) for a, b in zip(agen, bare))
    b = sorted(bare, key=lambda r: r[0])[len(bare) // 2]
    a = sorted(agen, key=lambda r: r[0])[len(agen) // 2]
    result = {"requests": args.requests, "concurrency": args.concurrency, "rounds": args.rounds,
              "bare_cpu_s_per_1k": round(per_k(b), 4), "agen_cpu_s_per_1k": round(per_k(a), 4),
              "ratio": round(ratios[len(ratios) // 2], 3), "ratio_min": round(ratios[0], 3),
              "ratio_max": round(ratios[-1], 3),
              "bare_req_per_s": round(args.requests / b[1], 1), "agen_req_per_s": round(args.requests / a[1], 1),
              "round_ratios": [round(per_k(a) / per_k(b), 3) for a, b in zip(agen, bare)],
              "queued_bytes_per_request": round(q_agen), "bare_waiter_bytes": round(q_bare)}
    print(f"{'path':<26}{'CPU s / 1k req':>16}{'req/s':>10}")
    print(f"{'bare aiohttp+orjson':<26}{result['bare_cpu_s_per_1k']:>16.4f}{result['bare_req_per_s']:>10.1f}")
    print(f"{'agen lane+client':<26}{result['agen_cpu_s_per_1k']:>16.4f}{result['agen_req_per_s']:>10.1f}")
    print(f"ratio agen/bare = {result['ratio']:.3f} (median of {args.rounds} paired rounds; "
          f"range {result['ratio_min']:.3f}-{result['ratio_max']:.3f}; target <= 1.25)")
    print(f"a request waiting in the lane holds {result['queued_bytes_per_request']} bytes "
          f"(a bare semaphore waiter: {result['bare_waiter_bytes']}; target <= 2 KB)")
    print(orjson.dumps({"benchmark": "client_overhead", **result}).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
