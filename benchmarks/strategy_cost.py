"""Cost per accepted example and precision by generation strategy and vote size, in the simulated world.

The sim's questions come from a grammar whose true answer `agen.sim.world.true_answer` recomputes,
so the precision of what the filter accepts is measured, not estimated. Each row is a real run
(`agen.runner.run_session`, the sim in its own process, latency cut to a few ms: cost does not
depend on latency) into a temp dir, for the same number of accepted examples:

  frontier-only       propose with the strong model (sim-large) up to the whole target, no amplify
  propose+amplify     10% proposals by sim-large, the rest amplified by sim-small (the quick start)
  amplify-only        sim-small amplifies straight from the human seeds, no proposals
  K=4/8/16 ± early    propose+amplify with vote.k = K, vote.early_stop on/off

Columns: cost per accepted example, precision of the accepted set, precision of the unfiltered
candidates (every parsed, non-duplicate candidate that went to the vote), API calls (HTTP
attempts), vote samples drawn per voted candidate.

    python benchmarks/strategy_cost.py [--accepted 200] [--quick]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from agen.config import parse_config
from agen.gen.answers import equivalent
from agen.run.rundir import read_ledger
from agen.run.shards import read_records
from agen.runner import EXIT_OK, run_session
from agen.sim.process import SimProcess
from agen.sim.world import true_answer

ROOT = Path(__file__).resolve().parent.parent


def sim_file(d: Path, latency_ms: float) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for m in raw["models"].values():
        m["latency_ms"] = {"median": latency_ms, "sigma": 0.2}
    path = d / "sim.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def config(out: Path, sim_url: str, proposals: int, amplified: int, k: int, early: bool) -> Any:
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw["seeds"]["path"] = str(ROOT / "data" / "gsm8k_sample.jsonl")
    raw["propose"]["target"] = proposals
    raw["amplify"]["target"] = amplified
    raw["vote"].update(k=k, early_stop=early)
    raw["output"]["dir"] = str(out)
    raw["budget"] = {"usd": 1000.0}
    raw["simulator"] = None  # one sim process serves every run (started in main)
    for m in raw["models"].values():
        m["base_url"] = sim_url + "/v1"
    raw["log_level"] = "error"
    return parse_config(raw, "strategy_cost")


def measure(root: Path) -> dict[str, Any]:
    recs = [r for s in ("accepted", "rejected") if (root / s).exists() for r in read_records(root / s)]
    correct = lambda r: bool(r.get("answer")) and equivalent(r["answer"], true_answer(r["question"]) or "nan")  # noqa: E731
    accepted = [r for r in recs if r["status"] == "accepted"]
    voted = [r for r in recs if r["reason"].startswith("vote:")]
    calls = read_ledger(root).calls
    cost = sum(c.get("cost_usd", 0.0) for c in calls)
    return {"accepted": len(accepted), "candidates": len(recs), "voted": len(voted),
            "cost_usd": round(cost, 6), "cost_per_accepted": round(cost / len(accepted), 7) if accepted else None,
            "precision_accepted": round(sum(map(correct, accepted)) / len(accepted), 4) if accepted else None,
            "precision_candidates": round(sum(map(correct, voted)) / len(voted), 4) if voted else None,
            "calls": len(calls),
            "samples_per_voted": round(sum(r["vote"]["samples"] for r in voted) / len(voted), 2) if voted else None}


def run_one(out: Path, sim_url: str, name: str, props: int, amps: int, k: int, early: bool) -> dict[str, Any]:
    cfg = config(out, sim_url, props, amps, k, early)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary
        res = run_session(cfg, live=False)
    if res.exit_code != EXIT_OK:
        raise SystemExit(f"{name}: run failed: {res.message}")
    return {"strategy": name, "k": k, "early_stop": early, "proposals": props, "amplified": amps,
            **measure(out), "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accepted", type=int, default=200, help="accepted examples wanted per run")
    ap.add_argument("--latency-ms", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (12 accepted, two K rows)")
    args = ap.parse_args(argv)
    n = 12 if args.quick else args.accepted
    p = max(2, n // 10)
    runs: list[tuple[str, int, int, int, bool]] = [
        ("frontier-only", n, 0, 16, True),
        ("propose+amplify", p, n - p, 16, True),
        ("amplify-only", 0, n, 16, True),
    ]
    for k in ((4,) if args.quick else (4, 8, 16)):
        for early in (True, False):
            if (k, early) != (16, True):
                runs.append((f"p+a K={k} {'early' if early else 'full'}", p, n - p, k, early))
    with tempfile.TemporaryDirectory() as d:
        with SimProcess(sim_file(Path(d), args.latency_ms)) as sim:
            rows = [run_one(Path(d) / f"run{i}", sim.base_url, *spec) for i, spec in enumerate(runs)]
    head = (f"{'strategy':<22}{'K':>3}{'accepted':>9}{'$/accepted':>12}{'prec acc':>9}{'prec cand':>10}{'calls':>7}{'samples/cand':>13}")
    print(f"{n} accepted examples per run (sim prices: configs/prices.yaml entries for sim-large/sim-small)")
    print(head)
    for r in rows:
        print(f"{r['strategy']:<22}{r['k']:>3}{r['accepted']:>9}{r['cost_per_accepted'] or 0:>12.6f}"
              f"{r['precision_accepted'] or 0:>9.1%}{r['precision_candidates'] or 0:>10.1%}{r['calls']:>7}"
              f"{r['samples_per_voted'] or 0:>13.2f}")
    result = {"benchmark": "strategy_cost", "accepted_target": n, "results": rows}
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
