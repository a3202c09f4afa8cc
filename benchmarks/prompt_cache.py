"""Prompt caching on the sim: cache hit share and cost per accepted example, with and without the
cache-aware layout (`prompts.cache_layout`), on both wires, in one run.

Rows: wire (openai | anthropic) x templates x layout (off | on). Templates: `built-in` (the
shipped ones, whose static parts are all under 1,024 tokens); `worked` (votes use
`verifiable_solve_worked.txt`: the solve instruction plus ~1,500 tokens of worked GSM8K examples,
static text first already); `long-gen` (generation uses the built-in template with ~1,200 tokens of
reference questions added after `{examples}`, where the built-in template keeps its instructions:
the case the layout exists for, a long static part behind the variable one). Every row is a real run (`agen.app.runner.run_session`, quick-start config,
one sim process, latency a few ms) to the same number of accepted examples. First it prints each
template's static prefix (the system message the layout sends) in sim tokens against the
providers' 1,024-token minimum.

The sim caches as the providers do (`agen.sim.prompt_cache`): OpenAI automatically, Anthropic only
up to a `cache_control` breakpoint. Prices: OpenAI rows use configs/prices.yaml (sim-large and
sim-small: cached input at 50%); Anthropic rows price the same models the Anthropic way (cache
reads 10% of input, 5-minute cache writes 125%), so a write premium is paid and shown.
Columns: hit share (cached prompt tokens / all prompt tokens) overall, of amplify's generation
and of amplify's votes; saved (USD saved against no caching, net of writes, as a share of what the
run would have cost without caching: the stable figure); cost per accepted example and its ratio
to the same wire and templates without the layout (run-to-run noise in $/accepted is about +-10%
at 3 x 100 accepted: compare rows whose hit share is 0); duplicate rejections among generated
candidates (the layout does not change which examples a prompt shows, `engine/fewshot`; the JSON
also has distinct amplify few-shot proposals per 100 tasks).

    python benchmarks/prompt_cache.py [--accepted 60] [--repeats 3] [--quick]

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

from agen.app.runner import EXIT_OK, run_session
from agen.app.summary import cache_figures
from agen.config import parse_config
from agen.cost import cache_hit_share
from agen.gen.prompts import static_prefix
from agen.run.shards import read_records
from agen.sim.model import count_tokens
from agen.sim.process import SimProcess

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ("verifiable_generate.txt", "verifiable_solve.txt", "verifiable_solve_worked.txt",
             "open_generate.txt", "open_respond.txt", "open_judge.txt", "choice_generate.txt",
             "choice_solve.txt", "code_generate.txt", "code_solve.txt")
TEMPLATE_SETS = ("built-in", "worked", "long-gen")
# the sim models priced the Anthropic way: reads 0.1x input, 5-minute writes 1.25x
ANTHROPIC_PRICES = {"sim-large": {"input": 2.50, "cached_input": 0.25, "cache_write": 3.125, "output": 10.0},
                    "sim-small": {"input": 0.15, "cached_input": 0.015, "cache_write": 0.1875, "output": 0.60}}


def sim_file(d: Path, latency_ms: float) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for m in raw["models"].values():
        m["latency_ms"] = {"median": latency_ms, "sigma": 0.2}
    path = d / "sim.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def long_generate_template(d: Path) -> Path:
    """The built-in generation template with reference questions (the last GSM8K sample problems,
    ~1,200 sim tokens) after `{examples}`: static text behind the variable part."""
    rows = [orjson.loads(line) for line in (ROOT / "data" / "gsm8k_sample.jsonl").read_text().splitlines()]
    refs = []
    for r in reversed(rows):
        refs.append(f"Reference question: {r['question']}")
        if count_tokens("\n".join(refs)) > 1200:
            break
    text = (ROOT / "configs" / "templates" / "verifiable_generate.txt").read_text().replace(
        "{examples}\n", "{examples}\n\nFor calibration, these reference questions show the range of styles and "
        "difficulty wanted (do not copy them):\n" + "\n".join(refs) + "\n")
    path = d / "long_generate.txt"
    path.write_text(text)
    return path


def config(out: Path, sim_url: str, wire: str, templates: str, layout: bool, proposals: int, amplified: int,
           seed: int) -> Any:
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw["seed"] = seed
    raw["seeds"]["path"] = str(ROOT / "data" / "gsm8k_sample.jsonl")
    raw["propose"]["target"] = proposals
    raw["amplify"]["target"] = amplified
    if templates == "worked":
        raw["vote"]["template"] = "verifiable_solve_worked.txt"
    elif templates == "long-gen":
        for stage in ("propose", "amplify"):
            raw[stage]["template"] = str(long_generate_template(out.parent.parent))
    raw["prompts"] = {"cache_layout": layout}
    raw["output"]["dir"] = str(out)
    raw["budget"] = {"usd": 1000.0}
    raw["simulator"] = None  # one sim process serves every run (started in main)
    for m in raw["models"].values():
        m["provider"] = wire
        m["base_url"] = sim_url + ("/v1" if wire == "openai" else "")
        if wire == "anthropic":
            m["price"] = ANTHROPIC_PRICES[m["model"]]
    raw["log_level"] = "error"
    return parse_config(raw, "prompt_cache")


def diversity(root: Path) -> tuple[int, int, int, int]:
    """(generated candidates, duplicate rejections among them, amplify tasks counted (first 100),
    distinct proposals those tasks showed)."""
    recs = [r for s in ("accepted", "rejected") if (root / s).exists() for r in read_records(root / s)]
    generated = [r for r in recs if not r["reason"].startswith(("generate_failed", "parse:"))]
    dups = sum(r["reason"].startswith("duplicate:") for r in generated)
    amp = sorted((r["id"], r.get("seeds") or []) for r in recs if r["stage"] == "amplify")[:100]
    return len(generated), dups, len(amp), len({s for _, ids in amp for s in ids})


def run_one(out: Path, sim_url: str, wire: str, templates: str, layout: bool, props: int, amps: int,
            repeats: int) -> dict[str, Any]:
    """One row: `repeats` runs (run seeds 0, 1, ...), their counts pooled."""
    t0 = time.perf_counter()
    tot: dict[str, float] = {}
    stages: dict[str, list[int]] = {}  # stage -> [input tokens, cached]

    def add(key: str, v: float) -> None:
        tot[key] = tot.get(key, 0) + v

    for seed in range(repeats):
        cfg = config(out / f"seed{seed}", sim_url, wire, templates, layout, props, amps, seed)
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary
            res = run_session(cfg, live=False)
        if res.exit_code != EXIT_OK:
            raise SystemExit(f"{wire}/{templates}/{layout}: run failed: {res.message}")
        cache = cache_figures(res.snapshot["costs"])
        add("cost_usd", res.snapshot["costs"]["total"]["cost_usd"])
        add("accepted", sum(s["accepted"] for s in res.snapshot["stages"].values()))
        add("input_tokens", cache["input_tokens"])
        add("cached_input_tokens", cache["cached_input_tokens"])
        add("saved_usd", cache["saved_usd"])
        for k, v in cache["by_stage"].items():
            acc = stages.setdefault(k, [0, 0])
            acc[0] += v["input_tokens"]
            acc[1] += v["cached_input_tokens"]
        for key, v in zip(("generated", "duplicates", "amp_tasks", "amp_distinct"), diversity(out / f"seed{seed}")):
            add(key, v)
    acc = tot["accepted"]
    return {"wire": wire, "templates": templates, "cache_layout": layout, "repeats": repeats, "accepted": int(acc),
            "cost_usd": round(tot["cost_usd"], 6), "cost_per_accepted": tot["cost_usd"] / acc if acc else None,
            "hit_share": round(cache_hit_share(int(tot["input_tokens"]), int(tot["cached_input_tokens"])), 4),
            "saved_usd": round(tot["saved_usd"], 6),
            "saved_share": round(tot["saved_usd"] / (tot["saved_usd"] + tot["cost_usd"]), 4) if tot["cost_usd"] else 0.0,
            "hit_share_by_stage": {k: round(cache_hit_share(i, c), 4) for k, (i, c) in sorted(stages.items())},
            "duplicate_share": round(tot["duplicates"] / tot["generated"], 4) if tot["generated"] else 0.0,
            "distinct_shots_per_100": round(100 * tot["amp_distinct"] / tot["amp_tasks"], 1) if tot["amp_tasks"] else 0.0,
            "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accepted", type=int, default=60, help="accepted examples wanted per run")
    ap.add_argument("--latency-ms", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3, help="runs per row (run seeds 0..N-1), counts pooled")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (12 accepted per row, one run)")
    args = ap.parse_args(argv)
    n = 12 if args.quick else args.accepted
    repeats = 1 if args.quick else args.repeats
    props = max(2, n // 10)
    print("Static prefix of each template (the layout's system message), sim tokens; minimum cacheable: 1,024")
    prefixes = {t: count_tokens(static_prefix(t)) for t in TEMPLATES}
    with tempfile.TemporaryDirectory() as d:
        prefixes["long-gen"] = count_tokens(static_prefix(str(long_generate_template(Path(d)))))
    print("  " + "  ".join(f"{t.removesuffix('.txt')} {n_tok}" for t, n_tok in prefixes.items()))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        with SimProcess(sim_file(Path(d), args.latency_ms)) as sim:
            for wire in ("openai", "anthropic"):
                for templates in TEMPLATE_SETS:
                    for layout in (False, True):
                        rows.append(run_one(Path(d) / f"{wire}-{templates}-{layout}", sim.base_url, wire,
                                            templates, layout, props, n - props, repeats))
    base = {(r["wire"], r["templates"]): r["cost_per_accepted"] for r in rows if not r["cache_layout"]}
    print(f"{n} accepted examples per run, {repeats} run(s) per row pooled ({props} proposed by sim-large, "
          f"the rest amplified by sim-small, K=16 early-stopped votes by sim-small); gen/vote hits: amplify stage")
    print(f"{'wire':<10}{'templates':<10}{'layout':>7}{'hit share':>10}{'gen hits':>9}{'vote hits':>10}{'saved':>7}"
          f"{'$/accepted':>12}{'vs off':>8}{'dup %':>7}")
    for r in rows:
        ratio = (r["cost_per_accepted"] / base[(r["wire"], r["templates"])]
                 if r["cost_per_accepted"] and base[(r["wire"], r["templates"])] else None)
        r["cost_ratio_vs_layout_off"] = round(ratio, 4) if ratio is not None else None
        st = r["hit_share_by_stage"]
        print(f"{r['wire']:<10}{r['templates']:<10}{'on' if r['cache_layout'] else 'off':>7}"
              f"{r['hit_share']:>10.1%}{st.get('amplify', 0):>9.1%}{st.get('amplify.vote', 0):>10.1%}"
              f"{r['saved_share']:>7.1%}{r['cost_per_accepted'] or 0:>12.6f}"
              f"{ratio or 0:>8.3f}{100 * r['duplicate_share']:>7.1f}")
    result = {"benchmark": "prompt_cache", "accepted_target": n, "repeats": repeats, "static_prefix_tokens": prefixes, "results": rows}
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
