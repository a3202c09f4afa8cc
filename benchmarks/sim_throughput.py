"""Throughput of the simulated provider: requests/s it answers with latency 0, server in its own process.

    .venv/bin/python benchmarks/sim_throughput.py [--seconds 5] [--concurrency 256] [--n 1] [--kind solve]
                                                  [--batch-lines 5000]

Prints a human line and a JSON line. The client (aiohttp on uvloop) shares the machine, so on a
2-core box the number is a floor for what the sim alone can do. `--batch-lines N` also sends the
same bodies as one OpenAI batch of N lines (upload, create, poll, download; batch delay 0) and
prints its lines/s and server CPU per line as ratios to the online figures of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop
import yaml

from agen.sim import SimProcess
from agen.sim.config import DEFAULT_SIM_CONFIG
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


async def one_batch(base: str, payloads: list[bytes], lines: int) -> dict[str, float]:
    """Upload `lines` bodies as a batch input file, create the batch, poll until it ends, fetch its output."""
    data = b"".join(orjson.dumps({"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": orjson.loads(payloads[i % len(payloads)])}) + b"\n" for i in range(lines))
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename="in.jsonl")
        async with http.post(base + "/v1/files", data=form) as r:
            fid = (await r.json())["id"]
        async with http.post(base + "/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                                         "completion_window": "24h"}) as r:
            bid = (await r.json())["id"]
        while True:
            async with http.get(f"{base}/v1/batches/{bid}") as r:
                b = await r.json()
            if b["status"] in ("completed", "failed", "expired", "cancelled"):
                break
            await asyncio.sleep(0.02)
        async with http.get(f"{base}/v1/files/{b['output_file_id']}/content") as r:
            out = await r.read()
    elapsed = time.perf_counter() - t0
    return {"lines": lines, "completed": b["request_counts"]["completed"], "seconds": round(elapsed, 3),
            "lines_per_s": round(lines / elapsed, 1), "output_mb": round(len(out) / 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--n", type=int, default=1, help="choices per request")
    ap.add_argument("--kind", choices=("solve", "propose"), default="solve")
    ap.add_argument("--batch-lines", type=int, default=0, help="also send one OpenAI batch of this many lines")
    args = ap.parse_args()
    payloads = bodies(args.kind, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        sim_yaml = Path(tmp) / "sim.yaml"
        raw = yaml.safe_load(DEFAULT_SIM_CONFIG.read_text())
        raw["batch"] = {"delay_s": 0.0}  # a batch answers its lines as fast as the sim can
        sim_yaml.write_text(yaml.safe_dump(raw))
        with SimProcess(sim_yaml) as sim:
            url = sim.base_url + "/v1/chat/completions"
            uvloop.run(hammer(url, payloads, 0.5, args.concurrency))  # warm-up (caches, connections)
            pid = sim.pid
            cpu0 = _cpu(pid)
            res = uvloop.run(hammer(url, payloads, args.seconds, args.concurrency))
            res["server_cpu_s"] = round(_cpu(pid) - cpu0, 2)
            batch = None
            if args.batch_lines:
                cpu0 = _cpu(pid)
                batch = uvloop.run(one_batch(sim.base_url, payloads, args.batch_lines))
                batch["server_cpu_s"] = round(_cpu(pid) - cpu0, 2)
    res.update(kind=args.kind, n=args.n, concurrency=args.concurrency,
               server_req_per_cpu_s=round(res["requests"] / max(res["server_cpu_s"], 1e-9), 1))
    print(f"sim throughput: {res['req_per_s']} req/s ({args.kind}, n={args.n}, concurrency {args.concurrency}); "
          f"server {res['server_req_per_cpu_s']} req per CPU-second; p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms")
    if batch is not None:
        batch["server_lines_per_cpu_s"] = round(batch["lines"] / max(batch["server_cpu_s"], 1e-9), 1)
        batch["vs_online_per_s"] = round(batch["lines_per_s"] / res["req_per_s"], 2)
        batch["vs_online_per_cpu_s"] = round(batch["server_lines_per_cpu_s"] / res["server_req_per_cpu_s"], 2)
        res["batch"] = batch
        print(f"one batch of {batch['lines']} lines: {batch['lines_per_s']} lines/s "
              f"({batch['vs_online_per_s']}x online req/s), {batch['server_lines_per_cpu_s']} lines per server "
              f"CPU-second ({batch['vs_online_per_cpu_s']}x online), {batch['output_mb']} MB of output")
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
