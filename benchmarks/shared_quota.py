"""N agen processes on one provider key: one quota shared through Redis vs each process limiting itself.

The sim (its own process) enforces one RPM + TPM limit per model (token buckets, a minute of
capacity, OpenAI-style). For N = 1, 2, 4 worker processes (spawned, each its own event loop and
`Providers` stack, `--workers` concurrent callers each), two ways, each on a fresh sim model:

  shared  every process configures the full limit and `shared_quota:` on one Redis name
  local   every process configures the full limit, no shared quota (the naive way: N-fold)

Each row resets the sim just before it starts, so the buckets start empty (`buckets_start: empty`:
a full bucket, a minute's worth, would flatter anyone); all N processes start together; requests sent in the `--seconds` after a `--warm` warm-up
count. "limit share" is what the server admitted there as a share of its limit (the binding one
of requests and tokens, tokens as it charges them: prompt + max_tokens); "429 share" is 429s per
request sent. Two sim worlds: `headers` (OpenAI-style x-ratelimit-* headers, which each local lane
mirrors) and `no-headers` (the server says nothing but 429 + retry-after).

    python benchmarks/shared_quota.py [--seconds 20] [--warm 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop
import yaml

from agen.config import ModelConfig, Price, SharedQuotaConfig
from agen.providers import Providers
from agen.sim.process import SimProcess
from agen.sim.redis_process import RedisProcess
from agen.types import CallRecord, ChatRequest

MAX_TOKENS = 100
FREE = Price(input=0.0, output=0.0)


def worker(base_url: str, model: str, rpm: float, tpm: float, redis_url: str | None, quota: str,
           start_at: float, seconds: float, callers: int) -> list[tuple[float, str, int]]:
    """One worker process: call back to back until `start_at + seconds` (wall clock); return
    (send time, outcome, tokens the server charges) per attempt."""
    shared = None if redis_url is None else SharedQuotaConfig(url=redis_url, name=quota)
    cfg = ModelConfig(provider="openai", model=model, rpm=rpm, tpm=tpm, max_concurrency=callers,
                      max_retries=50, price=FREE, shared_quota=shared)
    out: list[tuple[float, str, int]] = []

    def on_call(r: CallRecord) -> None:
        out.append((r.ts - r.latency_s, r.outcome, r.usage.input_tokens + MAX_TOKENS))

    async def main() -> None:
        async with Providers({"m": cfg}, base_urls={"m": base_url + "/v1"}, on_call=on_call) as p:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            end = start_at + seconds

            async def caller(c: int) -> None:
                i = 0
                while time.time() < end:
                    await p["m"].complete(ChatRequest(messages=({"role": "user", "content": f"Solve: {c}+{i}?"},),
                                                      max_tokens=MAX_TOKENS, stage="vote", task_id=f"{c}-{i}"))
                    i += 1

            await asyncio.gather(*(caller(c) for c in range(callers)))

    uvloop.run(main())
    return out


def row(attempts: list[tuple[float, str, int]], t0: float, seconds: float, rpm: float, tpm: float) -> dict[str, float]:
    window = [a for a in attempts if t0 <= a[0] < t0 + seconds]
    ok = [a for a in window if a[1] == "ok"]
    req_share = len(ok) / (rpm * seconds / 60)
    tok_share = sum(a[2] for a in ok) / (tpm * seconds / 60)
    return {"sent": len(window), "ok": len(ok), "limit_share": round(max(req_share, tok_share), 4),
            "req_share": round(req_share, 4), "tok_share": round(tok_share, 4),
            "share_429": round(sum(a[1] == "throttle" for a in window) / max(1, len(window)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warm", type=float, default=3.0)
    ap.add_argument("--rpm", type=float, default=1200.0)
    ap.add_argument("--tpm", type=float, default=180_000.0)  # RPM binds; TPM held too
    ap.add_argument("--callers", type=int, default=16, help="concurrent callers per process")
    ap.add_argument("--latency-ms", type=float, default=150.0)
    ap.add_argument("--quick", action="store_true", help="N = 1, 2 only, 4 s: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.warm = 4.0, 1.0
    ns = (1, 2) if args.quick else (1, 2, 4)
    worlds = {"headers": "openai", "no-headers": "none"}
    rows = [(w, n, way) for w in worlds for n in ns for way in ("shared", "local")]
    lat = {"median": args.latency_ms, "sigma": 0.3}
    cfg = {"seed": 1, "models": {f"m{i}": {"latency_ms": lat, "rpm": args.rpm, "tpm": args.tpm,
                                           "buckets_start": "empty", "quirks": {"headers": worlds[w]}}
                                 for i, (w, _, _) in enumerate(rows)}}
    results = []
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as d, RedisProcess() as redis:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim, concurrent.futures.ProcessPoolExecutor(max(ns), mp_context=ctx) as pool:
            list(pool.map(abs, range(max(ns))))  # start the interpreters before any clock runs
            for i, (world, n, way) in enumerate(rows):
                model = f"m{i}"
                start_at = time.time() + 1.5  # every process imported and connected by then
                sim.reset()
                futs = [pool.submit(worker, sim.base_url, model, args.rpm, args.tpm,
                                    redis.url if way == "shared" else None, f"bench-{i}", start_at,
                                    args.warm + args.seconds, args.callers) for _ in range(n)]
                attempts = [a for f in futs for a in f.result()]
                r = row(attempts, start_at + args.warm, args.seconds, args.rpm, args.tpm)
                results.append({"world": world, "processes": n, "quota": way, **r})
                print(f"  {world} N={n} {way}: {r}", file=sys.stderr, flush=True)
    print(f"one RPM {args.rpm:.0f} + TPM {args.tpm:.0f} limit, {args.seconds:.0f} s after {args.warm:.0f} s warm-up, "
          f"{args.callers} callers per process, sim latency {args.latency_ms:.0f} ms")
    print(f"{'world':<11} {'N':>2} {'quota':<7} {'limit share':>11} {'req share':>9} {'tok share':>9} "
          f"{'429 share':>9} {'sent':>6}")
    for r in results:
        print(f"{r['world']:<11} {r['processes']:>2} {r['quota']:<7} {r['limit_share']:>11.1%} {r['req_share']:>9.1%} "
              f"{r['tok_share']:>9.1%} {r['share_429']:>9.1%} {r['sent']:>6}")
    print(orjson.dumps({"benchmark": "shared_quota", "seconds": args.seconds, "rpm": args.rpm, "tpm": args.tpm,
                        "results": results}).decode())


if __name__ == "__main__":
    main()
