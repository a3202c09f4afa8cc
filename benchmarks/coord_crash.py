"""Scale-out crash test: N `agen run --coordinator` workers on one sim and one Redis, `kill -9` one
at random moments and restart it (`agen resume RUN_ROOT/workers/W`), then check the whole run.

    python benchmarks/coord_crash.py              # 4 workers, 12 kills
    python benchmarks/coord_crash.py --quick      # 4 workers, 4 kills

After every worker has finished: each target met exactly (accepted slots), no committed id lost
(every id seen in a shard before a kill is still there), no id in two shards (or twice in one),
every shard line parses, no ledger line twice and no sim request id in two ledgers, the ledgers'
spend matches the sim's bill up to requests cut off by a kill, and `agen status RUN_ROOT` agrees
with the files (via `agen merge`, which is an ordinary run directory `check_run` reads). The
helpers are the harness of `tests/test_coord_crash.py`.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from crash_resume import (SimProcess, agen, check_run, committed_ids, kill_group, sessions,  # noqa: E402
                          write_run_config, write_sim_config)

from agen.run.shards import read_records  # noqa: E402

from agen.app.merge import merge_run  # noqa: E402
from agen.app.status import snapshot_from_files  # noqa: E402
from agen.coord.layout import worker_dir  # noqa: E402
from agen.sim.redis_process import RedisProcess  # noqa: E402


@dataclass
class ScaleCrash:
    kills: int = 0
    restarts: int = 0
    exit_codes: dict[str, list[int]] = field(default_factory=dict)
    lost_during: int = 0
    duplicated: int = 0
    accepted: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    status: str = ""


def start(cfg: Path, root: Path, w: str, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    wd = worker_dir(root, w)
    if (wd / "run.json").exists():
        return agen(["resume", str(wd)], log)
    return agen(["run", str(cfg), "--coordinator", redis_url, "--worker-id", w], log)


def accepted_amplify(root: Path, names: list[str]) -> int:
    """Amplified records committed to the accepted shards of every worker so far."""
    return sum(1 for w in names if (worker_dir(root, w) / "accepted").exists()
               for r in read_records(worker_dir(root, w) / "accepted") if "-amplify-" in r["id"])


def scale_crash(tmp: Path, sim_url: str, redis_url: str, *, workers: int = 4, kills: int = 6,
                proposals: int = 8, target: int = 200, rng: random.Random | None = None,
                lease_s: float = 3.0, timeout_s: float = 240.0) -> ScaleCrash:
    rng = rng or random.Random(0)
    res = ScaleCrash()
    root = tmp / "run"
    cfg = write_run_config(tmp / "run.yaml", sim_url, root, proposals=proposals, target=target,
                           coordinator={"url": redis_url, "worker_id": "unset", "lease_s": lease_s})
    names = [f"w{i}" for i in range(workers)]
    logs = {w: tmp / f"{w}.log" for w in names}
    opened = {w: 0 for w in names}  # sessions in w's run.json before its latest start
    procs = {w: start(cfg, root, w, redis_url, logs[w]) for w in names}
    res.exit_codes = {w: [] for w in names}
    ever: dict[str, set[str]] = {w: set() for w in names}
    t0 = time.monotonic()
    # Kills are paced by the run's progress, not by the clock: kill k waits until about k/(kills+1)
    # of the target is committed (jittered), so every planned kill lands while work remains however
    # fast or slow the machine is. About one in seven instead hits a worker during its start-up.
    marks = sorted(target * (k + rng.uniform(-0.4, 0.4)) / (kills + 1) for k in range(1, kills + 1))
    last_started: str | None = None
    while res.kills < kills:
        alive = [w for w in names if procs[w].poll() is None]
        if not alive:
            break
        if last_started in alive and rng.random() < 0.15:
            w = last_started
            time.sleep(rng.uniform(0.05, 0.8))
        else:
            deadline = time.monotonic() + timeout_s
            while (accepted_amplify(root, names) < marks[res.kills] and time.monotonic() < deadline
                   and any(procs[x].poll() is None for x in names)):
                time.sleep(0.05)
            alive = [x for x in names if procs[x].poll() is None and sessions(worker_dir(root, x)) > opened[x]]
            if not alive:
                alive = [x for x in names if procs[x].poll() is None]
                if not alive:
                    break
            w = rng.choice(alive)
        wd = worker_dir(root, w)
        if procs[w].poll() is not None:
            res.exit_codes[w].append(procs[w].returncode)
            continue
        kill_group(procs[w])
        procs[w].wait()
        res.kills += 1
        res.exit_codes[w].append(-9)
        if (wd / "run.json").exists():
            now = set(committed_ids(wd))
            res.lost_during += len(ever[w] - now)
            ever[w] |= now
        opened[w] = sessions(wd)
        procs[w] = start(cfg, root, w, redis_url, logs[w])
        last_started = w
        res.restarts += 1
    for w in names:
        rc = procs[w].wait(timeout=timeout_s)
        res.exit_codes[w].append(rc)
        if rc != 0:
            res.problems.append(f"{w} exited {rc}; see {logs[w]}")
        ever[w] |= set(committed_ids(worker_dir(root, w)))
    res.seconds = time.monotonic() - t0
    _check(res, root, tmp / "merged", ever, {"propose": proposals, "amplify": target}, sim_url)
    return res


def _check(res: ScaleCrash, root: Path, merged: Path, ever: dict[str, set[str]], targets: dict[str, int],
           sim_url: str) -> None:
    all_ids = Counter(i for w in ever for i in committed_ids(worker_dir(root, w)))
    res.duplicated = sum(n - 1 for n in all_ids.values() if n > 1)
    lost = sum(len(ids - set(committed_ids(worker_dir(root, w)))) for w, ids in ever.items())
    snap = snapshot_from_files(root)
    res.accepted = {s: v["accepted"] for s, v in snap["stages"].items()}
    for stage, t in targets.items():
        if res.accepted.get(stage, 0) != t:
            res.problems.append(f"{stage}: {res.accepted.get(stage, 0)} accepted across workers, target {t}")
    merge_run(root, merged)
    chk = check_run(merged, set(all_ids), None, sim_url)  # lines parse, ledger once, bill = ledger, status = files
    res.problems += chk.problems
    if lost or res.lost_during:
        res.problems.append(f"{lost + res.lost_during} committed ids lost")
    if res.duplicated:
        res.problems.append(f"{res.duplicated} ids committed twice across shards")
    merged_snap = snapshot_from_files(merged)
    if abs(merged_snap["costs"]["total"]["cost_usd"] - snap["costs"]["total"]["cost_usd"]) > 1e-9:
        res.problems.append("status of the run root and of its merge disagree on the spend")
    status = subprocess.run([sys.executable, "-m", "agen", "status", str(root)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    res.status = " ".join(status.stdout.split())
    for stage, t in targets.items():
        if f"{res.accepted.get(stage, 0)}/{t}" not in res.status:
            res.problems.append(f"agen status does not show {stage} {res.accepted.get(stage, 0)}/{t}")
    if status.returncode != 0 or "Status: complete" not in res.status:
        res.problems.append(f"agen status: {status.returncode} {res.status[-200:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--target", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    kills, target = (4, 300) if args.quick else (args.kills, args.target)
    import tempfile

    with tempfile.TemporaryDirectory() as d, \
            SimProcess(write_sim_config(Path(d) / "sim.yaml", latency_ms=60)) as sim, RedisProcess() as r:
        sim.reset()
        res = scale_crash(Path(d), sim.base_url, r.url, workers=args.workers, kills=kills, target=target,
                          rng=random.Random(args.seed))
    print(json.dumps({"workers": args.workers, "kills": res.kills, "restarts": res.restarts,
                      "seconds": round(res.seconds, 1), "accepted": res.accepted, "duplicated": res.duplicated,
                      "lost_during": res.lost_during, "problems": res.problems}))
    sys.exit(1 if res.problems else 0)


if __name__ == "__main__":
    main()
