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

Endpoints in the wild (issue 9), measured in the same run; requests are real propose prompts
(two GSM8K seeds, the shipped template) at the default propose max_tokens (1024):

  tpm-usage    the server charges real usage (prompt + completion, after the answer)
                                                          target: >= 97% of TPM as it charges, <= 1% 429s
  tpm-upfront  the server charges prompt + max_tokens at admission (OpenAI)   same targets
  tpm-usage-naive  the usage-charging server with `charges: max_tokens` stated in the config, so
               agen reserves n x max_tokens as before issue 9: the baseline for tpm-usage
  fixed-2proc  a LiteLLM-style proxy (fixed `--window` s windows, only `llm_provider-retry-after`,
               negative remaining, no reset header), rpm shared by two agen processes, no rpm
               configured, max_retries 0       target: <= 5% 429s after the first window, 0 failed
  ignore-n     a server answering one choice whatever `n`: K-sample votes on 20 candidates
                                                          target: requests per vote <= K, seeds in K

The server's buckets start full (a minute's worth), which would flatter any client; so each
model's buckets are first drained with a bare burst until the sim answers 429, and then the
scenarios run against empty buckets (the steady state of a long run). Throughput is measured
after a short warm-up.

    python benchmarks/rate_limits.py [--seconds 20] [--settle 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
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

from agen.config import ModelConfig, Price, SeedsConfig, VoteConfig
from agen.errors import AgenError
from agen.filters import FilterTask
from agen.filters.answer_consistency import AnswerConsistency
from agen.gen.prompts import generation_prompt
from agen.gen.seeds import load_seeds
from agen.providers import Providers
from agen.providers.lane import Lane
from agen.providers.pacer import Pacer, Ticket
from agen.seeding import stable_int
from agen.sim.world import generate_problem
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


async def drain(base: str, model: str, burst: int = 50) -> float:
    """Empty the sim's buckets for `model` with bare bursts (big max_tokens) until it answers 429.
    A server charging real usage is overdrawn by what a burst really used: keep its bursts small
    (and the prompt long: that is what such a server charges a short answer). Returns the 429's
    retry-after: how long until an overdrawn bucket is back at empty."""
    url = base + "/v1/chat/completions"
    sent = 0
    async with aiohttp.ClientSession() as s:

        async def one() -> tuple[int, float]:
            body = orjson.dumps({"model": model, "max_tokens": 4000,
                                 "messages": [{"role": "user", "content": "drain " * 1500}]})
            async with s.post(url, data=body, headers={"content-type": "application/json"}) as r:
                await r.read()
                return r.status, float(r.headers.get("retry-after", 0))

        while True:
            answers = await asyncio.gather(*(one() for _ in range(burst)))
            sent += len(answers)
            waits = [w for status, w in answers if status == 429]
            if waits:
                return max(waits)


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


# ---------------------------------------------------------------- endpoints in the wild

ROOT = Path(__file__).resolve().parent.parent
PROPOSE_MAX_TOKENS = 1024  # the propose stage's default


def propose_requests() -> list[ChatRequest]:
    seeds = load_seeds(SeedsConfig(path=str(ROOT / "data" / "gsm8k_sample.jsonl")))
    out = []
    for i in range(len(seeds)):
        prompt = generation_prompt("verifiable_generate.txt", "verifiable_example.txt",
                                   [seeds[i], seeds[(i * 7 + 3) % len(seeds)]])
        out.append(prompt)
    return [ChatRequest(({"role": "user", "content": p},), PROPOSE_MAX_TOKENS, temperature=0.7, stage="propose",
                        task_id=str(i)) for i, p in enumerate(out)]


async def wild_tpm(base: str, seconds: float, warm: float, workers: int, tpm: float) -> dict[str, dict[str, float]]:
    """tpm-usage and tpm-upfront side by side, drained first, client tpm = server tpm."""
    names = ("tpm-usage", "tpm-usage-naive", "tpm-upfront")
    prompts = propose_requests()
    records: dict[str, list[CallRecord]] = {n: [] for n in names}
    waits = await asyncio.gather(drain(base, "tpm-usage", 4), drain(base, "tpm-usage-naive", 4))
    wait = max(waits)
    await asyncio.sleep(max(0.0, wait - 1.0))  # an overdrawn usage bucket: back to about empty
    await drain(base, "tpm-upfront")
    models = {n: ModelConfig(model=n, max_concurrency=workers, price=FREE, tpm=tpm,
                             charges="max_tokens" if n == "tpm-usage-naive" else None) for n in names}
    async with Providers(models, base_urls={n: base + "/v1" for n in names},
                         on_call=lambda r: records[r.model].append(r)) as p:
        t0, t0_wall = time.monotonic(), time.time()

        async def drive_one(name: str) -> None:
            counter = iter(range(10**9))

            async def worker() -> None:
                while time.monotonic() < t0 + warm + seconds:
                    i = next(counter)
                    r = prompts[i % len(prompts)]
                    try:
                        await p[name].complete(ChatRequest(r.messages, r.max_tokens, temperature=0.7, seed=i,
                                                           stage="propose", task_id=str(i)))
                    except AgenError:
                        pass

            tasks = [asyncio.create_task(worker()) for _ in range(workers)]
            await asyncio.wait(tasks, timeout=warm + seconds + 1.0)
            for t in tasks:
                t.cancel()  # calls still queued in the lane at the end are not part of the measurement
            await asyncio.gather(*tasks, return_exceptions=True)

        async def server_stats_at(t: float) -> dict[str, dict[str, float]]:
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            async with aiohttp.ClientSession() as s, s.get(base + "/sim/stats") as r:
                return orjson.loads(await r.read())  # type: ignore[no-any-return]

        marks = [asyncio.create_task(server_stats_at(t0 + warm)),
                 asyncio.create_task(server_stats_at(t0 + warm + seconds))]
        await asyncio.gather(*(drive_one(n) for n in names))
        before, after = await asyncio.gather(*marks)
        facts = p.facts()
    out = {}
    for n in names:
        window = [r for r in records[n] if warm <= r.ts - t0_wall < warm + seconds]
        ok = [r for r in window if r.outcome == "ok"]
        # What the server charged over the window, from its own counters (/sim/stats): real usage,
        # or prompt + max_tokens for every request it answered.
        d = {k: after[n][k] - before[n][k] for k in ("input_tokens", "output_tokens")}
        answered = after[n]["status"].get("200", 0) - before[n]["status"].get("200", 0)
        usage_server = n.startswith("tpm-usage")
        used = d["input_tokens"] + (d["output_tokens"] if usage_server else PROPOSE_MAX_TOKENS * answered)
        charged = used / (seconds / 60.0)
        out[n] = {"attempts": len(window), "ok": len(ok), "tpm": round(charged, 1), "of_tpm": round(charged / tpm, 4),
                  "share_429": round(sum(r.status == 429 for r in window) / max(1, len(window)), 4),
                  "charges_learned": f"{facts[n].get('charges', '-')}"
                                     f"{' (config)' if facts[n]['source'].get('charges') == 'config' else ''}",
                  "mean_output": round(sum(r.usage.output_tokens for r in ok) / max(1, len(ok)), 1)}
    return out


def fixed_client(base: str, seconds: float, workers: int, out_path: str) -> None:
    """One of the two agen processes of `fixed-2proc`: back-to-back calls for `seconds`, records to a file."""
    async def go() -> None:
        cfg = ModelConfig(model="fixed-litellm", max_concurrency=workers, price=FREE, max_retries=0)
        recs: list[CallRecord] = []
        failed = 0
        async with Providers({"m": cfg}, base_urls={"m": base + "/v1"}, on_call=recs.append) as p:
            t0 = time.monotonic()
            counter = iter(range(10**9))

            async def worker() -> None:
                nonlocal failed
                while time.monotonic() < t0 + seconds:
                    try:
                        await p["m"].complete(request(next(counter)))
                    except AgenError:
                        failed += 1

            await asyncio.gather(*(worker() for _ in range(workers)))
            facts = p.facts()["m"]
        Path(out_path).write_bytes(orjson.dumps({"calls": [(r.ts, r.status) for r in recs], "failed": failed,
                                                 "facts": facts}))
    uvloop.run(go())


async def wild_fixed(base: str, seconds: float, window: float, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        outs = [str(Path(d) / f"c{i}.json") for i in range(2)]
        t0_wall = time.time()
        procs = [await asyncio.create_subprocess_exec(sys.executable, __file__, "--fixed-client", base,
                                                      "--seconds", str(seconds), "--workers", str(workers),
                                                      "--out", o) for o in outs]
        for pr in procs:
            await pr.wait()
        docs = [orjson.loads(Path(o).read_bytes()) for o in outs]
    calls = [c for doc in docs for c in doc["calls"]]
    # the first window: from the start to the end of the first whole window the server counted
    first_end = t0_wall + window * 1.5
    later = [c for c in calls if c[0] >= first_end]
    return {"attempts": len(calls), "ok": sum(s == 200 for _, s in calls),
            "share_429": round(sum(s == 429 for _, s in calls) / max(1, len(calls)), 4),
            "share_429_after_first": round(sum(s == 429 for _, s in later) / max(1, len(later)), 4),
            "failed": sum(doc["failed"] for doc in docs),
            "window_learned": ",".join(str(doc["facts"].get("window", "-")) for doc in docs)}


async def wild_ignore_n(base: str, k: int, candidates: int) -> dict[str, float]:
    """K-sample votes through the real filter on a server that ignores `n`."""
    vc = VoteConfig(model="v", k=k, early_stop=True)
    seeds_sent: dict[str, list[int | None]] = {}
    async with Providers({"v": ModelConfig(model="ignore-n", price=FREE)}, base_urls={"v": base + "/v1"}) as p:
        client = p["v"]

        async def call(c, r):  # type: ignore[no-untyped-def]
            return await c.complete(r)

        # every request's seeds, read off the bodies the transport sends (the client is compiled:
        # its methods cannot be wrapped); votes are judged one at a time, so `judging` names the task
        transport, judging = client._transport, [""]
        inner = transport.post

        async def spy(url: str, body: bytes, headers):  # type: ignore[no-untyped-def]
            doc = orjson.loads(body)
            seed, n = doc.get("seed"), doc.get("n", 1)
            seeds_sent.setdefault(judging[0], []).extend([None] if seed is None else [seed + i for i in range(n)])
            return await inner(url, body, headers)

        transport.post = spy
        ac = AnswerConsistency(vc, client, call)
        bases = {}
        for i in range(candidates):
            q, a = generate_problem(random.Random(i), 3)[:2]
            task = FilterTask(f"c{i}", f"bench/{i}", "propose", q, a)
            bases[task.id] = stable_int(f"{task.key}/vote")
            judging[0] = task.id
            await ac.judge(task)
        facts = p.facts()["v"]
    requests = [len(v) for v in seeds_sent.values()]
    inside = all(s is not None and 0 <= s - bases[t] < k for t, v in seeds_sent.items() for s in v)
    return {"candidates": candidates, "k": k, "max_requests_per_vote": max(requests),
            "mean_requests_per_vote": round(sum(requests) / len(requests), 2), "seeds_inside_k": inside,
            "supports_n_learned": facts.get("supports_n")}


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
    ap.add_argument("--wild-latency-ms", type=float, default=200.0,
                    help="tpm-usage/-naive/-upfront: the servers' median latency (3000: many requests in flight)")
    ap.add_argument("--window", type=float, default=10.0, help="fixed-2proc: the proxy's window in seconds")
    ap.add_argument("--wild-seconds", type=float, default=40.0, help="fixed-2proc: how long both processes run")
    ap.add_argument("--fixed-client", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fixed_client:
        fixed_client(args.fixed_client, args.seconds, args.workers, args.out)
        return {}
    if args.quick:
        args.seconds, args.warm, args.settle, args.workers = 3.0, 1.0, 2.0, 16
        args.rpm, args.tpm = 300.0, 20000.0
        args.window, args.wild_seconds = 2.0, 5.0
    rpm, tpm = args.rpm, args.tpm
    scenarios = [
        Scenario("rpm", {"rpm": rpm}, {"rpm": rpm}),
        Scenario("tpm", {"tpm": tpm}, {"tpm": tpm}),
        Scenario("rpm-3x", {"rpm": rpm}, {"rpm": 3 * rpm}),
        Scenario("rpm-3x-aimd", {"rpm": rpm}, {"rpm": 3 * rpm}, header_feedback=False),
        Scenario("rpm-asyncio-throttle", {"rpm": rpm}, {"rpm": rpm}, throttle_lib=True),
    ]
    lat = {"median": args.latency_ms, "sigma": 0.3}
    # Buckets start empty: a full minute's bucket at the start is credit that a measurement window
    # of under a few minutes counts as throughput (it read 141% of TPM with 40 s windows).
    cfg = {"seed": 1, "models": {sc.name: {"latency_ms": lat, "buckets_start": "empty", **sc.server}
                                 for sc in scenarios}}
    wild_lat = {"median": args.wild_latency_ms, "sigma": 0.3, "per_output_token_ms": 0.5}
    cfg["models"].update({
        "tpm-usage": {"latency_ms": wild_lat, "tpm": tpm, "quirks": {"charges": "usage"}},
        "tpm-usage-naive": {"latency_ms": wild_lat, "tpm": tpm, "quirks": {"charges": "usage"}},
        "tpm-upfront": {"latency_ms": wild_lat, "tpm": tpm},
        "fixed-litellm": {"latency_ms": lat, "rpm": rpm,
                          "quirks": {"window": "fixed", "window_s": args.window, "headers": "litellm"}},
        "ignore-n": {"latency_ms": {"median": 0}, "quirks": {"ignore_n": True}},
    })
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sim.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with SimProcess(path) as sim:
            results = uvloop.run(run(sim.base_url, scenarios, args.seconds, args.warm, args.settle, args.workers))
            print(f"phase: wild tpm {time.monotonic():.0f}", file=sys.stderr, flush=True)
            wild: dict[str, dict[str, float]] = uvloop.run(
                wild_tpm(sim.base_url, args.seconds, args.warm, args.workers, tpm))
            print(f"phase: fixed-2proc {time.monotonic():.0f}", file=sys.stderr, flush=True)
            wild["fixed-2proc"] = uvloop.run(wild_fixed(sim.base_url, args.wild_seconds, args.window, 8))
            print(f"phase: ignore-n {time.monotonic():.0f}", file=sys.stderr, flush=True)
            wild["ignore-n"] = uvloop.run(wild_ignore_n(sim.base_url, 8, 5 if args.quick else 20))
    print(f"{'scenario':<22}{'attempts':>9}{'ok':>7}{'achieved':>12}{'of limit':>10}{'429 share':>11}{'429 early':>11}")
    for name, r in results.items():
        achieved = r.get("rpm", r.get("tpm", 0.0))
        frac = r.get("of_rpm", r.get("of_tpm", 0.0))
        unit = "rpm" if "rpm" in r else "tpm"
        early = f"{r['share_429_first']:.2%}" if "share_429_first" in r else "-"
        print(f"{name:<22}{int(r['attempts']):>9}{int(r['ok']):>7}{achieved:>9.0f}{unit:>3}{frac:>10.2%}"
              f"{r['share_429']:>11.2%}{early:>11}")
    print("\nEndpoints in the wild")
    for name in ("tpm-usage", "tpm-usage-naive", "tpm-upfront"):
        r = wild[name]
        print(f"{name:<16} {int(r['ok']):>5} ok  {r['of_tpm']:>8.2%} of TPM as charged  {r['share_429']:>7.2%} 429s  "
              f"charges learned: {r['charges_learned']}  mean output {r['mean_output']} of max_tokens "
              f"{PROPOSE_MAX_TOKENS}")
    print(f"{'':<16} learned reservation vs naive: x{wild['tpm-usage']['of_tpm'] / max(1e-9, wild['tpm-usage-naive']['of_tpm']):.2f} "
          f"of the usage server's TPM")
    r = wild["fixed-2proc"]
    print(f"{'fixed-2proc':<16} {int(r['ok']):>5} ok  {r['share_429']:>7.2%} 429s overall, "
          f"{r['share_429_after_first']:.2%} after the first window  {int(r['failed'])} failed  "
          f"window learned: {r['window_learned']}")
    r = wild["ignore-n"]
    print(f"{'ignore-n':<16} {r['candidates']} votes, K={r['k']}: at most {r['max_requests_per_vote']} requests per "
          f"vote (mean {r['mean_requests_per_vote']}), seeds inside K: {r['seeds_inside_k']}, "
          f"supports_n learned: {r['supports_n_learned']}")
    print(orjson.dumps({"benchmark": "rate_limits", "seconds": args.seconds, "settle": args.settle,
                        "rpm_limit": rpm, "tpm_limit": tpm, "results": results, "wild": wild}).decode())
    sys.stdout.flush()
    return results


if __name__ == "__main__":
    main()
