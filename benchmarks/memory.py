"""Peak RSS of the pipeline as the number of candidate tasks grows (bounded queues keep it flat).

Each size runs in a fresh child process (so `ru_maxrss` is that size's peak) and drives the real
`agen.engine.pipeline.Pipeline` — producers, bounded task/filter queues, parse, dedup, early-stopped
votes, the group-commit sink writing fsynced shards and the ledger — with a **stub provider** in
place of HTTP: generation returns a fresh sim-grammar problem in the CoT-Self-Instruct markers,
and every vote answers with the candidate's own answer on 3 of 4 samples. Going through HTTP
against the sim would measure the same queues at a twentieth of the speed, too slow for 1M here.

Two things grow with the run by design, and are reported separately from the queues: the
committed-id bitmaps (resume's set difference) and what the dedup index keeps in RAM of every
admitted question (12 bytes in its item log's offsets, 1/64 of its postings as fences; the postings
and token codes themselves are in files, page cache not RSS, reported as "files MB"). Its bounded
parts — dict buffers up to `MERGE_AT` keys, the in-RAM sorted run up to `SPILL_AT` keys and its
merge copy, the item log's 1 MB tail, the 8k-entry token-code cache — are full before 10k tasks.
Its file merges are not: the first one (two 2^18-key LSH files, at 16,384 kept questions, ~17k
tasks) is the first to read pieces of both files and sort them in RAM, so a peak from 30k on
includes that transient and a 10k peak does not (VmHWM read before and after each merge: the
`merge+` column). With pieces of `dedup_store.MERGE_CHUNK` keys it is ~4 MB; at 2^18 a piece was
the whole of both files, 12-18 MB.
So the growth per extra task splits into "by design" and "other" (everything else: what should
be flat). With three or more sizes the table ends with 1M extrapolated from the last two sizes'
slope, its terms named. The `--no-dedup` variant swaps the Deduper for a no-op to show what the
queues alone hold.

The child runs with what a session sets at its start (`app/gc_policy`'s collector thresholds and
`app/malloc_policy`'s fixed glibc thresholds); `--process-defaults` leaves the interpreter and
the C allocator as they come, to measure what those settings change.

    python benchmarks/memory.py [--sizes 10000,100000,1000000] [--no-dedup] [--process-defaults] [--quick]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent


def child(n: int, out: Path, dedup: bool, session: bool) -> dict[str, Any]:
    """Run the pipeline over `n` amplify tasks in this process; returns RSS figures."""
    import uvloop

    from agen.app.gc_policy import session_gc
    from agen.app.malloc_policy import fix_malloc_thresholds

    if session:  # as `agen run` does at session start (app/runner)
        fix_malloc_thresholds()
    from agen.config import parse_config
    from agen.cost import CostBook
    from agen.filters.answer_consistency import AnswerConsistency
    from agen.gen.seeds import load_seeds
    from agen.engine.pipeline import Pipeline
    from agen.run.restore import restore
    from agen.run.rundir import open_run_dir
    from agen.sim.world import generate_problem
    from agen.types import CallRecord, ChatRequest, Completion, Usage

    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw["seeds"]["path"] = str(ROOT / "data" / "gsm8k_sample.jsonl")
    raw["propose"]["target"] = 0
    raw["amplify"].update(target=n, max_attempts=2 * n, workers=64)  # a few rejects must not stop it
    raw["output"]["dir"] = str(out)
    raw["output"]["shard_max_records"] = 100_000
    raw["budget"] = {"usd": 1e9}
    raw["simulator"] = None
    for m in raw["models"].values():
        m["base_url"] = "http://stub.invalid/v1"  # never contacted: the clients are stubs
    raw["log_level"] = "error"
    cfg = parse_config(raw, "memory")
    box = re.compile(r"Problem:\s*(.+)", re.S)
    answers: dict[str, str] = {}  # question -> answer, only while the candidate is being voted

    class StubClient:
        supports_n = True

        def __init__(self, name: str) -> None:
            self.name = name
            self.pipeline: Pipeline | None = None

        async def complete(self, req: ChatRequest) -> Completion:
            prompt = req.messages[-1]["content"]
            if req.stage.endswith(".vote"):
                m = box.search(prompt)
                q = m.group(1).strip() if m else ""
                ans = answers.get(q, "0")
                texts = tuple(f"So the answer is \\boxed{{{ans if (req.seed + i) % 4 else int(ans) + 1}}}"
                              for i in range(req.n))
            else:
                rng = random.Random(req.seed)
                q, ans = generate_problem(rng, rng.randint(2, 5))
                answers[q] = ans
                if len(answers) > 4096:  # in-flight only: the stub's own memory must not grow with n
                    answers.pop(next(iter(answers)))
                texts = (f"Plan: done.\n[New Question Begin]{q}[New Question End]\n"
                         f"[Final Answer to New Question Begin]\\boxed{{{ans}}}[Final Answer to New Question End]",)
            await asyncio.sleep(0)
            usage = Usage(300, 0, 0, 100 * req.n, 0)
            assert self.pipeline is not None
            self.pipeline.on_call(CallRecord(time.time(), self.name, req.stage, req.task_id, "ok", 200, usage,
                                             0.0, 0.0, None))
            return Completion(texts, usage, 0.0, self.name)

    clients = {name: StubClient(name) for name in cfg.models}

    async def main() -> Pipeline:
        run_dir = open_run_dir(cfg, out)
        seeds = load_seeds(cfg.seeds, None)
        p = Pipeline(cfg, run_dir, clients, seeds, restore(run_dir), CostBook(),  # type: ignore[arg-type]
                     make_filter=lambda call: AnswerConsistency(cfg.vote, clients[cfg.vote.model], call))  # type: ignore[arg-type]
        if not dedup:
            class NoDedup:
                def check_and_add(self, *_a: object) -> None:
                    return None

                def close(self) -> None:
                    return None
            p.dedup.close()
            # the workers were handed the deduper when the pipeline was built: swap theirs too
            p.dedup = p.workers.dedup = NoDedup()  # type: ignore[assignment]
        for c in clients.values():
            c.pipeline = p
        await p.run()
        return p

    _watch_dedup_buffers()
    _watch_dedup_merges()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with session_gc() if session else contextlib.nullcontext():
        p = uvloop.run(main())
    c = p.counts["amplify"]
    return {"tasks": n, "finished": c.finished, "accepted": c.accepted, "seconds": round(time.perf_counter() - t0, 1),
            "rss_start_mb": round(rss0 / 1024, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "end_rss_mb": _status_mb("VmRSS"), "merge_over_rss_mb": _MERGE_OVER[0],
            "committed_ids": len(p.done_ids), **by_design(p)}


_BUF_HIGH: dict[int, int] = {}  # id(MultiMap) -> largest buffer seen before a merge, bytes


def _buf_bytes(m: Any) -> int:
    return m.buffer_nbytes()


def _watch_dedup_buffers() -> None:
    """Record each dedup multimap's buffer size just before it is frozen (its high-water mark)."""
    from agen.gen import dedup_store as ds

    add = ds.MultiMap.add

    def watched(self: Any, keys: list[int], value: int) -> None:
        if len(self._buf) + len(keys) >= self._merge_at:
            _BUF_HIGH[id(self)] = max(_BUF_HIGH.get(id(self), 0), _buf_bytes(self))
        add(self, keys, value)

    ds.MultiMap.add = watched  # type: ignore[method-assign]


