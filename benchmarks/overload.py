"""Overload benchmark: a server that answers "overloaded" beyond its capacity, and a run that asks
for far more concurrency than that.

    python benchmarks/overload.py                 # capacity 24 per model, 128 amplify workers
    python benchmarks/overload.py --quick

The sim (its own process, every model at `--latency-ms`) answers at most `--capacity` requests of a
model at once; a request beyond that gets an immediate 503 (OpenAI wire) the way an overloaded
provider does (Anthropic's 529). Three runs of the same job: against an unlimited sim; against
the capped sim with each model's `max_concurrency` set to the capacity (the oracle: a user who
knows the server's capacity, the fastest this job can go there); against the capped sim asking for
`--workers` at once (what agen has to find out by itself). For each: wall time,
accepted per second, requests sent, the share of them answered 5xx, tasks that failed (retries
exhausted: generated work lost), and whether the outage stop fired. A client that keeps its
concurrency up against an overloaded server turns it into a 5xx storm and fails tasks; one that
backs off sends a few 5xx and loses nothing. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from crash_resume import SimProcess, write_run_config, write_sim_config  # noqa: E402

from agen.app.runner import run_session  # noqa: E402
from agen.config import load_config  # noqa: E402
from agen.run.shards import read_records  # noqa: E402


def one(work: Path, capacity: int | None, told: bool, args: argparse.Namespace) -> dict[str, Any]:
    faults = {"capacity": capacity} if capacity else None
    conc = (capacity, capacity) if told and capacity else (128, 256)
    with SimProcess(write_sim_config(work / "sim.yaml", latency_ms=args.latency_ms, faults=faults)) as sim:
        root = work / "run"
        cfg_path = write_run_config(work / "run.yaml", sim.base_url, root, proposals=8, target=args.target,
                                    models={"strong": {"max_concurrency": conc[0]}, "cheap": {"max_concurrency": conc[1]}},
                                    propose={"workers": 16}, amplify={"workers": args.workers},
                                    vote={"concurrency": args.workers})
        t0 = time.monotonic()
        out = run_session(load_config(cfg_path), live=False)
        wall = time.monotonic() - t0
    calls = [r for r in read_records(root / "ledger") if r["ev"] == "call"]
    status = Counter(r.get("status") for r in calls)
    recs = [r for s in ("accepted", "rejected") for r in read_records(root / s)]
    failed = sum(1 for r in recs if str(r.get("reason", "")).startswith(("generate_failed", "filter_failed")))
    accepted = sum(1 for r in recs if r.get("status") == "accepted" and r.get("stage") == "amplify")
    five = sum(n for s, n in status.items() if isinstance(s, int) and s >= 500)
    return {"capacity": capacity, "told": told, "exit_code": out.exit_code, "wall_s": round(wall, 2), "accepted": accepted,
            "accepted_per_s": round(accepted / wall, 1), "requests": len(calls), "share_5xx": round(five / max(1, len(calls)), 4),
            "tasks_failed": failed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capacity", type=int, default=24)
    ap.add_argument("--workers", type=int, default=128)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--target", type=int, default=600)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.target, args.workers = 120, 64
    rows = []
    for cap, told in ((None, False), (args.capacity, True), (args.capacity, False)):
        with tempfile.TemporaryDirectory() as d:
            rows.append(one(Path(d), cap, told, args))
    print(f"{'sim capacity':<22}{'exit':>5}{'wall s':>8}{'acc/s':>7}{'requests':>9}{'5xx share':>10}{'tasks failed':>13}")
    for r in rows:
        name = f"{r['capacity']}, client told" if r["told"] else str(r["capacity"] or "unlimited")
        print(f"{name:<22}{r['exit_code']:>5}{r['wall_s']:>8}{r['accepted_per_s']:>7}"
              f"{r['requests']:>9}{r['share_5xx']:>10.1%}{r['tasks_failed']:>13}")
    _, oracle, capped = rows
    print(f"asking {args.workers} of a server that answers {args.capacity}: "
          f"{capped['accepted_per_s'] / max(1e-9, oracle['accepted_per_s']):.2f}x the throughput of a client told its capacity")
    print(json.dumps({"benchmark": "overload", "workers": args.workers, "latency_ms": args.latency_ms, "rows": rows,
                      "throughput_vs_told": round(capped["accepted_per_s"] / max(1e-9, oracle["accepted_per_s"]), 3)}))


if __name__ == "__main__":
    main()
