"""`agen merge` and `agen status` on a coordinated run root (worker directories written as the sink does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from conftest import ROOT, quick_cfg, records

from agen.app.merge import merge_run, readable_run
from agen.app.status import snapshot_from_files
from agen.errors import ConfigError


def worker(root: Path, name: str, fp: str, cfg_yaml: str, recs: list[dict[str, Any]], ledger: list[dict]) -> None:
    d = root / "workers" / name
    for stream in ("accepted", "rejected", "ledger"):
        (d / stream).mkdir(parents=True)
    rows = {"accepted": [r for r in recs if r["status"] == "accepted"],
            "rejected": [r for r in recs if r["status"] != "accepted"], "ledger": ledger}
    for stream, lines in rows.items():
        (d / stream / "part-00000.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    (d / "config.yaml").write_text(cfg_yaml)
    (d / "run.json").write_bytes(orjson.dumps({"fingerprint": fp, "sessions": [{"pid": 1}, {"pid": 2}]}))


def rec(fp: str, stage: str, i: int, status: str, question: str, session: int = 0) -> dict[str, Any]:
    return {"id": f"{fp[:8]}-{stage}-{i:08d}", "stage": stage, "status": status, "question": question,
            "answer": "4", "reason": "vote:agree" if status == "accepted" else "vote:majority_disagrees",
            "session": session, "cost_usd": 0.001, "created": 0.0}


def call(session: int, req: int, cost: float) -> list[dict[str, Any]]:
    return [{"ev": "begin", "session": session, "req": req, "task_id": "t", "model": "cheap", "stage": "amplify"},
            {"ev": "call", "session": session, "ts": 1.0 + req, "model": "cheap", "stage": "amplify", "task_id": "t",
             "outcome": "ok", "status": 200, "cost_usd": cost, "latency_s": 0.1, "request_id": f"r{session}{req}",
             "usage": {"input_tokens": 10, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 5,
                       "reasoning_tokens": 0}},
            {"ev": "end", "session": session, "req": req, "cut": False}]


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    cfg = quick_cfg(tmp_path, proposals=1, target=3)
    fp = cfg.fingerprint()
    text = yaml.safe_dump(cfg.model_dump(mode="json"))
    root = tmp_path / "big"
    q = "A farmer has 12 cows and buys 7 more cows at the market. How many cows does the farmer have now?"
    worker(root, "w1", fp, text, [rec(fp, "propose", 0, "accepted", "What is 2 + 2 in apples?"),
                                  rec(fp, "amplify", 0, "accepted", q),
                                  rec(fp, "amplify", 1, "rejected", "Something else?", session=1)],
           call(0, 0, 0.01) + call(1, 0, 0.02))
    worker(root, "w2", fp, text, [rec(fp, "amplify", 2, "accepted", q.replace("buys", "then buys")),  # near dup
                                  rec(fp, "amplify", 3, "accepted", "How many legs do 3 spiders have in total?")],
           call(0, 0, 0.04))
    return root


def test_merge_is_one_run_directory_with_cross_worker_near_duplicates_moved(run_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    res = merge_run(run_root, out)
    assert res.workers == ["w1", "w2"] and res.near_duplicates == 1 and res.accepted == {"propose": 1, "amplify": 2}
    recs = {r["id"][-12:]: r for r in records(out)}
    dup = recs["ify-00000002"]
    assert dup["status"] == "rejected" and dup["reason"] == "duplicate:merge_near"
    assert dup["duplicate_of"].endswith("amplify-00000000") and dup["worker"] == "w2"
    assert recs["ify-00000001"]["session"] == 1 and dup["session"] == 2  # w2's sessions follow w1's two
    snap = snapshot_from_files(out)  # an ordinary run directory
    assert snap["costs"]["total"]["cost_usd"] == pytest.approx(0.07)
    assert snap["previous_sessions"]["billing_unknown_requests"] == 0  # (session, req) stayed unique
    assert merge_run(run_root, out).near_duplicates == 1  # an earlier merge's output is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "merged"]  # the index's files are gone
    assert not (out / "dedup-cache").exists()


def test_status_on_a_run_root_sums_the_workers(run_root: Path) -> None:
    snap = snapshot_from_files(run_root)
    assert snap["stages"]["amplify"]["accepted"] == 3 and snap["stages"]["amplify"]["target"] == 3
    assert snap["costs"]["total"]["cost_usd"] == pytest.approx(0.07) and snap["workers"] == ["w1", "w2"]
    out = subprocess.run([sys.executable, "-m", "agen", "status", str(run_root)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "Status: complete (2 workers: w1, w2)" in out.stdout


def test_export_on_a_run_root_reads_its_merge(run_root: Path) -> None:
    assert readable_run(run_root) == run_root / "merged"
    out = subprocess.run([sys.executable, "-m", "agen", "export", str(run_root), "--no-card"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "wrote 3 sft rows" in out.stdout  # 4 accepted across workers, one near duplicate moved


def test_merge_refuses_what_it_would_overwrite_or_cannot_read(run_root: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an earlier merge"):
        merge_run(run_root, tmp_path / "taken")
    with pytest.raises(ConfigError, match="not a coordinated run root"):
        merge_run(tmp_path / "nothing", tmp_path / "m")
    out = subprocess.run([sys.executable, "-m", "agen", "merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not a coordinated run root" in out.stderr
