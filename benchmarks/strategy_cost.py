"""Cost per accepted example and precision by generation strategy and vote size, in the simulated world.

The sim's questions come from a grammar whose true answer `agen.sim.world.true_answer` recomputes,
so the precision of what the filter accepts is measured, not estimated. Each row is a real run
(`agen.app.runner.run_session`, the sim in its own process, latency cut to a few ms: cost does not
depend on latency) into a temp dir, for the same number of accepted examples:

  frontier-only       propose with the strong model (sim-large) up to the whole target, no amplify
  propose+amplify     10% proposals by sim-large, the rest amplified by sim-small (the quick start)
  amplify-only        sim-small amplifies straight from the human seeds, no proposals
  K=4/8/16 ± early    propose+amplify with vote.k = K, vote.early_stop on/off
  p+a batch amp+votes propose+amplify, the amplifier and every vote through the sim's batch API (`mode: batch`)
  p+a batch all       every request through the batch API (the proposer too)

With `--modes` only online vs the two batch mixes run (propose+amplify, K=16), and the ratios of
cost per accepted example and wall time to the online row of the same run are printed. The sim's
batches end after `--batch-delay-s` (real ones take minutes to hours): the wall column shows how
the waves of vote batches add up, not a provider's real latency.

Each strategy runs `--repeats` times (run seeds 0, 1, ...: different proposals, so a different
few-shot pool for amplify) and the counts are pooled. Columns: cost per accepted example,
precision of the accepted set, precision of the unfiltered candidates (every parsed,
non-duplicate candidate that went to the vote), mean difficulty of the
accepted set (steps, `agen.sim.world.problem_steps`: the sim's hidden difficulty), share of accepted
examples that are hard (steps >= 4), cost per accepted *hard* example (the run's whole cost over its
hard accepted examples: what a quality-weighted target costs), API calls (HTTP attempts), vote
samples drawn per voted candidate. How difficulty depends on who proposes from which examples is a
modelling assumption of the sim (agen/sim/config.py, SimModel), not a measured fact about real models.

    python benchmarks/strategy_cost.py [--accepted 200] [--repeats 5] [--quick] [--modes]

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

from agen.config import RunConfig, parse_config
from agen.gen.answers import equivalent
from agen.run.rundir import read_ledger
from agen.run.shards import read_records
from agen.app.runner import EXIT_OK, run_session
from agen.sim.process import SimProcess
from agen.sim.world import problem_steps, true_answer

ROOT = Path(__file__).resolve().parent.parent
HARD_STEPS = 4  # an accepted example with at least this many steps counts as hard


def sim_file(d: Path, latency_ms: float, batch_delay_s: float = 1.0) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for m in raw["models"].values():
        m["latency_ms"] = {"median": latency_ms, "sigma": 0.2}
    raw["batch"] = {"delay_s": batch_delay_s}  # a real batch takes minutes to hours: wall time here is a floor
    path = d / "sim.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# Batch mixes (`mode: batch`, see README "Batch mode"): which requests go through the batch API.
MODES: dict[str, dict[str, str]] = {
    "online": {},
    "batch amp+votes": {"amplify": "batch", "vote": "batch"},  # the strong proposer stays online
    "batch all": {"models": "batch"},
}
BATCH = {"max_size": 500, "max_wait_s": 0.3, "poll_s": 0.05, "poll_max_s": 0.4}


# The cache-aware prompt layout (`prompts.cache_layout`), a dimension of the batch rows where this
# agen has it: on and off, so the two savings can be told apart.
LAYOUTS: tuple[bool | None, ...] = (True, False) if "prompts" in RunConfig.model_fields else (None,)


def config(out: Path, sim_url: str, proposals: int, amplified: int, k: int, early: bool, seed: int,
           modes: dict[str, str] | None = None, layout: bool | None = None) -> Any:
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    if layout is not None:
        raw["prompts"] = {"cache_layout": layout}
    for section, mode in (modes or {}).items():
        for target in (raw["models"].values() if section == "models" else [raw[section]]):
            target["mode"] = mode
    if modes:
        raw["batch"] = dict(BATCH)
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
            repeats: int, mode: str = "online", layout: bool | None = None) -> dict[str, Any]:
    """One strategy, run `repeats` times with run seeds 0, 1, ...; counts are pooled over the runs."""
    t0 = time.perf_counter()
    total: dict[str, Any] = {}
    for seed in range(repeats):
        cfg = config(out / f"seed{seed}", sim_url, props, amps, k, early, seed, MODES[mode], layout)
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
    return {"strategy": name, "mode": mode, "cache_layout": layout, "k": k, "early_stop": early, "proposals": props, "amplified": amps,
            "repeats": repeats, **rates(total), "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accepted", type=int, default=200, help="accepted examples wanted per run")
    ap.add_argument("--latency-ms", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5, help="runs per strategy (run seeds 0..N-1), counts pooled")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (12 accepted, two K rows, one repeat)")
    ap.add_argument("--modes", action="store_true",
                    help="only online vs the batch mixes (propose+amplify, K=16): cost per accepted and wall time")
    ap.add_argument("--batch-delay-s", type=float, default=1.0, help="the sim's time from batch create to end")
    args = ap.parse_args(argv)
    n = 12 if args.quick else args.accepted
    repeats = 1 if args.quick else args.repeats
    p = max(2, n // 10)
    first = LAYOUTS[0]
    runs: list[tuple[str, int, int, int, bool, str, bool | None]] = [] if args.modes else [
        ("frontier-only", n, 0, 16, True, "online", first),
        ("propose+amplify", p, n - p, 16, True, "online", first),
        ("amplify-only", 0, n, 16, True, "online", first),
    ]
    if not args.modes:
        for k in ((4,) if args.quick else (4, 8, 16)):
            for early in (True, False):
                if (k, early) != (16, True):
                    runs.append((f"p+a K={k} {'early' if early else 'full'}", p, n - p, k, early, "online", first))
    for layout in LAYOUTS:
        tag = "" if layout is None or layout is first else " -cache"
        runs += [(f"p+a {mode}{tag}", p, n - p, 16, True, mode, layout) for mode in MODES
                 if (mode != "online" or args.modes or tag)]
    with tempfile.TemporaryDirectory() as d:
        with SimProcess(sim_file(Path(d), args.latency_ms, args.batch_delay_s)) as sim:
            rows = [run_one(Path(d) / f"run{i}", sim.base_url, *spec[:5], repeats, spec[5], spec[6])
                    for i, spec in enumerate(runs)]
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
    base = next((r for r in rows if r["mode"] == "online" and r["proposals"] == p and r["k"] == 16
                 and r["early_stop"] and r["amplified"] == n - p and r["cache_layout"] is first), None)
    if base and base["cost_per_accepted"]:
        print(f"\nbatch mixes vs online propose+amplify (same run, same sim; batch delay {args.batch_delay_s:g} s):")
        for r in rows:
            if r["strategy"].startswith("p+a ") and r["mode"] in MODES:
                r["cost_ratio_vs_online"] = round((r["cost_per_accepted"] or 0) / base["cost_per_accepted"], 3)
                r["wall_ratio_vs_online"] = round(r["wall_s"] / base["wall_s"], 2) if base["wall_s"] else None
                label = r["mode"] + ("" if r["cache_layout"] is None else
                                     " +cache" if r["cache_layout"] else " -cache")
                print(f"  {label:<24} $/accepted x{r['cost_ratio_vs_online']:.3f}   precision "
                      f"{r['precision_accepted'] or 0:.1%} (online {base['precision_accepted'] or 0:.1%})   "
                      f"wall {r['wall_s']:.1f} s (x{r['wall_ratio_vs_online']})")
    result = {"benchmark": "strategy_cost", "accepted_target": n, "repeats": repeats, "results": rows}
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
