"""CPU per 1,000 requests of agen's whole pipeline vs a bare aiohttp+uvloop+orjson loop.

The sim runs in its own process with every model on `sim-fast` (zero latency, no limits), so
`time.process_time()` of this process measures agen alone. The agen row is a real run
(`agen.app.runner.run_session`: lanes, client, ledger, parse, dedup, early-stopped votes with `n`,
group-committed fsynced shards) after a small warm-up run in the same process; its requests are
the ledger's call lines. The bare row sends the same number of requests with the same mix (one
proposal-style body per generation call, one solve body with the pipeline's mean `n` per vote
call) from a semaphore-bounded aiohttp loop: the floor for any Python client. With `--repeat R` the two are measured back to back R times
(each pair sees the same machine load; on a shared machine the load moves between runs) and the
median pair is reported with every pair's ratio. The bare loop is also run under the collector
settings agen's session uses (`app/gc_policy`), so `ratio_same_gc` shows how much of the gap is
agen's code rather than GC tuning any client could do.
`benchmarks/client_overhead.py` measures the lane+client path alone.

    python benchmarks/engine_overhead.py [--accepted 1500] [--repeat 3] [--quick]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
import yaml

from agen.config import parse_config
from agen.run.rundir import read_ledger
from agen.run.shards import read_records
from agen.app.gc_policy import session_gc
from agen.app.runner import EXIT_OK, run_session
from agen.sim.process import SimProcess
from sim_throughput import bodies  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
MODEL = "sim-fast"


class _Counts:
    """fsync/fdatasync calls and thread-pool submits made while counting (the durability path's cost)."""

    def __init__(self) -> None:
        self.fsyncs = self.submits = 0

    @contextlib.contextmanager
    def counting(self):  # type: ignore[no-untyped-def]
        fsync, fdatasync, submit = os.fsync, os.fdatasync, concurrent.futures.ThreadPoolExecutor.submit

        def counted_fsync(fd: int) -> None:
            self.fsyncs += 1
            fsync(fd)

        def counted_fdatasync(fd: int) -> None:
            self.fsyncs += 1
            fdatasync(fd)

        def counted_submit(pool, fn, /, *a, **kw):  # type: ignore[no-untyped-def]
            self.submits += 1
            return submit(pool, fn, *a, **kw)

        os.fsync, os.fdatasync = counted_fsync, counted_fdatasync
        concurrent.futures.ThreadPoolExecutor.submit = counted_submit  # type: ignore[method-assign]
        try:
            yield self
        finally:
            os.fsync, os.fdatasync, concurrent.futures.ThreadPoolExecutor.submit = fsync, fdatasync, submit  # type: ignore[method-assign]


def run_pipeline(out: Path, sim_url: str, proposals: int, amplified: int,
                 counts: _Counts | None = None) -> tuple[float, float, list[dict[str, Any]]]:
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw["seeds"]["path"] = str(ROOT / "data" / "gsm8k_sample.jsonl")
    raw["propose"]["target"], raw["amplify"]["target"] = proposals, amplified
    raw["output"]["dir"] = str(out)
    raw["simulator"] = None
    raw["budget"] = {"usd": 1000.0}
    raw["log_level"] = "error"
    for m in raw["models"].values():
        m.update(model=MODEL, base_url=sim_url + "/v1")
    cfg = parse_config(raw, "engine_overhead")
    c0, w0 = time.process_time(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), (counts or _Counts()).counting():
        res = run_session(cfg, live=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if res.exit_code != EXIT_OK:
        raise SystemExit(f"pipeline run failed: {res.message}")
    return cpu, wall, read_ledger(out).calls


async def run_bare(url: str, payloads: list[bytes], conc: int) -> tuple[float, float, int]:
    sem = asyncio.Semaphore(conc)
    ok = 0
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:

        async def one(body: bytes) -> None:
            nonlocal ok
            async with sem:
                async with s.post(url, data=body, headers=headers) as resp:
                    doc = orjson.loads(await resp.read())
            ok += resp.status == 200 and bool(doc["choices"])

        await asyncio.gather(*(one(b) for b in payloads[:conc]))  # warm the pool
        ok = 0
        c0, w0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(b) for b in payloads))
        return time.process_time() - c0, time.perf_counter() - w0, ok


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accepted", type=int, default=1500, help="accepted examples in the measured run")
    ap.add_argument("--concurrency", type=int, default=64, help="bare loop concurrency")
    ap.add_argument("--repeat", type=int, default=1, help="pipeline/bare pairs, each pair measured back to back")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = ap.parse_args(argv)
    n = 30 if args.quick else args.accepted
    cfg = {"models": {MODEL: {"latency_ms": {"median": 0, "sigma": 0}}}}
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim:
            run_pipeline(Path(d) / "warm", sim.base_url, 2, 8)  # imports, caches, connection pool
            for r in range(max(1, args.repeat)):
                pairs.append(_pair(Path(d) / f"run{r}", sim.base_url, n, args.concurrency))
    result = dict(sorted(pairs, key=lambda p: p["ratio"])[(len(pairs) - 1) // 2])  # the median pair
    result["ratios"] = [p["ratio"] for p in pairs]
    print(f"{result['requests']} requests ({result['generation_calls']} generation, {result['vote_calls']} vote), "
          f"sim-fast in its own process; {len(pairs)} pair(s), the median pair shown")
    print(f"{'path':<34}{'CPU s / 1k req':>16}{'req/s':>10}")
    print(f"{'bare aiohttp+uvloop+orjson':<34}{result['bare_cpu_s_per_1k']:>16.4f}{result['bare_req_per_s']:>10.1f}")
    print(f"{'bare, agen session GC settings':<34}{result['bare_session_gc_cpu_s_per_1k']:>16.4f}{'':>10}")
    print(f"{'agen full pipeline (run_session)':<34}{result['agen_cpu_s_per_1k']:>16.4f}{result['agen_req_per_s']:>10.1f}")
    print(f"ratio agen/bare = {result['ratio']:.2f} (each pair: {', '.join(f'{x:.2f}' for x in result['ratios'])}); "
          f"vs the bare loop with agen's GC settings {result['ratio_same_gc']:.2f}; "
          f"per 1k requests: {result['fsyncs_per_1k']} fsyncs, {result['thread_submits_per_1k']} thread-pool submits")
    print(orjson.dumps({"benchmark": "engine_overhead", **result}).decode())
    sys.stdout.flush()
    return result


def _pair(out: Path, sim_url: str, n: int, concurrency: int) -> dict[str, Any]:
    """One pipeline run and, right after it, the bare loop over the same request count and mix
    (back to back, so both see the same machine load)."""
    counts = _Counts()
    cpu, wall, calls = run_pipeline(out, sim_url, max(2, n // 10), n - max(2, n // 10), counts)
    gen = [c for c in calls if not c["stage"].endswith(".vote")]
    votes = [c for c in calls if c["stage"].endswith(".vote")]
    samples = sum(r["vote"]["samples"] for s in ("accepted", "rejected")
                  for r in read_records(out / s) if r.get("vote"))
    mean_n = max(1, round(samples / max(1, len(votes))))
    prop, solve = bodies("propose", 1), bodies("solve", mean_n)
    payloads = [prop[i % len(prop)] for i in range(len(gen))] + [solve[i % len(solve)] for i in range(len(votes))]
    bcpu, bwall, ok = uvloop.run(run_bare(sim_url + "/v1/chat/completions", payloads, concurrency))
    with session_gc():  # the collector settings agen's session runs with: what of the gap they explain
        gcpu = uvloop.run(run_bare(sim_url + "/v1/chat/completions", payloads, concurrency))[0]
    reqs = len(calls)
    result = {"requests": reqs, "generation_calls": len(gen), "vote_calls": len(votes), "bare_vote_n": mean_n,
              "agen_cpu_s_per_1k": round(cpu / reqs * 1000, 4), "agen_req_per_s": round(reqs / wall, 1),
              "bare_cpu_s_per_1k": round(bcpu / len(payloads) * 1000, 4),
              "bare_req_per_s": round(len(payloads) / bwall, 1), "bare_ok": ok,
              "bare_session_gc_cpu_s_per_1k": round(gcpu / len(payloads) * 1000, 4),
              "fsyncs_per_1k": round(counts.fsyncs / reqs * 1000, 1),
              "thread_submits_per_1k": round(counts.submits / reqs * 1000, 1)}
    result["ratio"] = round(result["agen_cpu_s_per_1k"] / result["bare_cpu_s_per_1k"], 3)
    result["ratio_same_gc"] = round(result["agen_cpu_s_per_1k"] / result["bare_session_gc_cpu_s_per_1k"], 3)
    return result


if __name__ == "__main__":
    main()
