"""What the dedup index's files cost on the caller's thread (the event loop): time per check and
preads per check, spilled to files against the same index held wholly in RAM, measured in one run.

For each size N: N sim-grammar questions (`agen.sim.world.generate_problem`, as the memory
benchmark's stub generates them; about one in 40 is a near duplicate of an earlier one) go
through `check_and_add` of two Dedupers, one with `spill_at` beyond N (the old, all-in-RAM
index) and one with the defaults (files past ~8k questions, in a temporary folder); then 2,000
fresh questions (500 below 10k) are checked (not added) against each, timed per check.
Decisions must agree.

    python benchmarks/dedup_store.py [--sizes 20000,100000] [--quick]

Prints a table (mean and p99 µs per check, ratio, preads per check, files, RAM and file MB) and
one JSON line. Times are this thread's CPU time (`time.thread_time`), so a loaded machine's waits
are left out; compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _questions(n: int, seed: int) -> list[str]:
    from agen.sim.world import generate_problem

    rng = random.Random(seed)
    return [generate_problem(rng, rng.randint(2, 5))[0] for _ in range(n)]


def _timed_checks(dd: Any, probes: list[str]) -> tuple[list[float], list[Any]]:
    times, out = [], []
    for q in probes:  # CPU time of this thread: what the loop would spend, not the machine's load
        t0 = time.thread_time()
        out.append(dd.check(q))
        times.append(time.thread_time() - t0)
    return times, out


def measure(n: int) -> dict[str, Any]:
    from agen.gen.dedup import Deduper

    stream, probes = _questions(n, 1), _questions(500 if n < 10_000 else 2000, 2)
    in_ram = Deduper(spill_at=1 << 40, merge_at=1 << 15)
    spilled = Deduper()
    for i, q in enumerate(stream):
        a, b = in_ram.check_and_add(q, f"q{i}"), spilled.check_and_add(q, f"q{i}")
        assert a == b, (i, a, b)
    for d in (in_ram, spilled):
        d._lsh.wait_merged()
        d._exact.wait_merged()
    def reads() -> int:  # the index's preads, counted where they are made (in C in the compiled build)
        return spilled._lsh.reads + spilled._exact.reads + spilled._items.reads

    t_ram, d_ram = _timed_checks(in_ram, probes)
    before = reads()
    t_file, d_file = _timed_checks(spilled, probes)
    preads = [reads() - before]
    assert d_ram == d_file

    def pct(v: list[float], q: float) -> float:
        return sorted(v)[int(q * (len(v) - 1))] * 1e6

    row = {"questions": n, "ram_mean_us": round(sum(t_ram) / len(t_ram) * 1e6, 1),
           "file_mean_us": round(sum(t_file) / len(t_file) * 1e6, 1), "ram_p99_us": round(pct(t_ram, 0.99), 1),
           "file_p99_us": round(pct(t_file, 0.99), 1), "file_max_us": round(max(t_file) * 1e6, 1),
           "preads_per_check": round(preads[0] / len(probes), 1),
           "files": len(spilled._lsh._state[2]) + len(spilled._exact._state[2]),
           "ram_index_mb": round(in_ram.nbytes() / 2**20, 2), "spilled_ram_mb": round(spilled.nbytes() / 2**20, 2),
           "spilled_file_mb": round(spilled.file_bytes() / 2**20, 2),
           "duplicates": sum(x is not None for x in d_ram)}
    row["ratio"] = round(row["file_mean_us"] / row["ram_mean_us"], 2)
    spilled.close()
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--quick", action="store_true", help="one small size, just past the first spill (9,000)")
    args = ap.parse_args(argv)
    sizes = [9_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    rows = [measure(n) for n in sizes]
    print("dedup check, CPU µs on the caller's thread: index in files vs the same index in RAM")
    print(f"{'questions':>10}{'RAM µs':>9}{'file µs':>9}{'ratio':>7}{'RAM p99':>9}{'file p99':>9}{'max':>8}"
          f"{'preads':>8}{'files':>6}{'RAM MB':>8}{'→ RAM MB':>9}{'file MB':>9}")
    for r in rows:
        print(f"{r['questions']:>10}{r['ram_mean_us']:>9}{r['file_mean_us']:>9}{r['ratio']:>7}{r['ram_p99_us']:>9}"
              f"{r['file_p99_us']:>9}{r['file_max_us']:>8.0f}{r['preads_per_check']:>8}{r['files']:>6}"
              f"{r['ram_index_mb']:>8}{r['spilled_ram_mb']:>9}{r['spilled_file_mb']:>9}")
    result = {"benchmark": "dedup_store", "results": rows}
    print(orjson.dumps(result).decode())
    return result


if __name__ == "__main__":
    main()
