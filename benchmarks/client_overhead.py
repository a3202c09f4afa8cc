"""Client CPU per 1,000 requests: agen's lane + client path vs a bare aiohttp+uvloop+orjson loop.

The sim runs in its own process (zero latency, no limits), so `time.process_time()` of this
process measures only the client side. Both paths send the same bodies with the same
concurrency; the bare loop is the floor (a semaphore, one POST, orjson in and out).

    python benchmarks/client_overhead.py [--requests 3000] [--concurrency 32] [--rounds 5]

Prints a table (median CPU of each path) and one JSON line; the ratio is the median over paired,
order-alternating rounds, since CPU per request moves with machine load. Target: ratio <= 1.5.

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


async def run_agen(base: str, n: int, conc: int) -> tuple[float, float, int]:
    models = {"m": ModelConfig(model=MODEL, max_concurrency=conc, max_retries=2)}
    calls = 0

    def on_call(_rec: object) -> None:
        nonlocal calls
        calls += 1

    async with Providers(models, base_urls={"m": base + "/v1"}, on_call=on_call) as p:
        client = p["m"]
        queue = iter(range(n))

        async def worker() -> None:
            for i in queue:
                await client.complete(request(i))

        await asyncio.gather(*(worker() for _ in range(conc)))  # warm the connection pool
        queue = iter(range(n))
        c0, w0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc * 2)))  # 2x workers: the lane queues the rest
        return time.process_time() - c0, time.perf_counter() - w0, calls


async def run_bare(base: str, n: int, conc: int) -> tuple[float, float, int]:
    url = base + "/v1/chat/completions"
    sem = asyncio.Semaphore(conc)
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:

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

        await asyncio.gather(*(one(i) for i in range(conc)))
        c0, w0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.process_time() - c0, time.perf_counter() - w0, ok


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
    args = ap.parse_args(argv)
    cfg = {"models": {MODEL: {"latency_ms": {"median": 0, "sigma": 0}}}}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim:
            bare, agen = [], []
            for i in range(args.rounds):  # paired rounds, alternating order
                pair = [lambda: uvloop.run(run_bare(sim.base_url, args.requests, args.concurrency)),
                        lambda: uvloop.run(run_agen(sim.base_url, args.requests, args.concurrency))]
                if i % 2:
                    a_res, b_res = pair[1](), pair[0]()
                else:
                    b_res, a_res = pair[0](), pair[1]()
                bare.append(b_res)
                agen.append(a_res)
            q_agen, q_bare = uvloop.run(queued_bytes(sim.base_url))
    per_k = lambda r: r[0] / args.requests * 1000  # noqa: E731
    ratios = sorted(per_k(a) / per_k(b) for a, b in zip(agen, bare))
    b = sorted(bare, key=lambda r: r[0])[len(bare) // 2]
    a = sorted(agen, key=lambda r: r[0])[len(agen) // 2]
    result = {"requests": args.requests, "concurrency": args.concurrency, "rounds": args.rounds,
              "bare_cpu_s_per_1k": round(per_k(b), 4), "agen_cpu_s_per_1k": round(per_k(a), 4),
              "ratio": round(ratios[len(ratios) // 2], 3), "ratio_min": round(ratios[0], 3),
              "ratio_max": round(ratios[-1], 3),
              "bare_req_per_s": round(args.requests / b[1], 1), "agen_req_per_s": round(args.requests / a[1], 1),
              "queued_bytes_per_request": round(q_agen), "bare_waiter_bytes": round(q_bare)}
    print(f"{'path':<26}{'CPU s / 1k req':>16}{'req/s':>10}")
    print(f"{'bare aiohttp+orjson':<26}{result['bare_cpu_s_per_1k']:>16.4f}{result['bare_req_per_s']:>10.1f}")
    print(f"{'agen lane+client':<26}{result['agen_cpu_s_per_1k']:>16.4f}{result['agen_req_per_s']:>10.1f}")
    print(f"ratio agen/bare = {result['ratio']:.3f} (median of {args.rounds} paired rounds; "
          f"range {result['ratio_min']:.3f}-{result['ratio_max']:.3f}; target <= 1.5)")
    print(f"a request waiting in the lane holds {result['queued_bytes_per_request']} bytes "
          f"(a bare semaphore waiter: {result['bare_waiter_bytes']}; target <= 2 KB)")
    print(orjson.dumps({"benchmark": "client_overhead", **result}).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
