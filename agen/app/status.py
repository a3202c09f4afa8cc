"""`agen status`: progress, spend and what is left, read from a run directory's data files alone."""

from __future__ import annotations

from pathlib import Path

from agen.app.summary import render_summary
from agen.run.ledger import costs_from_ledger
from agen.run.restore import restore
from agen.run.rundir import RunDir, _read_json, load_snapshot


def snapshot_from_files(root: Path) -> dict:
    """The same figures a live run reports, rebuilt offline (works on finished or crashed runs)."""
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


def run_status(root: Path) -> str:
    snap = snapshot_from_files(root)
    left = {n: max(0, s["target"] - s["accepted"]) for n, s in snap["stages"].items()}
    done = all(v == 0 for v in left.values())
    tail = "complete" if done else "left: " + ", ".join(f"{n} {v}" for n, v in left.items())
    return render_summary(snap) + f"\n\nStatus: {tail}"
