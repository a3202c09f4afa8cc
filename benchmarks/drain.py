"""Drain benchmark: one SIGINT at high concurrency stops spending at once, and the resume pays nothing twice.

    python benchmarks/drain.py             # 200 ms latency, >= 500 requests in flight at the signal
    python benchmarks/drain.py --quick     # >= 150 in flight (a smoke run)

A run against the simulated provider (its own process, every model at `--latency-ms`) is driven
to `--inflight` requests in flight (counted from the ledger: `begin` lines without an `end`), then
sent one SIGINT. From the ledger's `call` lines (each knows when it ended and how long it took)
the benchmark counts the requests in flight at the signal and those *started after it*; it times
the exit, asks the sim how many requests *it received* after the signal (`GET /sim/received`:
the server's own clock, not an estimate from the client's ledger; until the sim's own loop first
runs on time after the signal it is reading a backlog; the requests it receives after that point
are an upper bound on those sent after the signal, not a count: under load the sim's loop can run
on time while its sockets still hold requests written before the signal. Session 5 logged every
write of the HTTP pool in one run at 1,201 in flight: 0 writes after the signal, while the sim
read 811 requests after it, 634 of them after its "caught up" point), then resumes the run to a small target and reads the resumed session's "$ redone"
(money paid again for requests the first session had paid for). Targets of issue 11: started
after ≤ 5% of in flight, exit ≤ latency + 2 s, redone $0. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from crash_resume import SimProcess, agen, committed_ids, sessions, write_run_config, write_sim_config  # noqa: E402

from agen.run.shards import read_records, shard_paths  # noqa: E402


def _open_requests(root: Path) -> int:
    """Requests begun and not ended, as far as the ledger on disk says (begin is durable before send)."""
    n = 0
    for path in shard_paths(root / "ledger") if (root / "ledger").exists() else []:
        data = path.read_bytes()
        n += data.count(b'"ev":"begin"') - data.count(b'"ev":"end"')
    return n


def _received(base_url: str, after: float) -> dict[str, Any]:
    """The sim's own record: requests it received, and the receive times of those after the signal."""
    with urllib.request.urlopen(f"{base_url}/sim/received?after={after!r}") as resp:
        return json.loads(resp.read())


