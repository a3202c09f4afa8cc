"""Achieved throughput against a server enforcing RPM/TPM, and the 429 share, for agen's lanes.

The sim runs in its own process and enforces token buckets (capacity one minute, OpenAI-style).
Four scenarios run at once, each on its own sim model and its own lane, with a pool of workers
calling `complete` back to back:

  rpm          client rpm = server rpm                    target: >= 97% of RPM, <= 1% 429s
  tpm          client tpm = server tpm                    target: >= 97% of TPM (as the server
                                                          charges it: prompt + n x max_tokens), <= 1% 429s
  rpm-3x       client rpm = 3 x server rpm                target: <= 5% 429s after --settle seconds
  rpm-3x-aimd  same, but the lane ignores rate-limit headers: only retry-after + AIMD act
  rpm-asyncio-throttle  client rpm = server rpm through asyncio-throttle (Throttler(rpm/60, 1 s),
               8 waiters in front, lane paused on 429): the user's original pick, for comparison

The server's buckets start full (a minute's worth), which would flatter any client; so each
model's buckets are first drained with a bare burst until the sim answers 429, and then the
scenarios run against empty buckets (the steady state of a long run). Throughput is measured
after a short warm-up.

    python benchmarks/rate_limits.py [--seconds 20] [--settle 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import uvloop
import yaml

from asyncio_throttle import Throttler

from agen.config import ModelConfig, Price
from agen.errors import AgenError
from agen.providers import Providers
from agen.providers.lane import Lane, Pacer, Ticket
from agen.sim.process import SimProcess
from agen.types import CallRecord, ChatRequest

MAX_TOKENS = 100
FREE = Price(input=0.0, output=0.0)


@dataclass
class Scenario:
    name: str
    server: dict[str, float]  # rpm / tpm enforced by the sim
    client: dict[str, float]  # rpm / tpm configured in the lane
    header_feedback: bool = True
    throttle_lib: bool = False
    records: list[CallRecord] = field(default_factory=list)


class ThrottlerLane(Lane):
    """asyncio-throttle as the request-rate gate: a semaphore of 8 in front, a pause after a 429."""

    def __init__(self, name: str, rpm: float, workers: int) -> None:
        super().__init__(name, max_concurrency=workers, pacer=Pacer(rpm=None, tpm=None, header_feedback=False))
        self._front = asyncio.Semaphore(8)
        self._throttler = Throttler(rate_limit=max(1, round(rpm / 60)), period=1.0)
        self._paused_until = 0.0

    async def acquire(self, est_tokens: int, *, front: bool = False, out_tokens: int = 0) -> Ticket:
        async with self._front:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._throttler.acquire()
        return await super().acquire(est_tokens, out_tokens=out_tokens)

    def throttled(self, ticket: Ticket, wait_s: float | None) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + (1.0 if wait_s is None else wait_s))


def request(i: int) -> ChatRequest:
    return ChatRequest(messages=({"role": "system", "content": "Answer briefly."},
                                 {"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}),
                       max_tokens=MAX_TOKENS, temperature=0.7, stage="bench", task_id=str(i))


async def drive(p: Providers, sc: Scenario, t0: float, seconds: float, workers: int) -> None:
    client = p[sc.name]
    deadline = t0 + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                await client.complete(request(next(counter)))
            except AgenError:
                pass

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + 5)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def measure(sc: Scenario, t0_wall: float, start: float, end: float) -> dict[str, float]:
    """Rates over [start, end] seconds after t0 (by completion time); 429 share of all attempts there."""
    window = [r for r in sc.records if start <= r.ts - t0_wall < end]
    ok = [r for r in window if r.outcome == "ok"]
    minutes = (end - start) / 60.0
    out: dict[str, float] = {"attempts": len(window), "ok": len(ok),
                             "share_429": round(sum(r.status == 429 for r in window) / max(1, len(window)), 4)}
    if "rpm" in sc.server:
        out["rpm"] = round(len(ok) / minutes, 1)
        out["of_rpm"] = round(len(ok) / minutes / sc.server["rpm"], 4)
    if "tpm" in sc.server:
        charged = sum(r.usage.input_tokens + MAX_TOKENS for r in ok)  # the sim's charge: prompt + n x max_tokens
        out["tpm"] = round(charged / minutes, 1)
        out["of_tpm"] = round(charged / minutes / sc.server["tpm"], 4)
    return out


async def drain(base: str, model: str) -> int:
    """Empty the sim's buckets for `model` with a bare burst (big max_tokens) until it answers 429."""
    url = base + "/v1/chat/completions"
    sent = 0
    async with aiohttp.ClientSession() as s:

        async def one() -> int:
            body = orjson.dumps({"model": model, "max_tokens": 4000,
                                 "messages": [{"role": "user", "content": "drain"}]})
            async with s.post(url, data=body, headers={"content-type": "application/json"}) as r:
                await r.read()
                return r.status

        while True:
            statuses = await asyncio.gather(*(one() for _ in range(50)))
            sent += len(statuses)
            if 429 in statuses:
                return sent


