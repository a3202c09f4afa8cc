"""CPU per `Deduper.check_and_add` on the caller's thread (the event loop), against a baseline
measured in the same run: the deduper of an earlier commit (loaded from git) and `tokenize` alone.

For each text kind and size N: N questions go through `check_and_add` of both dedupers (the
index the pipeline holds after N kept questions), then P fresh ones (with the kind's own near
duplicates) are timed, in alternating slices of 100 so both see the same machine load. Times are
this thread's CPU (`time.thread_time`: the merge thread and other processes are left out);
compare the ratios, not the absolute figures. Decisions of the two are compared one by one.

Text kinds: `gsm8k` (questions recombined from `data/gsm8k_sample.jsonl`: 2-5 sentences of
different questions, numbers redrawn, so words and lengths are GSM8K's and some pairs share
sentences) and `sim` (`agen.sim.world.generate_problem`, what the simulated provider proposes:
templated, so many LSH candidates to verify).

    python benchmarks/dedup_speed.py [--sizes 2000,20000] [--probes 2000] [--baseline REV] [--quick]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The last commit before the vectorised deduper (issue 11): the "before" of the figures.
BASELINE = "c727ff4"
SLICE = 100


def gsm8k_like(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    questions = [json.loads(line)["question"] for line in (ROOT / "data" / "gsm8k_sample.jsonl").open()]
    sentences = [s for q in questions for s in re.split(r"(?<=[.?!])\s+", q) if s]
    out = []
    for _ in range(n):
        text = " ".join(rng.sample(sentences, rng.randint(2, 5)))
        out.append(re.sub(r"\d+", lambda _: str(rng.randint(2, 500)), text))
    return out


def sim_questions(n: int, seed: int) -> list[str]:
    from agen.sim.world import generate_problem

    rng = random.Random(seed)
    return [generate_problem(rng, rng.randint(2, 5))[0] for _ in range(n)]


KINDS = {"gsm8k": gsm8k_like, "sim": sim_questions}


def load_baseline(rev: str) -> Any:
    """The `Deduper` class of commit `rev` (its dedup.py and dedup_store.py as a private package)."""
    pkg = Path(tempfile.mkdtemp(prefix="agen-dedup-base-")) / "dedup_base"
    pkg.mkdir()
    for name in ("dedup", "dedup_store"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:agen/gen/{name}.py"], check=True,
                             capture_output=True, text=True).stdout
        (pkg / f"{name}.py").write_text(src.replace("from agen.gen.dedup_store import", "from dedup_base.dedup_store import"))
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module("dedup_base.dedup").Deduper


def _decision(match: Any) -> tuple[str, str, float] | None:
    """A match as plain values (the baseline's DupMatch is another class)."""
    return None if match is None else (match.kind, match.match_id, match.score)


def measure(kind: str, n: int, probes: int, base_cls: Any) -> dict[str, Any]:
    from agen.gen.dedup import Deduper, tokenize

    texts = KINDS[kind](n + probes, 7)
    new, old = Deduper(), base_cls()
    for i, q in enumerate(texts[:n]):
        new.check_and_add(q, f"q{i}")
        old.check_and_add(q, f"q{i}")
    for d in (new, old):  # a merge finishing in the timed part would be timed on one side only
        d._lsh.wait_merged()
        d._exact.wait_merged()
    stream = texts[n:]
    t_new = t_old = t_tok = 0.0
    got_new, got_old = [], []
    for s in range(0, len(stream), SLICE):
        part = list(enumerate(stream[s : s + SLICE], n + s))
        t0 = time.thread_time()
        got_new += [_decision(new.check_and_add(q, f"q{i}")) for i, q in part]
        t1 = time.thread_time()
        got_old += [_decision(old.check_and_add(q, f"q{i}")) for i, q in part]
        t2 = time.thread_time()
        for _, q in part:
            tokenize(q)
        t3 = time.thread_time()
        t_new, t_old, t_tok = t_new + t1 - t0, t_old + t2 - t1, t_tok + t3 - t2
    same = sum(a == b for a, b in zip(got_new, got_old, strict=True))
    k = len(stream)
    row = {"kind": kind, "kept_before": n, "probes": k, "new_us": round(t_new / k * 1e6, 1),
           "base_us": round(t_old / k * 1e6, 1), "tokenize_us": round(t_tok / k * 1e6, 1),
           "duplicates": sum(m is not None for m in got_new), "same_decisions": same,
           "verified_per_check": round(new.candidates_checked / (n + k), 2), "spilled": new._spill.used}
    row["speedup"] = round(row["base_us"] / row["new_us"], 2)
    row["new_per_tokenize"] = round(row["new_us"] / row["tokenize_us"], 1)
    row["base_per_tokenize"] = round(row["base_us"] / row["tokenize_us"], 1)
    new.close()
    old.close()
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,20000", help="kept questions before the timed checks")
    ap.add_argument("--probes", type=int, default=2000, help="timed check_and_add calls per row")
    ap.add_argument("--kinds", default="gsm8k,sim")
    ap.add_argument("--baseline", default=BASELINE, help="git revision whose deduper is the baseline")
    ap.add_argument("--quick", action="store_true", help="one small size, 300 probes")
    args = ap.parse_args(argv)
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    probes = 300 if args.quick else args.probes
    base_cls = load_baseline(args.baseline)
    rows = [measure(kind, n, probes, base_cls) for n in sizes for kind in args.kinds.split(",")]
    print(f"check_and_add, thread CPU µs per call: this tree vs {args.baseline} (same run, interleaved)")
    print(f"{'kind':>6}{'kept':>7}{'new µs':>9}{'base µs':>9}{'speedup':>9}{'tokenize':>10}{'new/tok':>9}"
          f"{'base/tok':>9}{'verified':>10}{'dups':>6}{'same':>7}")
    for r in rows:
        print(f"{r['kind']:>6}{r['kept_before']:>7}{r['new_us']:>9}{r['base_us']:>9}{r['speedup']:>9}"
              f"{r['tokenize_us']:>10}{r['new_per_tokenize']:>9}{r['base_per_tokenize']:>9}"
              f"{r['verified_per_check']:>10}{r['duplicates']:>6}{r['same_decisions']:>7}")
    result = {"benchmark": "dedup_speed", "baseline": args.baseline, "results": rows}
    print(orjson.dumps(result).decode())
    return result


if __name__ == "__main__":
    main()
