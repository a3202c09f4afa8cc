"""Achieved requests/s against a 500 ms endpoint as a share of Little's law (concurrency / latency).

The sim runs in its own process with one model answering after exactly --latency-ms (sigma 0, no
limits). agen's `Providers`/`ModelClient` get `max_concurrency = C`, and C workers call `complete`
back to back; completions are counted over a window after a warm-up (connections open during the
warm-up and are reused after it). With no client overhead the rate would be C / latency, so the
share shows how much is lost. Target: >= 95% at C = 2,000. For scale, the same C is also run
through a bare aiohttp loop, measured the same way: the ceiling of this machine and this sim.

Every row also says what the rate costs in CPU: client and sim CPU-ms per request over the window.
A share below target is latency-bound only if the machine could do the rate at all:

    client ceiling = 1000 / client CPU-ms      (one event loop, one core at most)
    sim ceiling    = 1000 / sim CPU-ms         (the sim is one event loop too)
    machine        = 1000 x cores / (client + sim CPU-ms)

and `cpu_ceiling_req_per_s` is the smallest. When C / latency is above it the target is not
reachable on this machine whatever the client does, so the script also runs the latency-bound
regime: C = --bound-concurrency at --bound-latency-ms, a rate that fits the CPU (`latency_bound`).

    python benchmarks/latency_throughput.py [--concurrency 250,1000,2000] [--seconds 10] [--quick]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop
import yaml

from agen.config import ModelConfig, Price
from agen.providers import Providers
from agen.sim.process import SimProcess
from agen.types import CallRecord, ChatRequest

MODEL = "sim-slow"


def raise_nofile(need: int) -> int:
    """Lift the open-files soft limit towards the hard limit (client and sim both hold C sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(need, soft)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_cpu_s(pid: int | None) -> float:
    """User+system CPU seconds of a process, from /proc (Linux; 0.0 elsewhere)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _pct(xs: list[float], q: float) -> float | None:
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] * 1000, 1) if xs else None


async def measure(base: str, conc: int, seconds: float, warmup: float, sim_pid: int | None,
                  bare: bool = False, stagger_s: float = 0.0) -> dict[str, float | int | None]:
    """C workers back to back for warm-up + window; rate, latencies and CPU over the window only.

    Worker w starts at w/C x `stagger_s`: with a latency of exactly L, C workers started together
    stay in one burst forever (each comes back L after it left), and every burst queues behind
    its own CPU work; started over one L they arrive evenly, the steady state Little's law means.
    """
    done: list[float] = []
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + warmup + seconds
    lags: list[float] = []
    marks: dict[str, tuple[float, float, int]] = {}

    def on_call(rec: CallRecord) -> None:
        nonlocal errors
        if rec.outcome == "ok":
            done.append(time.perf_counter())
            latencies.append(rec.latency_s)
        else:
            errors += 1

    async def window() -> None:
        """CPU of both processes at the window's edges; event-loop lag (how late a 20 ms sleep wakes)."""
        loop = asyncio.get_running_loop()
        t_a = loop.time() + warmup
        while loop.time() < t_a:
            await asyncio.sleep(0.02)
        marks["a"] = (time.process_time(), proc_cpu_s(sim_pid), len(latencies))
        t_b = t_a + seconds
        while (t := loop.time()) < t_b:
            await asyncio.sleep(0.02)
            lags.append(loop.time() - t - 0.02)
        marks["b"] = (time.process_time(), proc_cpu_s(sim_pid), len(latencies))

    if bare:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc))
        url = base + "/v1/chat/completions"
        headers = {"content-type": "application/json"}

        async def call(i: int) -> None:
            nonlocal errors
            body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": f"Say hello to {i}."}],
                                 "max_tokens": 16})
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                ok = r.status == 200
            if ok:
                done.append(time.perf_counter())
                latencies.append(done[-1] - t0)
            else:
                errors += 1
        close = session.close
    else:
        models = {"m": ModelConfig(model=MODEL, max_concurrency=conc, max_retries=2, price=Price(input=0, output=0))}
        providers = await Providers(models, base_urls={"m": base + "/v1"}, on_call=on_call).__aenter__()
        client = providers["m"]

        async def call(i: int) -> None:
            await client.complete(ChatRequest(messages=({"role": "user", "content": f"Say hello to {i}."},),
                                              max_tokens=16, stage="bench", task_id=str(i)))
        close = providers.aclose

    async def worker(w: int) -> None:
        i = w
        if stagger_s:
            await asyncio.sleep(stagger_s * w / conc)
        while time.perf_counter() < stop_at:
            await call(i)
            i += conc

    t_start = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(window())
            for w in range(conc):
                tg.create_task(worker(w))
    finally:
        await close()
    a, b = t_start + warmup, t_start + warmup + seconds
    n = sum(1 for t in done if a <= t < b)
    lat = sorted(latencies[marks["a"][2]:marks["b"][2]])
    lags.sort()
    client_ms = (marks["b"][0] - marks["a"][0]) * 1000 / max(n, 1)
    sim_ms = (marks["b"][1] - marks["a"][1]) * 1000 / max(n, 1)
    return {"concurrency": conc, "completed_in_window": n, "req_per_s": round(n / seconds, 1), "errors": errors,
            "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
            "client_cpu_ms_per_req": round(client_ms, 3), "sim_cpu_ms_per_req": round(sim_ms, 3),
            "client_loop_lag_p99_ms": _pct(lags, 0.99)}


