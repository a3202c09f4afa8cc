"""Stream N synthetic questions (~5% planted near-duplicates) through agen's Deduper.

Prints throughput, peak RSS at 10k items and at N (so RSS growth per item), the recall of
planted near-duplicates whose true ROUGE-L to their source is ≥ the threshold, and the
candidates verified per item; a table, then one JSON line.

    python benchmarks/dedup_scale.py --n 1000000
    python benchmarks/dedup_scale.py --quick

Synthetic questions: 20–90 words; ~45% stop words, ~8% numbers, the rest from a Zipf-Mandelbrot
(s=1.1, q=20) vocabulary of 60,000 made-up words, whose head matches GSM8K's content words, so
unrelated questions share common words about as real math questions do. A planted duplicate copies an earlier kept question, changes its numbers
and swaps, drops or inserts 0–25% of its words.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from itertools import accumulate

from agen.gen.dedup import Deduper, rouge_l

STOP = (
    "the a of to and in is are how many much each per for with has have she he they it at on "
    "what if total every more than by from after does do was were that this his her their"
).split()
SYLLABLES = "ka lo mi ne ru sa ti vo ze bu da fe gi ho ju pe qua ri so tu".split()


def vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Generator:
    """Synthetic math-question-like texts and their near-duplicate edits."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vocab = vocabulary(self.rng, 60_000)
        # Zipf-Mandelbrot (s=1.1, q=20): fitted to GSM8K's content words (top word ~0.9%).
        self.cum = list(accumulate(1 / (r + 20) ** 1.1 for r in range(len(self.vocab))))

    def word(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return self.rng.choice(STOP)
        if r < 0.53:
            return str(self.rng.randint(1, 999))
        return self.rng.choices(self.vocab, cum_weights=self.cum)[0]

    def question(self) -> str:
        n = self.rng.randint(20, 90)
        words = [self.word() for _ in range(n)]
        words[0] = words[0].capitalize()
        return " ".join(words) + "?"

    def near_dup(self, text: str) -> str:
        f = self.rng.uniform(0.0, 0.25)
        out: list[str] = []
        for w in text.split():
            if w.isdigit():
                out.append(str(self.rng.randint(1, 999)))
                continue
            r = self.rng.random()
            if r < f / 3:
                out.append(self.word())
            elif r < 2 * f / 3:
                continue
            elif r < f:
                out.extend((w, self.word()))
            else:
                out.append(w)
        return " ".join(out)


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def run(
    n: int, dup_rate: float, seed: int, threshold: float, bands: int, rows: int
) -> dict[str, float]:
    gen = Generator(seed)
    dd = Deduper(threshold, bands=bands, rows=rows)
    kept: list[str] = []  # only to draw sources for planted duplicates (a reservoir)
    planted = planted_true = found_true = found_other = 0
    rss_10k = 0.0
    t_dedup = cpu_dedup = 0.0
    t0 = time.perf_counter()
    for i in range(n):
        source = None
        if kept and gen.rng.random() < dup_rate:
            source = gen.rng.choice(kept)
            text = gen.near_dup(source)
        else:
            text = gen.question()
        s, cs = time.perf_counter(), time.process_time()
        match = dd.check_and_add(text, f"q{i:08d}")
        t_dedup += time.perf_counter() - s
        cpu_dedup += time.process_time() - cs
        if source is not None:
            planted += 1
            if rouge_l(source, text) >= threshold:
                planted_true += 1
                found_true += match is not None
        elif match is not None:
            found_other += 1
        if match is None and source is None:
            if len(kept) < 20_000:
                kept.append(text)
            else:
                kept[gen.rng.randrange(len(kept))] = text
        if i + 1 == 10_000:
            rss_10k = peak_rss_mib()
    wall = time.perf_counter() - t0
    rss_n = peak_rss_mib()
    return {
        "n": n,
        "bands": bands,
        "rows": rows,
        "kept": len(dd),
        "items_per_s": n / t_dedup,
        "items_per_cpu_s": n / cpu_dedup,  # steadier than wall time on a shared machine
        "wall_s": wall,
        "dedup_s": t_dedup,
        "peak_rss_mib_10k": rss_10k,
        "peak_rss_mib_n": rss_n,
        "rss_bytes_per_item": (rss_n - rss_10k) * (1 << 20) / max(1, n - 10_000),
        "store_bytes_per_item": dd.nbytes() / max(1, len(dd)),
        "planted": planted,
        "planted_rouge_ge_t": planted_true,
        "recall": found_true / planted_true if planted_true else float("nan"),
        "other_dups_found": found_other,
        "candidates_verified_per_item": dd.candidates_checked / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (12k items)")
    ap.add_argument("--dup-rate", type=float, default=0.05)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bands", type=int, default=32)
    ap.add_argument("--rows", type=int, default=4)
    args = ap.parse_args()
    n = 12_000 if args.quick else args.n
    r = run(n, args.dup_rate, args.seed, args.threshold, args.bands, args.rows)
    rows = [
        ("items", f"{r['n']:,}"),
        ("kept", f"{r['kept']:,}"),
        ("dedup throughput", f"{r['items_per_s']:,.0f} items/s"),
        ("dedup per CPU-second", f"{r['items_per_cpu_s']:,.0f} items"),
        ("wall time (incl. generation)", f"{r['wall_s']:.1f} s"),
        ("peak RSS at 10k", f"{r['peak_rss_mib_10k']:.0f} MiB"),
        (f"peak RSS at {r['n']:,}", f"{r['peak_rss_mib_n']:.0f} MiB"),
        ("RSS growth per item", f"{r['rss_bytes_per_item']:.0f} B"),
        ("compact store per kept item", f"{r['store_bytes_per_item']:.0f} B"),
        ("planted (ROUGE-L >= t)", f"{r['planted']:,} ({r['planted_rouge_ge_t']:,})"),
        ("recall of planted", f"{r['recall']:.4f}"),
        ("other duplicates found", f"{r['other_dups_found']:,}"),
        ("candidates verified/item", f"{r['candidates_verified_per_item']:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