def _histogram(offsets: list[float], width: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in sorted(offsets):
        key = f"{int(x // width) * width:.2f}"
        out[key] = out.get(key, 0) + 1
    return out


def _caught_up(got: dict[str, Any], t_signal: float, idle_s: float = 0.005, run: int = 5) -> float:
    """When the sim's loop had first run on time for `run` ticks in a row (100 ms) after the signal:
    until then it was working off a backlog (one on-time tick proves nothing: a loop turn runs its
    timers before the sockets that are ready), and a request it read may have been sent before."""
    streak = 0
    for t, lag in got["lag_ticks"]:
        if t <= t_signal:
            continue
        streak = streak + 1 if lag < idle_s else 0
        if streak == run:
            return t
    return float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--inflight", type=int, default=500)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--warmup-s", type=float, default=4.0, help="run this long before waiting for --inflight")
    ap.add_argument("--work", type=Path, help="keep the run here (default: a temporary folder)")
    args = ap.parse_args()
    if args.quick:
        args.inflight, args.warmup_s = 150, 2.0
    with tempfile.TemporaryDirectory() as tmp:
        run(args, args.work or Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    root = work / "run"
    width = max(64, int(args.inflight * 1.6))
    with SimProcess(write_sim_config(work / "sim.yaml", latency_ms=args.latency_ms)) as sim:
        cfg = write_run_config(
            work / "run.yaml", sim.base_url, root, proposals=4, target=1_000_000,
            models={"strong": {"max_concurrency": 256}, "cheap": {"max_concurrency": 4 * width}},
            propose={"workers": 32}, amplify={"workers": width}, vote={"concurrency": width},
            budget={"usd": 1000.0})
        log = work / "agen.log"
        proc = agen(["run", str(cfg)], log)
        deadline = time.monotonic() + 60
        while sessions(root) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(args.warmup_s)  # mid-run, not during the start-up burst
        while time.monotonic() < deadline and _open_requests(root) < args.inflight:
            time.sleep(0.05)
        t_signal = time.time()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
        exit_s = time.time() - t_signal
        got = _received(sim.base_url, t_signal)
        calls = [r for r in read_records(root / "ledger") if r["ev"] == "call" and r["session"] == 0]  # the first session
        starts = [(r["ts"] - r["latency_s"], r["ts"]) for r in calls]
        in_flight = sum(1 for s, e in starts if s <= t_signal < e)
        after = sum(1 for s, _ in starts if s > t_signal)
        spent_before = sum(r["cost_usd"] for r in calls if r["ts"] <= t_signal)
        spent_after = sum(r["cost_usd"] for r in calls if r["ts"] > t_signal)
        first = orjson.loads((root / "manifest.json").read_bytes())
        handled_s = (first.get("stopped_sending_at") or t_signal) - t_signal
        after_handled = sum(1 for s, _ in starts if s > t_signal + handled_s)
        journaled = sum(1 for r in read_records(root / "ledger") if r["ev"] == "paid")
        accepted = sum(1 for i in committed_ids(root) if "-amplify-" in i)
        t0 = time.time()
        rc2 = agen(["run", str(cfg), "--target", str(accepted + 20)], log).wait(timeout=600)
        manifest = orjson.loads((root / "manifest.json").read_bytes())
    out = {
        "benchmark": "drain", "latency_ms": args.latency_ms, "exit_code": rc, "in_flight_at_signal": in_flight,
        "started_after_signal": after, "started_after_pct": round(100 * after / max(1, in_flight), 2),
        "signal_handled_after_s": round(handled_s, 3), "started_after_handled": after_handled,
        "sim_received_after_signal": len(got["after"]),
        "sim_caught_up_after_s": round(_caught_up(got, t_signal) - t_signal, 3),
        "sim_received_after_caught_up": sum(1 for t in got["after"] if t > _caught_up(got, t_signal)),
        "sim_received_after_signal_ms": [round((t - t_signal) * 1000, 1) for t in sorted(got["after"])][:50],
        "sim_received_per_250ms": _histogram([t - t_signal for t in got["after"]], 0.25),
        "exit_s": round(exit_s, 3), "exit_budget_s": round(args.latency_ms / 1000 + 2, 3),
        "usd_before_signal": round(spent_before, 6), "usd_after_signal": round(spent_after, 6),
        "journaled_results": journaled, "resume_exit_code": rc2, "resume_s": round(time.time() - t0, 2),
        "resume_redone_usd": manifest.get("redone_usd"), "resume_replayed": manifest.get("replayed"),
    }
    out["targets_met"] = {"started_after_le_5pct": after <= 0.05 * in_flight,
                          "exit_le_latency_plus_2s": exit_s <= args.latency_ms / 1000 + 2,
                          "redone_usd_0": manifest.get("redone_usd") == 0}
    print(f"one SIGINT at {in_flight} requests in flight ({args.latency_ms:.0f} ms latency)")
    print(f"  started after the signal: {after} ({out['started_after_pct']}%), after it was handled: "
          f"{after_handled}; exit after {exit_s:.2f} s (budget {out['exit_budget_s']} s)")
    print(f"  the sim's own log: {len(got['after'])} requests received after the signal (ms after it: "
          f"{out['sim_received_after_signal_ms'][:6]}...); its loop worked off a backlog until "
          f"{out['sim_caught_up_after_s']} s after; received after that: {out['sim_received_after_caught_up']}")
    print(f"  spent before/after the signal: ${spent_before:.4f} / ${spent_after:.4f}; {journaled} paid "
          f"results journaled; resume redone ${manifest.get('redone_usd')}, replayed {manifest.get('replayed')}")
    print(json.dumps(out))
    sys.exit(0 if rc == 130 and rc2 == 0 else 1)


if __name__ == "__main__":
    main()
