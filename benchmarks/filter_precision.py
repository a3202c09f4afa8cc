"""Precision and recall of the Answer-Consistency filter by solver accuracy, K and trap share.

Every row is a real run (the quick start's propose + amplify, `agen.app.runner.run_session`, the sim
in its own process over HTTP) scored with the sim's own truth (`agen.sim.world.true_answer`):

  precision before   share of voted candidates whose stated answer is true (what no filter gives)
  precision after    share of accepted examples whose answer is true
  recall             share of the true voted candidates that were accepted

The world's assumptions (agen/sim/config.py, SimModel) are the knobs, set on both sim models:

  solver accuracy    sim-small's solve_correct_p: the voter's chance on a 3-step problem
                     (p ** (steps / 3) on others); its errors are independent except on traps
  trap share         share of problems that trap proposer and voters alike: with probability
                     trap_p (0.8) each of them gives the *same* wrong answer — the correlated
                     mistakes of mis-stated or subtly ambiguous problems, which no K outvotes
  --spread           hidden per-problem hardness (logit scale; 0 = off), shared by all models

These are modelling assumptions, not measurements of real models: the table shows how the
filter's trade-off moves with them, not what it is on your provider.

    python benchmarks/filter_precision.py [--accepted 150] [--quick]

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategy_cost import config, measure  # noqa: E402  (one way to build and score a run)

from agen.app.runner import EXIT_OK, run_session  # noqa: E402
from agen.sim.process import SimProcess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def world_file(d: Path, accuracy: float, trap_share: float, spread: float, latency_ms: float) -> Path:
    """configs/sim_models.yaml with the voter's accuracy and the world's traps and hardness set."""
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for m in raw["models"].values():
        m["latency_ms"] = {"median": latency_ms, "sigma": 0.2}
        m.update(trap_share=trap_share, trap_p=0.8, difficulty_spread=spread)
    raw["models"]["sim-small"]["solve_correct_p"] = accuracy
    path = d / f"sim-{accuracy}-{trap_share}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cell(out: Path, sim_url: str, accepted: int, k: int, seeds: int) -> dict[str, Any]:
    """One (world, K): `seeds` runs pooled; precision before/after and recall."""
    tot = {"voted": 0, "accepted": 0, "correct_voted": 0, "correct_accepted": 0, "samples": 0}
    props = max(2, accepted // 10)
    for seed in range(seeds):
        cfg = config(out / f"k{k}-s{seed}", sim_url, props, accepted - props, k, True, seed)
        with contextlib.redirect_stdout(io.StringIO()):
            res = run_session(cfg, live=False)
        if res.exit_code != EXIT_OK:
            raise SystemExit(f"run failed: {res.message}")
        m = measure(out / f"k{k}-s{seed}")
        for key in tot:
            tot[key] += m[key]
    ratio = lambda x, y: round(x / y, 4) if y else None  # noqa: E731
    return {"k": k, "voted": tot["voted"], "accepted": tot["accepted"],
            "precision_before": ratio(tot["correct_voted"], tot["voted"]),
            "precision_after": ratio(tot["correct_accepted"], tot["accepted"]),
            "recall": ratio(tot["correct_accepted"], tot["correct_voted"]),
            "samples_per_voted": ratio(tot["samples"], tot["voted"])}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accepted", type=int, default=150, help="accepted examples wanted per run")
    ap.add_argument("--seeds", type=int, default=2, help="runs per cell (run seeds 0..N-1), pooled")
    ap.add_argument("--accuracy", default="0.5,0.6,0.7,0.85", help="voter solve_correct_p values")
    ap.add_argument("--k", default="4,8,16")
    ap.add_argument("--traps", default="0,0.1", help="trap shares")
    ap.add_argument("--spread", type=float, default=0.0, help="difficulty_spread of every model")
    ap.add_argument("--latency-ms", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true", help="smoke run: one world pair, K=4, tiny targets")
    args = ap.parse_args(argv)
    accuracies = [0.7] if args.quick else [float(x) for x in args.accuracy.split(",")]
    ks = [4] if args.quick else [int(x) for x in args.k.split(",")]
    traps = [0.0, 0.3] if args.quick else [float(x) for x in args.traps.split(",")]
    accepted = 12 if args.quick else args.accepted
    seeds = 1 if args.quick else args.seeds
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for trap in traps:
            for acc in accuracies:
                with SimProcess(world_file(Path(d), acc, trap, args.spread, args.latency_ms)) as sim:
                    for k in ks:
                        row = cell(Path(d) / f"a{acc}-t{trap}", sim.base_url, accepted, k, seeds)
                        rows.append({"solver_accuracy": acc, "trap_share": trap, **row})
    print(f"Answer-Consistency (min_share 0.5, early stopping) on the sim; {accepted} accepted per run, "
          f"{seeds} run(s) per cell pooled; trap_p 0.8; difficulty_spread {args.spread}")
    print(f"{'solver acc':>10}{'traps':>7}{'K':>4}{'voted':>7}{'prec before':>12}{'prec after':>11}"
          f"{'recall':>8}{'samples':>9}")
    for r in rows:
        print(f"{r['solver_accuracy']:>10.2f}{r['trap_share']:>7.0%}{r['k']:>4}{r['voted']:>7}"
              f"{r['precision_before'] or 0:>12.1%}{r['precision_after'] or 0:>11.1%}{r['recall'] or 0:>8.1%}"
              f"{r['samples_per_voted'] or 0:>9.2f}")
    result = {"benchmark": "filter_precision", "accepted_target": accepted, "seeds": seeds,
              "spread": args.spread, "trap_p": 0.8, "results": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
