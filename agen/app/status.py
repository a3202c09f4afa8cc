"""`agen status`: progress, spend and what is left, read from a run directory's data files alone."""

from __future__ import annotations

from pathlib import Path

from agen.app.summary import render_summary
from agen.coord.layout import is_run_root, worker_dirs
from agen.errors import ConfigError
from agen.run.ledger import costs_from_ledger
from agen.run.restore import restore
from agen.run.rundir import RunDir, _read_json, load_snapshot


def snapshot_from_files(root: Path) -> dict:
    """The same figures a live run reports, rebuilt offline (works on finished or crashed runs);
    on a coordinated run's root, summed over every worker directory."""
    if is_run_root(root):
        return _run_root_snapshot(root)
    cfg = load_snapshot(root)
    meta = _read_json(root / "run.json")
    run_dir = RunDir(root, meta["fingerprint"], len(meta.get("sessions", [])) - 1, resumed=True)
    restored = restore(run_dir)
    costs, previous = costs_from_ledger(root, restored.done_ids)
    targets = {"propose": cfg.propose.target, "amplify": cfg.amplify.target}
    stages = {}
    for name, target in targets.items():
        c = restored.counts.get(name)
        stages[name] = {"accepted": c.accepted if c else 0, "finished": c.finished if c else 0,
                        "target": target, "inflight": 0, "reasons": dict(c.reasons) if c else {}}
    return {"fingerprint": meta["fingerprint"], "session": run_dir.session, "stages": stages,
            "costs": costs.snapshot(),
            "previous_sessions": {"billing_unknown_requests": previous.billing_unknown,
                                  "redone_usd": previous.redone_usd}}


def _sum(a: object, b: object) -> object:
    """Numbers added, dicts merged key by key (counts, reasons, cost tallies of several workers)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _sum(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in a | b}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a + b
    return a


def _run_root_snapshot(root: Path) -> dict:
    dirs = worker_dirs(root)
    if not dirs:
        raise ConfigError(f"{root}: a run root with no worker directory yet (nothing under {root / 'workers'} "
                          f"has started)")
    snaps = [snapshot_from_files(d) for d in dirs]
    out = dict(snaps[0])
    for key in ("stages", "costs", "previous_sessions"):
        for other in snaps[1:]:
            out[key] = _sum(out[key], other[key])
    for name, stage in out["stages"].items():
        stage["target"] = snaps[0]["stages"][name]["target"]
    out["session"] = sum(s["session"] + 1 for s in snaps) - 1
    out["workers"] = [d.name for d in dirs]
    return out


def run_status(root: Path) -> str:
    snap = snapshot_from_files(root)
    left = {n: max(0, s["target"] - s["accepted"]) for n, s in snap["stages"].items()}
    done = all(v == 0 for v in left.values())
    tail = "complete" if done else "left: " + ", ".join(f"{n} {v}" for n, v in left.items())
    workers = f" ({len(snap['workers'])} workers: {', '.join(snap['workers'])})" if "workers" in snap else ""
    return render_summary(snap) + f"\n\nStatus: {tail}{workers}"