_MERGE_OVER = [0.0]  # the most a dedup merge (or spill) raised the peak over the RSS it started at, MB


def _status_mb(field: str) -> float | None:
    """A /proc/self/status size (VmRSS: now; VmHWM: the peak so far) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _watch_dedup_merges() -> None:
    """Measure each background merge/spill of the dedup index: when the peak rose while it ran,
    by how much it ended above the RSS the merge started at (its transient, as far as the peak saw)."""
    from agen.gen import dedup_store as ds

    absorb = ds._absorb

    def watched(*args: Any, **kwargs: Any) -> Any:
        rss, hwm = _status_mb("VmRSS"), _status_mb("VmHWM")
        try:
            return absorb(*args, **kwargs)
        finally:
            after = _status_mb("VmHWM")
            if rss is not None and hwm is not None and after is not None and after > hwm:
                _MERGE_OVER[0] = max(_MERGE_OVER[0], round(after - rss, 1))

    ds._absorb = watched


def by_design(p: Any) -> dict[str, float | int]:
    """Sizes (MB) of what grows with committed output by design, measured at the end of the run."""
    from agen.gen import dedup as dd

    mb = 1 / 2**20
    ids = p.done_ids.nbytes()  # bitmaps: one bit per task index
    out: dict[str, float | int] = {"ids_mb": round(ids * mb, 3)}
    d = p.dedup
    if isinstance(d, dd.Deduper):
        maps = (d._exact, d._lsh)
        # in RAM: the in-RAM sorted runs (bounded by spill_at), the files' fences, the item log's
        # offsets and lengths (12 bytes a question) and its unflushed tail (bounded)
        out["dedup_index_mb"] = round(d.nbytes() * mb, 3)
        out["dedup_files_mb"] = round(d.file_bytes() * mb, 3)  # page cache, not RSS
        out["dedup_file_count"] = sum(len(m._state[2]) for m in maps)
        # the array buffers' high-water mark (bounded by merge_at: flat once the first merge happened)
        out["dedup_buffer_mb"] = round(sum(max(_BUF_HIGH.get(id(m), 0), _buf_bytes(m)) for m in maps) * mb, 3)
        entries = len(dd._CODES)
        # per token: its bytes key, its one-character code, its feature int and two dict slots (~40 B each)
        out["token_cache_entries"] = entries
        out["token_cache_mb"] = round(entries * (sys.getsizeof(b"12345") + sys.getsizeof(chr(0x10000)) + 28 + 80) * mb, 3)
        out["minhash_rows_mb"] = round(d._rows.table.nbytes * mb, 3)  # bounded: MINHASH_ROWS rows, touched as they fill
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated task counts")
    ap.add_argument("--no-dedup", action="store_true", help="replace the Deduper with a no-op")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (200 and 500 tasks)")
    ap.add_argument("--process-defaults", action="store_true",
                    help="the interpreter's collector and glibc's allocator as they come, not the session's settings")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(orjson.dumps(child(args.child, Path(args.out), not args.no_dedup, not args.process_defaults)).decode())
        return {}
    sizes = [200, 500] if args.quick else [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            cmd = [sys.executable, __file__, "--child", str(n), "--out", str(Path(d) / "run")]
            if args.no_dedup:
                cmd.append("--no-dedup")
            if args.process_defaults:
                cmd.append("--process-defaults")
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if res.returncode != 0:
                raise SystemExit(f"size {n} failed:\n{res.stderr[-3000:]}")
            rows.append(orjson.loads(res.stdout.strip().splitlines()[-1]))
    base = rows[0]

    def designed(r: dict[str, Any]) -> float:
        return r["ids_mb"] + r.get("dedup_index_mb", 0.0) + r.get("dedup_buffer_mb", 0.0)

    for r in rows:
        extra = r["tasks"] - base["tasks"]
        if not extra:
            r["kb_per_extra_task"] = r["by_design_kb_per_extra_task"] = r["other_kb_per_extra_task"] = None
            r["token_cache_kb_per_extra_task"] = None
            continue
        total = (r["peak_rss_mb"] - base["peak_rss_mb"]) * 1024 / extra
        design = (designed(r) - designed(base)) * 1024 / extra
        cache = (r.get("token_cache_mb", 0.0) - base.get("token_cache_mb", 0.0)) * 1024 / extra
        r["kb_per_extra_task"] = round(total, 3)
        r["by_design_kb_per_extra_task"] = round(design, 3)
        r["token_cache_kb_per_extra_task"] = round(cache, 3)
        r["other_kb_per_extra_task"] = round(total - design - cache, 3)
    mode = "no-op dedup" if args.no_dedup else "real dedup"
    settings = "process defaults" if args.process_defaults else "the session's GC and malloc settings"
    print(f"Pipeline with a stub provider (no HTTP), {mode}, {settings}; peak RSS per size in a fresh process")
    print("KB per extra task (vs the first size): total = by design (committed ids + the dedup index's RAM: "
          "12 B a question + fences) + token cache (bounded) + other (should be ~0)")
    print("end MB: RSS when the run ended; merge+: the most a dedup merge raised the peak over the RSS it began at")
    print(f"{'tasks':>10}{'finished':>10}{'accepted':>10}{'seconds':>9}{'start MB':>10}{'peak MB':>9}{'end MB':>8}"
          f"{'merge+':>8}{'ids MB':>8}"
          f"{'dedup MB':>10}{'files MB':>10}{'total':>8}{'design':>8}{'cache':>8}{'other':>8}")

    def kb(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def _mb(v: float | None) -> str:
        return "-" if v is None else f"{v}"

    for r in rows:
        print(f"{r['tasks']:>10}{r['finished']:>10}{r['accepted']:>10}{r['seconds']:>9}{r['rss_start_mb']:>10}"
              f"{r['peak_rss_mb']:>9}{_mb(r.get('end_rss_mb')):>8}{r.get('merge_over_rss_mb', 0.0):>8}"
              f"{r['ids_mb']:>8.1f}{r.get('dedup_index_mb', 0.0):>10.1f}"
              f"{r.get('dedup_files_mb', 0.0):>10.1f}"
              f"{kb(r['kb_per_extra_task']):>8}{kb(r['by_design_kb_per_extra_task']):>8}"
              f"{kb(r['token_cache_kb_per_extra_task']):>8}{kb(r['other_kb_per_extra_task']):>8}")
    result = {"benchmark": "memory", "provider": "stub (in-process, no HTTP)", "dedup": not args.no_dedup,
              "session_settings": not args.process_defaults, "results": rows}
    if len(rows) >= 3 and rows[-1]["tasks"] < 1_000_000:
        a, b = rows[-2], rows[-1]
        extra = (1_000_000 - b["tasks"]) / (b["tasks"] - a["tasks"])  # the last two sizes' slope, carried on
        design = (designed(b) - designed(a)) * extra
        other = (b["peak_rss_mb"] - a["peak_rss_mb"]) * extra - design
        mb = b["peak_rss_mb"] + design + other
        result["extrapolated_1m"] = {"peak_rss_mb": round(mb, 1), "by_design_mb": round(design, 1),
                                     "other_mb": round(other, 1), "from": [a["tasks"], b["tasks"]]}
        print(f"1,000,000 tasks, extrapolated from {a['tasks']:,} → {b['tasks']:,}: {mb:.0f} MB = "
              f"{b['peak_rss_mb']:.0f} MB at {b['tasks']:,} + {design:.1f} MB by design (ids, dedup RAM) "
              f"+ {other:.1f} MB other")
    print(orjson.dumps(result).decode())
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