async def run(base: str, scenarios: list[Scenario], seconds: float, warm: float, settle: float,
              workers: int) -> dict[str, dict[str, float]]:
    models = {sc.name: ModelConfig(model=sc.name, max_concurrency=workers, price=FREE, max_retries=20,
                                   **{k: v for k, v in sc.client.items()}) for sc in scenarios}
    by_name = {sc.name: sc for sc in scenarios}

    def on_call(rec: CallRecord) -> None:
        by_name[rec.model].records.append(rec)

    await asyncio.gather(*(drain(base, sc.name) for sc in scenarios))
    async with Providers(models, base_urls={n: base + "/v1" for n in models}, on_call=on_call) as p:
        for sc in scenarios:
            if sc.throttle_lib:
                p[sc.name].lane = ThrottlerLane(sc.name, sc.client["rpm"], workers)
            elif not sc.header_feedback:
                c = p[sc.name]
                c.lane = Lane(sc.name, max_concurrency=workers,
                              pacer=Pacer(rpm=sc.client.get("rpm"), tpm=sc.client.get("tpm"), header_feedback=False))
        t0, t0_wall = time.monotonic(), time.time()
        durations = {sc.name: (settle + seconds if "3x" in sc.name else warm + seconds) for sc in scenarios}
        await asyncio.gather(*(drive(p, sc, t0, durations[sc.name], workers) for sc in scenarios))
        stats = p.statistics()
    out: dict[str, dict[str, float]] = {}
    for sc in scenarios:
        if "3x" in sc.name:
            first = measure(sc, t0_wall, 0, settle)
            res = measure(sc, t0_wall, settle, settle + seconds)
            res["share_429_first"] = first["share_429"]
        else:
            res = measure(sc, t0_wall, warm, warm + seconds)
        res["lane_decreases"] = stats.get(f"{sc.name}/lane/decreases", 0)
        out[sc.name] = res
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window per scenario")
    ap.add_argument("--warm", type=float, default=5.0, help="warm-up before measuring (rpm, tpm)")
    ap.add_argument("--settle", type=float, default=30.0, help="3x scenarios: measure 429s after this")
    ap.add_argument("--rpm", type=float, default=1200.0)
    ap.add_argument("--tpm", type=float, default=60000.0)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=40.0)
    ap.add_argument("--quick", action="store_true", help="3 s windows: a smoke run for the test suite")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.warm, args.settle, args.workers = 3.0, 1.0, 2.0, 16
        args.rpm, args.tpm = 300.0, 20000.0
    rpm, tpm = args.rpm, args.tpm
    scenarios = [
        Scenario("rpm", {"rpm": rpm}, {"rpm": rpm}),
        Scenario("tpm", {"tpm": tpm}, {"tpm": tpm}),
        Scenario("rpm-3x", {"rpm": rpm}, {"rpm": 3 * rpm}),
        Scenario("rpm-3x-aimd", {"rpm": rpm}, {"rpm": 3 * rpm}, header_feedback=False),
        Scenario("rpm-asyncio-throttle", {"rpm": rpm}, {"rpm": rpm}, throttle_lib=True),
    ]
    lat = {"median": args.latency_ms, "sigma": 0.3}
    cfg = {"seed": 1, "models": {sc.name: {"latency_ms": lat, **sc.server} for sc in scenarios}}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim:
            results = uvloop.run(run(sim.base_url, scenarios, args.seconds, args.warm, args.settle, args.workers))
    print(f"{'scenario':<22}{'attempts':>9}{'ok':>7}{'achieved':>12}{'of limit':>10}{'429 share':>11}{'429 early':>11}")
    for name, r in results.items():
        achieved = r.get("rpm", r.get("tpm", 0.0))
        frac = r.get("of_rpm", r.get("of_tpm", 0.0))
        unit = "rpm" if "rpm" in r else "tpm"
        early = f"{r['share_429_first']:.2%}" if "share_429_first" in r else "-"
        print(f"{name:<22}{int(r['attempts']):>9}{int(r['ok']):>7}{achieved:>9.0f}{unit:>3}{frac:>10.2%}"
              f"{r['share_429']:>11.2%}{early:>11}")
    print(orjson.dumps({"benchmark": "rate_limits", "seconds": args.seconds, "settle": args.settle,
                        "rpm_limit": rpm, "tpm_limit": tpm, "results": results}).decode())
    sys.stdout.flush()
    return results


if __name__ == "__main__":
    main()
