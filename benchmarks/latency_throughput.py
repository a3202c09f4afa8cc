"""Achieved requests/s against a 500 ms endpoint as a share of Little's law (concurrency / latency).

The sim runs in its own process with one model answering after exactly --latency-ms (sigma 0, no
limits). agen's `Providers`/`ModelClient` get `max_concurrency = C`, and C workers call `complete`
back to back; completions are counted over a window after a warm-up. With no client overhead the
rate would be C / latency, so the share shows how much the client (and the 2-core machine it
shares with the sim) loses. Target: >= 95% at C = 2,000. For scale, the same C is also run
through a bare aiohttp loop (`sim_throughput.hammer`): the ceiling of this machine and this sim.

    python benchmarks/latency_throughput.py [--concurrency 250,1000,2000] [--seconds 10] [--quick]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop
import yaml

from agen.config import ModelConfig, Price
from agen.providers import Providers
from agen.sim.process import SimProcess
from agen.types import CallRecord, ChatRequest
from sim_throughput import hammer  # benchmarks/ is on sys.path when run as a script

MODEL = "sim-slow"


def raise_nofile(need: int) -> int:
    """Lift the open-files soft limit towards the hard limit (client and sim both hold C sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(need, soft)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def measure(base: str, conc: int, seconds: float, warmup: float) -> dict[str, float]:
    models = {"m": ModelConfig(model=MODEL, max_concurrency=conc, max_retries=2, price=Price(input=0, output=0))}
    done: list[float] = []
    latencies: list[float] = []
    errors = 0

    def on_call(rec: CallRecord) -> None:
        nonlocal errors
        if rec.outcome == "ok":
            done.append(time.perf_counter())
            latencies.append(rec.latency_s)
        else:
            errors += 1

    stop_at = time.perf_counter() + warmup + seconds
    async with Providers(models, base_urls={"m": base + "/v1"}, on_call=on_call) as p:
        client = p["m"]

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < stop_at:
                await client.complete(ChatRequest(messages=({"role": "user", "content": f"Say hello to {i}."},),
                                                  max_tokens=16, stage="bench", task_id=str(i)))
                i += conc

        t_start = time.perf_counter()
        c0 = time.process_time()
        async with asyncio.TaskGroup() as tg:
            for w in range(conc):
                tg.create_task(worker(w))
        cpu = time.process_time() - c0
    a, b = t_start + warmup, t_start + warmup + seconds
    n = sum(1 for t in done if a <= t < b)
    lat = sorted(latencies)
    return {"concurrency": conc, "completed_in_window": n, "req_per_s": round(n / seconds, 1),
            "errors": errors, "client_cpu_s": round(cpu, 2),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="250,1000,2000", help="comma-separated C values")
    ap.add_argument("--latency-ms", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per C")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (C=20, 1 s)")
    args = ap.parse_args(argv)
    if args.quick:
        args.concurrency, args.seconds, args.warmup, args.latency_ms = "20", 1.0, 0.5, 100.0
    concs = [int(c) for c in args.concurrency.split(",")]
    nofile = raise_nofile(2 * max(concs) + 256)
    cfg = {"models": {MODEL: {"latency_ms": {"median": args.latency_ms, "sigma": 0}}}}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim:  # inherits the raised open-files limit
            for c in concs:
                r = uvloop.run(measure(sim.base_url, c, args.seconds, args.warmup))
                ideal = c / (args.latency_ms / 1000)
                r["littles_law_req_per_s"] = round(ideal, 1)
                r["share"] = round(r["req_per_s"] / ideal, 4)
                url = sim.base_url + "/v1/chat/completions"
                bodies = [orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": f"Say hello to {i}."}],
                                        "max_tokens": 16}) for i in range(100)]
                uvloop.run(hammer(url, bodies, args.warmup, c))
                bare = uvloop.run(hammer(url, bodies, args.seconds, c))
                r["bare_req_per_s"] = bare["req_per_s"]
                r["bare_share"] = round(bare["req_per_s"] / ideal, 4)
                rows.append(r)
    print(f"latency {args.latency_ms:.0f} ms (sigma 0), window {args.seconds:.0f} s after {args.warmup:.0f} s "
          f"warm-up, RLIMIT_NOFILE {nofile}")
    print(f"{'C':>6}{'req/s':>10}{'C/latency':>11}{'share':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'client CPU s':>14}{'bare req/s':>12}{'bare share':>11}")
    for r in rows:
        print(f"{r['concurrency']:>6}{r['req_per_s']:>10.1f}{r['littles_law_req_per_s']:>11.1f}{r['share']:>8.1%}"
              f"{r['p50_ms'] or 0:>9.1f}{r['p99_ms'] or 0:>9.1f}{r['errors']:>8}{r['client_cpu_s']:>14.2f}"
              f"{r['bare_req_per_s']:>12.1f}{r['bare_share']:>11.1%}")
    result = {"benchmark": "latency_throughput", "latency_ms": args.latency_ms, "seconds": args.seconds,
              "results": rows, "target": "share >= 0.95 at C = 2000"}
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
