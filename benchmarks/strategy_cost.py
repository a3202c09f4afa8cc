"""Cost per accepted example and precision by generation strategy and vote size, in the simulated world.

The sim's questions come from a grammar whose true answer `agen.sim.world.true_answer` recomputes,
so the precision of what the filter accepts is measured, not estimated. Each row is a real run
(`agen.app.runner.run_session`, the sim in its own process, latency cut to a few ms: cost does not
depend on latency) into a temp dir, for the same number of accepted examples:

  frontier-only       propose with the strong model (sim-large) up to the whole target, no amplify
  propose+amplify     10% proposals by sim-large, the rest amplified by sim-small (the quick start)
  amplify-only        sim-small amplifies straight from the human seeds, no proposals
  K=4/8/16 ± early    propose+amplify with vote.k = K, vote.early_stop on/off

Each strategy runs `--repeats` times (run seeds 0, 1, ...: different proposals, so a different
few-shot pool for amplify) and the counts are pooled. Columns: cost per accepted example,
precision of the accepted set, precision of the unfiltered candidates (every parsed,
non-duplicate candidate that went to the vote), mean difficulty of the
accepted set (steps, `agen.sim.world.problem_steps`: the sim's hidden difficulty), share of accepted
examples that are hard (steps >= 4), cost per accepted *hard* example (the run's whole cost over its
hard accepted examples: what a quality-weighted target costs), API calls (HTTP attempts), vote
samples drawn per voted candidate. How difficulty depends on who proposes from which examples is a
modelling assumption of the sim (agen/sim/config.py, SimModel), not a measured fact about real models.

    python benchmarks/strategy_cost.py [--accepted 200] [--repeats 5] [--quick]

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
from agen.app.runner import EXIT_OK, run_session
from agen.sim.process import SimProcess
from agen.sim.world import problem_steps, true_answer

ROOT = Path(__file__).resolve().parent.parent
HARD_STEPS = 4  # an accepted example with at least this many steps counts as hard


def sim_file(d: Path, latency_ms: float) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for m in raw["models"].values():
        m["latency_ms"] = {"median": latency_ms, "sigma": 0.2}
    path = d / "sim.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def config(out: Path, sim_url: str, proposals: int, amplified: int, k: int, early: bool, seed: int) -> Any:
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw["seed"] = seed
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
    """Raw counts of one run (summed over repeats, then turned into rates by `rates`)."""
    recs = [r for s in ("accepted", "rejected") if (root / s).exists() for r in read_records(root / s)]
    correct = lambda r: bool(r.get("answer")) and equivalent(r["answer"], true_answer(r["question"]) or "nan")  # noqa: E731
    accepted = [r for r in recs if r["status"] == "accepted"]
    voted = [r for r in recs if r["reason"].startswith("vote:")]
    calls = read_ledger(root).calls
    steps = [problem_steps(r["question"]) or 0 for r in accepted]
    by_steps: dict[str, list[int]] = {}  # steps -> [voted, accepted]: how the filter treats difficulty
    for r in voted:
        n = by_steps.setdefault(str(problem_steps(r["question"]) or 0), [0, 0])
        n[0] += 1
        n[1] += r["status"] == "accepted"
    return {"accepted": len(accepted), "candidates": len(recs), "voted": len(voted),
            "cost_usd": sum(c.get("cost_usd", 0.0) for c in calls),
            "correct_accepted": sum(map(correct, accepted)), "correct_voted": sum(map(correct, voted)),
            "steps_accepted": sum(steps), "hard_accepted": sum(n >= HARD_STEPS for n in steps),
            "calls": len(calls), "samples": sum(r["vote"]["samples"] for r in voted), "by_steps": by_steps}


def rates(c: dict[str, Any]) -> dict[str, Any]:
    acc, voted, hard, cost = c["accepted"], c["voted"], c["hard_accepted"], c["cost_usd"]
    ratio = lambda x, y, nd: round(x / y, nd) if y else None  # noqa: E731
    return {"accepted": acc, "candidates": c["candidates"], "voted": voted, "cost_usd": round(cost, 6),
            "cost_per_accepted": ratio(cost, acc, 7),
            "precision_accepted": ratio(c["correct_accepted"], acc, 4),
            "precision_candidates": ratio(c["correct_voted"], voted, 4),
            "mean_steps_accepted": ratio(c["steps_accepted"], acc, 2),
            "hard_share_accepted": ratio(hard, acc, 4), "hard_accepted": hard, "cost_per_hard": ratio(cost, hard, 7),
            "calls": c["calls"], "samples_per_voted": ratio(c["samples"], voted, 2),
            "accept_rate_by_steps": {k: ratio(a, v, 3) for k, (v, a) in sorted(c["by_steps"].items())}}


def run_one(out: Path, sim_url: str, name: str, props: int, amps: int, k: int, early: bool,
            repeats: int) -> dict[str, Any]:
    """One strategy, run `repeats` times with run seeds 0, 1, ...; counts are pooled over the runs."""
    t0 = time.perf_counter()
    total: dict[str, Any] = {}
    for seed in range(repeats):
        cfg = config(out / f"seed{seed}", sim_url, props, amps, k, early, seed)
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary
            res = run_session(cfg, live=False)
        if res.exit_code != EXIT_OK:
            raise SystemExit(f"{name}: run failed: {res.message}")
        for key, val in measure(out / f"seed{seed}").items():
            if key == "by_steps":
                acc = total.setdefault(key, {})
                for st, (v, a) in val.items():
                    cur = acc.setdefault(st, [0, 0])
                    cur[0] += v
                    cur[1] += a
            else:
                total[key] = total.get(key, 0) + val
    return {"strategy": name, "k": k, "early_stop": early, "proposals": props, "amplified": amps,
            "repeats": repeats, **rates(total), "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accepted", type=int, default=200, help="accepted examples wanted per run")
    ap.add_argument("--latency-ms", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5, help="runs per strategy (run seeds 0..N-1), counts pooled")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (12 accepted, two K rows, one repeat)")
    args = ap.parse_args(argv)
    n = 12 if args.quick else args.accepted
    repeats = 1 if args.quick else args.repeats
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
            rows = [run_one(Path(d) / f"run{i}", sim.base_url, *spec, repeats) for i, spec in enumerate(runs)]
    head = (f"{'strategy':<22}{'K':>3}{'accepted':>9}{'$/accepted':>12}{'prec acc':>9}{'prec cand':>10}"
            f"{'steps':>6}{'hard':>6}{'$/hard':>10}{'calls':>7}{'samples/cand':>13}")
    print(f"{n} accepted examples per run, {repeats} run(s) per strategy pooled "
          f"(sim prices: configs/prices.yaml entries for sim-large/sim-small); hard = steps >= {HARD_STEPS}")
    print(head)
    for r in rows:
        print(f"{r['strategy']:<22}{r['k']:>3}{r['accepted']:>9}{r['cost_per_accepted'] or 0:>12.6f}"
              f"{r['precision_accepted'] or 0:>9.1%}{r['precision_candidates'] or 0:>10.1%}"
              f"{r['mean_steps_accepted'] or 0:>6.2f}{r['hard_share_accepted'] or 0:>6.0%}"
              f"{'—' if r['cost_per_hard'] is None else format(r['cost_per_hard'], '.5f'):>10}{r['calls']:>7}"
              f"{r['samples_per_voted'] or 0:>13.2f}")
    result = {"benchmark": "strategy_cost", "accepted_target": n, "repeats": repeats, "results": rows}
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
