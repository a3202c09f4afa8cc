"""Crash-resume benchmark: `kill -9` a run at random moments, resume until done, count what broke.

    python benchmarks/crash_resume.py            # 100 kills
    python benchmarks/crash_resume.py --quick    # 6 kills, smoke run

One simulated provider (`SimProcess`) serves every session, so its `/sim/stats` see every billed
request across kills. Each agen session runs as `python -m agen run|resume` in its own process
group and is killed with SIGKILL: most kills once the run has committed the next of `kills` jittered
marks of its target (paced by progress, so every kill lands on any machine), some during start-up
and repair. After the last session finishes, the invariants
are checked: no committed id lost, no id written twice, every shard line parses, targets met, no
ledger line recorded twice, and the ledger's spend matches the sim's billing up to requests the
ledger marks as cut off (billing unknown). Prints a table line per kill and a JSON line at the end.

The helpers here are also the test harness of `tests/test_crash_resume.py`, `tests/test_signals.py`
and `tests/test_storage.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agen.config import load_prices, parse_config  # noqa: E402
from agen.cost import cost_usd  # noqa: E402
from agen.run.rundir import read_ledger  # noqa: E402
from agen.run.shards import read_records, shard_paths  # noqa: E402
from agen.sim.process import SimProcess  # noqa: E402
from agen.app.status import snapshot_from_files  # noqa: E402
from agen.types import Usage  # noqa: E402

STREAMS = ("accepted", "rejected", "ledger")


def write_sim_config(path: Path, *, latency_ms: float = 10, faults: dict[str, Any] | None = None) -> Path:
    """configs/sim_models.yaml with a small latency and the given faults on every model."""
    raw = yaml.safe_load((ROOT / "configs" / "sim_models.yaml").read_text())
    for m in raw["models"].values():
        m["latency_ms"] = {"median": latency_ms, "sigma": 0.2}
        if faults:
            m.setdefault("faults", {}).update(faults)
    path.write_text(yaml.safe_dump(raw))
    return path


def write_run_config(path: Path, base_url: str, run_dir: Path, *, proposals: int, target: int,
                     **sections: Any) -> Path:
    """The quick-start config pointed at an already running sim (no `simulator:` child per session)."""
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw.pop("simulator", None)
    raw["seeds"]["path"] = str(ROOT / "data" / "gsm8k_sample.jsonl")
    raw["propose"]["target"] = proposals
    raw["amplify"]["target"] = target
    raw["output"]["dir"] = str(run_dir)
    raw["log_level"] = "warning"
    for m in raw["models"].values():
        m["base_url"] = base_url + "/v1"
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(raw[key].get(k), dict):
                    raw[key][k].update(v)
                else:
                    raw[key][k] = v
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def agen(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`python -m agen ARGS` in its own process group, output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "agen", *args], cwd=ROOT, stdout=out, stderr=out,
                                env={**os.environ, **(env or {})}, start_new_session=True)


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def sim_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url + "/sim/stats", timeout=10) as r:
        return json.loads(r.read())


def sessions(root: Path) -> int:
    try:
        return len(orjson.loads((root / "run.json").read_bytes())["sessions"])
    except (OSError, ValueError, KeyError):
        return 0


def committed_ids(root: Path) -> list[str]:
    """Ids in the accepted and rejected shards, a torn last line ignored (as resume will cut it)."""
    return [r["id"] for s in ("accepted", "rejected") if (root / s).exists() for r in read_records(root / s)]


def strict_line_count(root: Path) -> int:
    """Every line of every shard must parse and end in a newline; returns the number of lines."""
    n = 0
    for s in STREAMS:
        for path in shard_paths(root / s) if (root / s).exists() else []:
            data = path.read_bytes()
            assert not data or data.endswith(b"\n"), f"{path}: unfinished last line"
            for i, line in enumerate(data.splitlines()):
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise AssertionError(f"{path}:{i + 1}: does not parse") from None
                n += 1
    return n


@dataclass
class Check:
    """What the invariants found; `problems` is empty when every guarantee held."""

    lost: int = 0
    duplicated: int = 0
    ledger_duplicates: int = 0
    billing_unknown: int = 0
    accepted: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_run(root: Path, ever_committed: set[str], targets: dict[str, int] | None = None,
              sim_url: str | None = None) -> Check:
    """The exactly-once invariants of a finished (or stopped) run directory."""
    out = Check()
    strict_line_count(root)
    ids = Counter(committed_ids(root))
    out.duplicated = sum(n - 1 for n in ids.values() if n > 1)
    out.lost = len(ever_committed - set(ids))
    recs = [r for s in ("accepted", "rejected") for r in read_records(root / s)] if (root / "accepted").exists() else []
    out.accepted = dict(Counter(r["stage"] for r in recs if r["status"] == "accepted"))
    if targets:
        for stage, t in targets.items():
            if out.accepted.get(stage, 0) < t:
                out.problems.append(f"{stage}: {out.accepted.get(stage, 0)} accepted < target {t}")
    rows = list(read_records(root / "ledger"))
    begins = Counter((r["session"], r["req"]) for r in rows if r["ev"] == "begin")
    ends = Counter((r["session"], r["req"]) for r in rows if r["ev"] == "end")
    calls = Counter((r["session"], r["ts"], r["task_id"], r.get("request_id")) for r in rows if r["ev"] == "call")
    req_ids = Counter(r["request_id"] for r in rows if r["ev"] == "call" and r.get("request_id"))
    out.ledger_duplicates = (sum(n - 1 for n in begins.values() if n > 1) + sum(n - 1 for n in ends.values() if n > 1)
                             + sum(n - 1 for n in calls.values() if n > 1))
    if sim_url is not None:  # one sim served every session: its request ids are unique run-wide
        out.ledger_duplicates += sum(n - 1 for n in req_ids.values() if n > 1)
    if set(ends) - set(begins):
        out.problems.append(f"{len(set(ends) - set(begins))} ledger 'end' lines without a 'begin'")
    ledger = read_ledger(root)
    out.billing_unknown = ledger.billing_unknown
    snap = snapshot_from_files(root)
    total = sum(r["cost_usd"] for r in ledger.calls)
    if abs(snap["costs"]["total"]["cost_usd"] - total) > 1e-9:
        out.problems.append(f"status cost {snap['costs']['total']['cost_usd']} != ledger sum {total}")
    if snap["previous_sessions"]["billing_unknown_requests"] != ledger.billing_unknown:
        out.problems.append("status billing-unknown count differs from the ledger's open requests")
    if sim_url is not None:
        out.problems += billing_mismatches(root, sim_stats(sim_url), ledger)
    if out.lost:
        out.problems.append(f"{out.lost} committed ids lost")
    if out.duplicated:
        out.problems.append(f"{out.duplicated} ids written twice")
    if out.ledger_duplicates:
        out.problems.append(f"{out.ledger_duplicates} ledger lines recorded twice")
    return out


_TOKEN_KEYS = (("input", "input_tokens"), ("cached_input", "cached_input_tokens"),
               ("cache_write", "cache_write_tokens"), ("output", "output_tokens"))


def billing_mismatches(root: Path, stats: dict[str, Any], ledger: Any) -> list[str]:
    """Ledger vs the sim's bill, per model: every billed (200) response is a ledger `call` line,
    except responses to requests the ledger marks as cut off (begin without a clean end), at most
    one each when no retries happen. Token totals agree exactly when nothing is unknown, and the
    ledger's dollars are the sim's tokens priced by configs/prices.yaml."""
    cfg = parse_config(yaml.safe_load((root / "config.yaml").read_text()))
    prices = load_prices()
    problems = []
    open_by_model = Counter(r.get("model") for r in ledger.open_requests.values())
    for name, m in cfg.models.items():
        st = stats.get(m.model, {"status": {}, **{k: 0 for _, k in _TOKEN_KEYS}})
        calls = [r for r in ledger.calls if r["model"] == name]
        ok_ledger = sum(1 for r in calls if r["status"] == 200)
        ok_sim = st["status"].get("200", 0)
        unknown = ok_sim - ok_ledger
        if not 0 <= unknown <= open_by_model[name]:
            problems.append(f"{name}: sim billed {ok_sim} responses, ledger has {ok_ledger}, "
                            f"{open_by_model[name]} requests cut off")
        tokens = {k: sum(r["usage"][k] for r in calls) for k, _ in _TOKEN_KEYS}
        for k, sk in _TOKEN_KEYS:
            if (unknown == 0 and tokens[k] != st[sk]) or tokens[k] > st[sk]:
                problems.append(f"{name}: ledger {k} tokens {tokens[k]} vs sim {st[sk]} ({unknown} unknown)")
        price = prices[m.model]
        billed = cost_usd(Usage(st["input_tokens"], st["cached_input_tokens"], st["cache_write_tokens"],
                                st["output_tokens"]), price)
        spent = sum(r["cost_usd"] for r in calls)
        if (unknown == 0 and abs(billed - spent) > 1e-9) or spent > billed + 1e-9:
            problems.append(f"{name}: ledger ${spent:.9f} vs sim tokens priced ${billed:.9f}")
    return problems


@dataclass
class CrashResult:
    kills: int = 0
    sessions: int = 0
    seconds: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    lost_during: int = 0  # ids committed before a kill and missing right after it
    check: Check | None = None


def accepted_amplify(root: Path) -> int:
    """Amplified records committed to the accepted shards so far (torn tails do not count)."""
    if not (root / "accepted").exists():
        return 0
    return sum(1 for r in read_records(root / "accepted") if "-amplify-" in r["id"])


def crash_loop(cfg_path: Path, root: Path, log: Path, *, kills: int, target: int, rng: random.Random,
               early_p: float = 0.15, timeout_s: float = 120.0) -> CrashResult:
    """Run, kill -9 `kills` times (resuming after each), then resume to the end.

    Kills are paced by the run's committed progress, not by the clock: kill k lands once about
    k/(kills+1) of the amplify `target` is committed (jittered), so every planned kill lands while
    work remains however fast or slow the machine is. About one in seven instead hits a session
    during start-up: after a random delay, but never later than the moment it has reopened the
    run directory (so a fast session cannot finish the run first)."""
    res = CrashResult()
    t0 = time.monotonic()
    ever: set[str] = set()
    marks = sorted(target * (k + rng.uniform(-0.4, 0.4)) / (kills + 1) for k in range(1, kills + 1))
    while True:
        args = ["run", str(cfg_path)] if not (root / "run.json").exists() else ["resume", str(root)]
        before = sessions(root)
        proc = agen(args, log)
        res.sessions += 1
        if res.kills < kills:
            limit = time.monotonic() + timeout_s
            if rng.random() < early_p:  # during start-up, reopen and torn-tail repair
                deadline = time.monotonic() + rng.uniform(0.0, 2.0)
                while (proc.poll() is None and time.monotonic() < deadline and sessions(root) <= before):
                    time.sleep(0.005)
            else:  # once the session has reopened the run directory and the run reached the next mark
                while sessions(root) <= before and proc.poll() is None and time.monotonic() < limit:
                    time.sleep(0.01)
                while proc.poll() is None and accepted_amplify(root) < marks[res.kills] and time.monotonic() < limit:
                    time.sleep(0.02)
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()
                res.kills += 1
                res.exit_codes.append(-9)
                if (root / "accepted").exists():
                    now = set(committed_ids(root))
                    res.lost_during += len(ever - now)
                    ever |= now
                continue
        rc = proc.wait(timeout=timeout_s)
        res.exit_codes.append(rc)
        if rc != 0:
            raise RuntimeError(f"session exited {rc}; see {log}")
        if (root / "accepted").exists():
            ever |= set(committed_ids(root))
        break  # exit 0: the run is complete (with fewer kills than planned only if a mark was missed)
    res.seconds = time.monotonic() - t0
    res.ever = ever  # type: ignore[attr-defined]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 kills on a small run (smoke test)")
    ap.add_argument("--kills", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a temp dir)")
    a = ap.parse_args()
    kills = a.kills if a.kills is not None else (6 if a.quick else 100)
    proposals, target = (6, 150) if a.quick else (20, 3000)
    import tempfile

    work = a.work or Path(tempfile.mkdtemp(prefix="agen-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    with SimProcess(write_sim_config(work / "sim.yaml", latency_ms=30)) as sim:
        root = work / "run"
        cfg = write_run_config(work / "run.yaml", sim.base_url, root, proposals=proposals, target=target)
        res = crash_loop(cfg, root, work / "agen.log", kills=kills, target=target, rng=random.Random(a.seed))
        chk = check_run(root, res.ever, {"propose": proposals, "amplify": target}, sim.base_url)  # type: ignore[attr-defined]
    doc = {"benchmark": "crash_resume", "kills": res.kills, "sessions": res.sessions,
           "seconds": round(res.seconds, 2), "lost": chk.lost + res.lost_during, "duplicated": chk.duplicated,
           "ledger_duplicates": chk.ledger_duplicates, "billing_unknown": chk.billing_unknown,
           "accepted": chk.accepted, "problems": chk.problems, "work": str(work)}
    print(f"kills {res.kills}  sessions {res.sessions}  {res.seconds:.1f}s  lost {doc['lost']}  "
          f"duplicated {chk.duplicated}  ledger duplicates {chk.ledger_duplicates}  "
          f"billing unknown {chk.billing_unknown}  accepted {chk.accepted}")
    for p in chk.problems:
        print("PROBLEM:", p)
    print(json.dumps(doc))
    sys.exit(1 if chk.problems or doc["lost"] else 0)


if __name__ == "__main__":
    main()