def cpu_ceiling(client_ms: float, sim_ms: float, cores: int) -> float:
    """Requests/s the CPU allows: each event loop gets one core at most, both share `cores`."""
    if client_ms <= 0 or sim_ms <= 0:
        return float("inf")
    return min(1000 / client_ms, 1000 / sim_ms, 1000 * cores / (client_ms + sim_ms))


def run_at(latency_ms: float, concs: list[int], seconds: float, warmup: float, with_bare: bool) -> list[dict]:
    stagger = latency_ms / 1000
    warmup = max(warmup, 2 * stagger + 1)  # every worker has started and come back once
    cores = os.cpu_count() or 1
    cfg = {"models": {MODEL: {"latency_ms": {"median": latency_ms, "sigma": 0}}}}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim:  # inherits the raised open-files limit (and raises its own)
            for c in concs:
                r = uvloop.run(measure(sim.base_url, c, seconds, warmup, sim.pid, stagger_s=stagger))
                ideal = c / (latency_ms / 1000)
                ceiling = cpu_ceiling(r["client_cpu_ms_per_req"], r["sim_cpu_ms_per_req"], cores)  # type: ignore[arg-type]
                r.update(latency_ms=latency_ms, warmup_s=warmup, littles_law_req_per_s=round(ideal, 1),
                         share=round(r["req_per_s"] / ideal, 4),  # type: ignore[operator]
                         cpu_ceiling_req_per_s=round(ceiling, 1) if ceiling != float("inf") else None,
                         # CPU the Little's-law rate would take, in cores (client + sim), and the
                         # client's own event loop as a share of one core
                         cores_needed=round(ideal * (r["client_cpu_ms_per_req"] + r["sim_cpu_ms_per_req"]) / 1000, 2),  # type: ignore[operator]
                         client_core_needed=round(ideal * r["client_cpu_ms_per_req"] / 1000, 2),  # type: ignore[operator]
                         cpu_bound=bool(ideal > ceiling))
                if with_bare:
                    bare = uvloop.run(measure(sim.base_url, c, seconds, warmup, sim.pid, bare=True, stagger_s=stagger))
                    r["bare_req_per_s"] = bare["req_per_s"]
                    r["bare_share"] = round(bare["req_per_s"] / ideal, 4)  # type: ignore[operator]
                    r["bare_client_cpu_ms_per_req"] = bare["client_cpu_ms_per_req"]
                rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="250,1000,2000", help="comma-separated C values")
    ap.add_argument("--latency-ms", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per C")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--bound-concurrency", type=int, default=2000,
                    help="C of the latency-bound run (0: skip it)")
    ap.add_argument("--bound-latency-ms", type=float, default=2000.0,
                    help="latency of the latency-bound run: pick C/latency well under the CPU ceiling")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare aiohttp loop")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (C=20, 1 s)")
    args = ap.parse_args(argv)
    if args.quick:
        args.concurrency, args.seconds, args.warmup, args.latency_ms = "20", 1.0, 0.5, 100.0
        args.bound_concurrency, args.bound_latency_ms = 20, 200.0
    concs = [int(c) for c in args.concurrency.split(",")]
    nofile = raise_nofile(2 * max(concs + [args.bound_concurrency]) + 256)
    rows = run_at(args.latency_ms, concs, args.seconds, args.warmup, not args.no_bare)
    bound = (run_at(args.bound_latency_ms, [args.bound_concurrency], args.seconds, args.warmup, False)[0]
             if args.bound_concurrency else None)
    print(f"window {args.seconds:g} s after a warm-up of max({args.warmup:g} s, 2 x latency + 1 s), workers started "
          f"evenly over one latency, sim latency sigma 0, "
          f"RLIMIT_NOFILE {nofile}, {os.cpu_count()} cores; CPU = CPU-ms per request over the window")
    print(f"{'latency':>8}{'C':>6}{'req/s':>9}{'C/lat':>8}{'share':>8}{'p50 ms':>8}{'p99 ms':>8}{'err':>5}"
          f"{'client':>8}{'sim':>7}{'ceiling':>9}{'cores':>7}{'bare r/s':>10}{'bare':>7}")
    for r in rows + ([bound] if bound else []):
        bare = (f"{r['bare_req_per_s']:>10.1f}{r['bare_share']:>7.1%}" if "bare_req_per_s" in r else f"{'-':>10}{'-':>7}")
        print(f"{r['latency_ms']:>8.0f}{r['concurrency']:>6}{r['req_per_s']:>9.1f}{r['littles_law_req_per_s']:>8.0f}"
              f"{r['share']:>8.1%}{r['p50_ms'] or 0:>8.0f}{r['p99_ms'] or 0:>8.0f}{r['errors']:>5}"
              f"{r['client_cpu_ms_per_req']:>8.3f}{r['sim_cpu_ms_per_req']:>7.3f}"
              f"{r['cpu_ceiling_req_per_s'] or 0:>9.0f}{r['cores_needed']:>7.2f}{bare}")
    print("client/sim: CPU-ms per request; ceiling: req/s the CPU allows (see the docstring); cores: CPU that "
          "C/latency would take")
    for r in rows:
        if r["cpu_bound"]:
            print(f"C={r['concurrency']} at {r['latency_ms']:.0f} ms asks {r['littles_law_req_per_s']:.0f} req/s: "
                  f"{r['cores_needed']:.2f} cores of CPU ({r['client_core_needed']:.2f} of them in the client's one "
                  f"event loop) against a ceiling of {r['cpu_ceiling_req_per_s']:.0f} req/s: CPU-bound, not latency-bound")
    if bound:
        print(f"latency-bound regime: C={bound['concurrency']} at {bound['latency_ms']:.0f} ms: "
              f"{bound['req_per_s']:.0f} of {bound['littles_law_req_per_s']:.0f} req/s = {bound['share']:.1%}")
    result = {"benchmark": "latency_throughput", "latency_ms": args.latency_ms, "seconds": args.seconds,
              "cores": os.cpu_count(), "results": rows, "latency_bound": bound,
              "target": "share >= 0.95 at C = 2000"}
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
