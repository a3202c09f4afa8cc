"""`agen merge RUN_ROOT --out DIR`: a coordinated run's worker directories as one run directory.

The result is an ordinary (finished) run directory, so `agen status`, `report` and `export` read
it as they read any run. What merging does:

- records and ledger lines of every worker, each record tagged with its `worker`; sessions are
  renumbered (worker by worker, in name order) so `(session, req)` stays unique in the ledger;
- an id committed by two workers (never expected: claims prevent it) is kept once and counted;
- the near-duplicate pass the live run cannot do across workers (each worker's dedup sees only
  its own candidates; exact duplicates are caught live by the shared set): every accepted
  question, worker by worker in commit order, is checked against the seeds and the accepted ones
  kept before it with the run's own rule (ROUGE-L F1 >= dedup.near_threshold, `gen/dedup`); a
  duplicate moves to rejected as `duplicate:merge_near` / `duplicate:merge_exact` with
  `duplicate_of`. So the merged accepted count can be below the run's target; `MergeResult` says
  by how much.

The output is built in a temp folder beside DIR and renamed into place; an existing DIR is
replaced only if an earlier merge wrote it (`merged.json`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from agen import yaml_text
from agen.config import parse_config
from agen.coord.layout import worker_dirs
from agen.errors import ConfigError, StorageError
from agen.gen.dedup import Deduper
from agen.gen.seeds import load_seeds
from agen.run.rundir import DEDUP_CACHE, atomic_write, run_config_dir
from agen.run.shards import ShardWriter, fsync_dir, read_records

MARKER = "merged.json"


@dataclass
class MergeResult:
    workers: list[str] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=dict)
    near_duplicates: int = 0
    exact_duplicates: int = 0
    repeated_ids: int = 0
    out: str = ""


def merge_run(root: Path, out: Path) -> MergeResult:
    dirs = worker_dirs(root)
    if not dirs:
        raise ConfigError(f"{root}: not a coordinated run root (no started worker under {root / 'workers'})")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ConfigError(f"{out}: exists and is not an earlier merge's output; choose another --out")
    cfg = parse_config(yaml_text.load((dirs[0] / "config.yaml").read_text(encoding="utf-8")),
                       str(dirs[0] / "config.yaml"))
    fps = {orjson.loads((d / "run.json").read_bytes())["fingerprint"] for d in dirs}
    if len(fps) != 1:
        raise ConfigError(f"{root}: its workers ran different configs (fingerprints {', '.join(sorted(fps))})")
    tmp = out.with_name(f".{out.name}.merging")
    shutil.rmtree(tmp, ignore_errors=True)
    res = MergeResult(workers=[d.name for d in dirs], out=str(out))
    try:
        _write(cfg, dirs, tmp, out, res)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        fsync_dir(out.parent)
    except OSError as exc:
        raise StorageError(f"merging into {out} failed: {exc.strerror or exc}", str(out)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _write(cfg, dirs: list[Path], tmp: Path, out: Path, res: MergeResult) -> None:  # type: ignore[no-untyped-def]
    tmp.mkdir(parents=True)
    out_cfg = cfg.model_copy(update={"coordinator": None, "output": cfg.output.model_copy(update={"dir": str(out)})})
    atomic_write(tmp / "config.yaml", yaml_text.dump(out_cfg.model_dump(mode="json"), sort_keys=False).encode())
    # the index's files next to the output (a merge of a large run outgrows RAM), not the system temp dir
    dedup = Deduper(threshold=cfg.dedup.near_threshold, store=tmp / DEDUP_CACHE)
    try:
        _merge_into(cfg, dirs, tmp, dedup, res)
    finally:
        dedup.close()
        shutil.rmtree(tmp / DEDUP_CACHE, ignore_errors=True)


def _merge_into(cfg, dirs: list[Path], tmp: Path, dedup: Deduper, res: MergeResult) -> None:  # type: ignore[no-untyped-def]
    config_dir = run_config_dir(dirs[0])
    try:
        for ex in load_seeds(cfg.seeds, config_dir):
            dedup.add(ex.question, ex.id)
    except ConfigError:
        pass  # seeds moved since the run: the cross-worker pass still runs, against the run's own
    writers = {s: ShardWriter(tmp / s, cfg.output.shard_max_records, cfg.output.shard_max_bytes)
               for s in ("accepted", "rejected")}
    ledger = ShardWriter(tmp / "ledger", 1_000_000, 1 << 40)
    for w in (*writers.values(), ledger):
        w.open()
    seen_ids: set[str] = set()
    sessions: list[dict] = []
    for d in dirs:
        meta = orjson.loads((d / "run.json").read_bytes())
        offset = len(sessions)
        sessions += [{**s, "worker": d.name} for s in meta.get("sessions", [])]
        for stream in ("accepted", "rejected"):
            if not (d / stream).exists():
                continue
            batch: dict[str, list[bytes]] = {"accepted": [], "rejected": []}
            for r in read_records(d / stream):
                if r["id"] in seen_ids:
                    res.repeated_ids += 1
                    continue
                seen_ids.add(r["id"])
                r["worker"], r["session"] = d.name, (r.get("session") or 0) + offset
                if r["status"] == "accepted":
                    dup = dedup.check_and_add(r["question"], r["id"])
                    if dup is not None:
                        kind = "merge_exact" if dup.kind == "exact" else "merge_near"
                        res.exact_duplicates += dup.kind == "exact"
                        res.near_duplicates += dup.kind != "exact"
                        r.update(status="rejected", reason=f"duplicate:{kind}", duplicate_of=dup.match_id,
                                 duplicate_score=round(dup.score, 4))
                    else:
                        res.accepted[r["stage"]] = res.accepted.get(r["stage"], 0) + 1
                batch["accepted" if r["status"] == "accepted" else "rejected"].append(orjson.dumps(r) + b"\n")
            for s, lines in batch.items():
                writers[s].write_lines(lines)
        if (d / "ledger").exists():
            lines = []
            for row in read_records(d / "ledger"):
                row["session"] = (row.get("session") or 0) + offset
                lines.append(orjson.dumps(row) + b"\n")
                if len(lines) >= 10_000:
                    ledger.write_lines(lines)
                    lines = []
            ledger.write_lines(lines)
    for w in (*writers.values(), ledger):
        w.close()
    meta = orjson.loads((dirs[0] / "run.json").read_bytes())
    atomic_write(tmp / "run.json", orjson.dumps({
        "fingerprint": meta["fingerprint"], "created": time.time(), "config_dir": meta.get("config_dir"),
        "seeds_digest": meta.get("seeds_digest"), "sessions": sessions, "merged_from": res.workers},
        option=orjson.OPT_INDENT_2))
    atomic_write(tmp / MARKER, orjson.dumps(asdict(res), option=orjson.OPT_INDENT_2))


def readable_run(path: Path) -> Path:
    """A run directory `report`/`export` can read: `path` itself, or for a coordinated run root
    its merge, refreshed into RUN_ROOT/merged."""
    from agen.coord.layout import is_run_root

    if not is_run_root(path):
        return path
    merge_run(path, path / "merged")
    return path / "merged"

