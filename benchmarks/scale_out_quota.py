"""N real `agen run --coordinator` workers on one provider key: one RPM+TPM limit shared through
Redis vs each worker limiting itself (today's behaviour without `shared_quota:`).

The sim (its own process) enforces one limit on the voter/amplifier model `sim-small` (token
buckets, `buckets_start: empty`, so a full minute's bucket flatters nobody); the proposer is not
limited. Every worker is a whole `agen run` process (own event loop, lanes, sink), splitting one
run through Redis (claims, global target). Two rows, each on a fresh run and a fresh sim state:

  shared  every worker configures the full limit and `shared_quota:` on one Redis quota name
  local   every worker configures the full limit, no shared quota (N-fold demand)

After `--warm` seconds the sim's counters are reset (buckets emptied too), and after `--seconds`
more they are read: "limit share" = the sim's 200s over what the limit allows in the window (RPM
binds; TPM is set and held too), "429 share" = 429s over requests the sim saw, "demand" = requests
the sim saw over the limit. The workers are then stopped (SIGTERM: they finish what is on the wire).

    python benchmarks/scale_out_quota.py [--workers 4] [--seconds 60] [--warm 8] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import SimProcess, agen, write_run_config  # noqa: E402

from agen.coord.layout import worker_dir  # noqa: E402
from agen.sim.redis_process import RedisProcess  # noqa: E402


def sim_config(path: Path, rpm: float, tpm: float, latency_ms: float) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for name, m in raw["models"].items():
        m["latency_ms"] = {"median": latency_ms, "sigma": 0.3}
        if name == "sim-small":
            m.update(rpm=rpm, tpm=tpm, buckets_start="empty")
    path.write_text(yaml.safe_dump(raw))
    return path


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).close()


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/sim/stats", timeout=10) as r:
        return json.loads(r.read())


def _until_every_worker_amplifies(root: Path, workers: int, timeout_s: float = 120.0) -> None:
    """Until each worker's ledger holds an amplify call (past start-up and proposing)."""
    deadline = time.monotonic() + timeout_s

    def amplifies(w: int) -> bool:
        return any(b'"ev":"call"' in line and b'"stage":"amplify' in line
                   for p in (worker_dir(root, f"w{w}") / "ledger").glob("*.jsonl") for line in p.read_bytes().splitlines())

    while not all(amplifies(w) for w in range(workers)):
        if time.monotonic() > deadline:
            raise SystemExit(f"the workers did not start amplifying within {timeout_s:g} s")
        time.sleep(0.1)


def one_row(tmp: Path, way: str, sim_url: str, redis_url: str, args: argparse.Namespace) -> dict:
    root = tmp / f"run-{way}"
    cheap = {"rpm": args.rpm, "tpm": args.tpm}
    if way == "shared":
        cheap["shared_quota"] = {"url": redis_url, "name": "bench-key"}
    cfg = write_run_config(tmp / f"{way}.yaml", sim_url, root, proposals=8, target=1_000_000,
                           models={"cheap": cheap}, amplify={"max_attempts": 10_000_000},
                           coordinator={"url": redis_url, "worker_id": "unset", "name": f"bench-{way}"},
                           watchdog={"enabled": False})
    post(sim_url + "/sim/reset")
    procs = [agen(["run", str(cfg), "--worker-id", f"w{i}", "--no-preflight"], tmp / f"{way}-w{i}.log")
             for i in range(args.workers)]
    time.sleep(args.warm)
    _until_every_worker_amplifies(root, args.workers)  # a slow start would otherwise be in the window
    post(sim_url + "/sim/reset")  # the window starts: counters cleared, buckets empty
    t0 = time.monotonic()
    time.sleep(args.seconds)
    st = stats(sim_url).get("sim-small", {})
    elapsed = time.monotonic() - t0
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=120)
    ok = st.get("status", {}).get("200", 0)
    throttled = st.get("status", {}).get("429", 0)
    seen = sum(st.get("status", {}).values())
    allowed = args.rpm * elapsed / 60
    return {"quota": way, "workers": args.workers, "ok": ok, "seen": seen, "limit_share": round(ok / allowed, 4),
            "share_429": round(throttled / max(1, seen), 4), "demand": round(seen / allowed, 3),
            "exit_codes": [p.returncode for p in procs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warm", type=float, default=8.0)
    ap.add_argument("--rpm", type=float, default=600.0)
    ap.add_argument("--tpm", type=float, default=2_000_000.0)  # held too; RPM binds
    ap.add_argument("--latency-ms", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="15 s windows: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 15.0
    rows = []
    with tempfile.TemporaryDirectory() as d, RedisProcess() as redis, \
            SimProcess(sim_config(Path(d) / "sim.yaml", args.rpm, args.tpm, args.latency_ms)) as sim:
        for way in ("shared", "local"):
            rows.append(one_row(Path(d), way, sim.base_url, redis.url, args))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"{args.workers} agen workers, one RPM {args.rpm:.0f} + TPM {args.tpm:.0f} limit on sim-small, "
          f"{args.seconds:.0f} s window after {args.warm:.0f} s, sim latency {args.latency_ms:.0f} ms, "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{'quota':<7} {'limit share':>11} {'429 share':>9} {'demand':>7} {'200s':>6} {'seen':>6}")
    for r in rows:
        print(f"{r['quota']:<7} {r['limit_share']:>11.1%} {r['share_429']:>9.1%} {r['demand']:>7.2f} "
              f"{r['ok']:>6} {r['seen']:>6}")
    print(json.dumps({"benchmark": "scale_out_quota", "rpm": args.rpm, "tpm": args.tpm, "load": load, "rows": rows}))


if __name__ == "__main__":
    main()
