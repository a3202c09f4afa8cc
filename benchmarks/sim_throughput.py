"""Throughput of the simulated provider: requests/s it answers with latency 0, server in its own process.

    .venv/bin/python benchmarks/sim_throughput.py [--seconds 5] [--concurrency 256] [--n 1] [--kind solve]

Prints a human line and a JSON line. The client (aiohttp on uvloop) shares the machine, so on a
2-core box the number is a floor for what the sim alone can do.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time

import aiohttp
import orjson
import uvloop

from agen.sim import SimProcess
from agen.sim.world import generate_problem

SOLVE = ("Solve the following problem. Reason step by step, then give only the final answer inside \\boxed{} on "
         "the last line.\n\nProblem:\n")


def bodies(kind: str, n: int, count: int = 200) -> list[bytes]:
    rng = random.Random(0)
    out = []
    for i in range(count):
        q = generate_problem(rng, rng.randint(2, 5))[0]
        if kind == "propose":
            seeds = "\n\n".join(f"Seed Question {j}: {generate_problem(rng, 3)[0]}" for j in (1, 2))
            text = f"Write a new question.\n\n{seeds}\n\n[New Question Begin]...[New Question End]"
        else:
            text = SOLVE + q
        out.append(orjson.dumps({"model": "sim-fast", "messages": [{"role": "user", "content": text}],
                                 "n": n, "seed": i, "max_tokens": 512, "temperature": 0.7}))
    return out


async def hammer(url: str, payloads: list[bytes], seconds: float, concurrency: int) -> dict[str, float]:
    done = errors = 0
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=conn) as http:

        async def worker(w: int) -> None:
            nonlocal done, errors
            i = w
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                async with http.post(url, data=payloads[i % len(payloads)], headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)
                done += 1
                i += concurrency

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for w in range(concurrency):
                tg.create_task(worker(w))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"requests": done, "errors": errors, "seconds": round(elapsed, 3), "req_per_s": round(done / elapsed, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--n", type=int, default=1, help="choices per request")
    ap.add_argument("--kind", choices=("solve", "propose"), default="solve")
    args = ap.parse_args()
    payloads = bodies(args.kind, args.n)
    with SimProcess() as sim:
        url = sim.base_url + "/v1/chat/completions"
        uvloop.run(hammer(url, payloads, 0.5, args.concurrency))  # warm-up (caches, connections)
        pid = sim.pid
        cpu0 = _cpu(pid)
        res = uvloop.run(hammer(url, payloads, args.seconds, args.concurrency))
        res["server_cpu_s"] = round(_cpu(pid) - cpu0, 2)
    res.update(kind=args.kind, n=args.n, concurrency=args.concurrency,
               server_req_per_cpu_s=round(res["requests"] / max(res["server_cpu_s"], 1e-9), 1))
    print(f"sim throughput: {res['req_per_s']} req/s ({args.kind}, n={args.n}, concurrency {args.concurrency}); "
          f"server {res['server_req_per_cpu_s']} req per CPU-second; p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms")
    print(orjson.dumps({"benchmark": "sim_throughput", **res}).decode())


def _cpu(pid: int | None) -> float:
    """User+system CPU seconds of a process, from /proc (Linux)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(resource.getpagesize() and __import__("os").sysconf("SC_CLK_TCK"))
    except OSError:
        return 0.0


if __name__ == "__main__":
    main()
