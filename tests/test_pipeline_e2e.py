"""End to end over real HTTP: the pipeline against the simulated provider in its own process."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp

from agen.config import parse_config
from agen.run.rundir import read_ledger
from agen.app.runner import EXIT_INPUT, EXIT_NO_PROGRESS, EXIT_OK, run_session
from agen.sim.process import SimProcess
from agen.sim.world import true_answer
from agen.gen.answers import equivalent
from conftest import ROOT, quick_cfg, quick_raw, records, sim_config_file


def _ids_unique(recs: list[dict]) -> None:
    ids = Counter(r["id"] for r in recs)
    assert not [i for i, n in ids.items() if n > 1], "a record id was written twice"


def test_filter_raises_precision_of_accepted_examples(tmp_path):
    """Accepted examples are correct far more often than the unfiltered candidates."""
    cfg = quick_cfg(tmp_path, proposals=10, target=120, simulator={"config": str(sim_config_file(tmp_path, latency_ms=5))})
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    recs = records(Path(cfg.output.dir))
    _ids_unique(recs)
    voted = [r for r in recs if r["reason"].startswith("vote:")]
    accepted = [r for r in recs if r["status"] == "accepted"]
    assert len(accepted) >= 130
    correct = lambda r: equivalent(r["answer"], true_answer(r["question"]) or "nan")  # noqa: E731
    before = sum(map(correct, voted)) / len(voted)
    after = sum(map(correct, accepted)) / len(accepted)
    print(f"precision before vote {before:.3f} ({len(voted)} candidates), after {after:.3f} ({len(accepted)} accepted)")
    assert after >= 0.93 and after - before >= 0.10
    samples = sum(r["vote"]["samples"] for r in voted)
    print(f"early stopping used {samples} of {16 * len(voted)} samples ({samples / (16 * len(voted)):.0%})")
    assert samples < 0.8 * 16 * len(voted)
    assert all(len(r["vote"]["votes"]) == r["vote"]["samples"] for r in voted)


def test_early_stop_decides_as_the_full_vote(tmp_path):
    """With the same samples, early-stopped voting accepts and rejects exactly what the full vote does."""
    sim = str(sim_config_file(tmp_path, latency_ms=2))
    results = {}
    for early in (True, False):
        cfg = quick_cfg(tmp_path / str(early), proposals=25, target=0, simulator={"config": sim},
                        vote={"early_stop": early}, propose={"max_attempts": 30})
        # 30 attempts may fall short of 25 proposals: that is "max_attempts reached" (5), not a crash
        assert run_session(cfg, live=False).exit_code in (EXIT_OK, EXIT_NO_PROGRESS)
        results[early] = {r["id"].rsplit("-", 1)[1]: r for r in records(Path(cfg.output.dir))
                          if r["reason"].startswith("vote:")}
    common = set(results[True]) & set(results[False])
    assert len(common) >= 20
    for idx in common:
        assert results[True][idx]["status"] == results[False][idx]["status"], idx
        full_votes = results[False][idx]["vote"]["votes"]
        early_votes = results[True][idx]["vote"]["votes"]
        assert full_votes[: len(early_votes)] == early_votes  # same samples, stopped sooner
    saved = sum(16 - results[True][i]["vote"]["samples"] for i in common)
    print(f"early stopping saved {saved} of {16 * len(common)} samples")
    assert saved > 0


def test_faults_every_candidate_ends_once_with_a_reason(tmp_path):
    """With 5xx, 429 and malformed bodies injected, every candidate ends in one of accepted/rejected/failed.

    Each fault is drawn at 5% over ~300 calls, so a run without one of them has odds ~1e-7 (at 2%
    a CI run once drew no 429); random 429s ask for 50 ms so their lane pauses stay short."""
    sim = sim_config_file(tmp_path, latency_ms=3, faults={"error_5xx_p": 0.05, "error_429_p": 0.05,
                                                          "malformed_p": 0.05, "throttle_s": 0.05})
    cfg = quick_cfg(tmp_path, proposals=8, target=40, simulator={"config": str(sim)},
                    models={"strong": {"provider": "openai", "model": "sim-large", "base_url": "sim", "max_retries": 2},
                            "cheap": {"provider": "openai", "model": "sim-small", "base_url": "sim", "max_retries": 2}})
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    root = Path(cfg.output.dir)
    recs = records(root)
    _ids_unique(recs)
    assert {r["status"] for r in recs} <= {"accepted", "rejected", "failed", "surplus"}
    assert all(r["reason"] for r in recs)
    outcomes = Counter(row["outcome"] for row in read_ledger(root).calls)
    assert outcomes["throttle"] and outcomes["capacity"] and outcomes["bad_response"], outcomes
    ledger_tasks = {row["task_id"].split("/")[0] for row in read_ledger(root).calls}
    assert ledger_tasks == {r["id"] for r in recs}  # every task that spent money ended in a record
    assert sum(r["status"] == "accepted" for r in recs) >= 48
    _loads_with_datasets(root, len(recs))


def _loads_with_datasets(root: Path, n: int) -> None:
    """The shards load with `datasets.load_dataset("json", ...)` unchanged."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    total = 0
    for stream in ("accepted", "rejected"):
        ds = datasets.load_dataset("json", data_files=str(root / stream / "*.jsonl"), split="train",
                                   cache_dir=str(root.parent / "hf-cache"))
        assert {"id", "question", "answer", "status", "reason"} <= set(ds.column_names)
        total += ds.num_rows
    assert total == n


def test_bad_input_sends_no_request(tmp_path):
    """A malformed seed file is reported with file and line, exit 2, and the provider sees no request."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"question": "What is 2+2?", "answer": "#### 4"}\n{"question": 7}\n')
    with SimProcess() as sim:
        raw = quick_raw(tmp_path)
        del raw["simulator"]
        for m in raw["models"].values():
            m["base_url"] = sim.base_url + "/v1"
        raw["seeds"]["path"] = str(seeds)
        out = run_session(parse_config(raw), live=False)
        assert out.exit_code == EXIT_INPUT
        assert f"{seeds}:2: no text in field 'question'" in out.message
        import asyncio

        async def stats():
            async with aiohttp.ClientSession() as s, s.get(sim.base_url + "/sim/stats") as r:
                return await r.json()

        stats = asyncio.run(stats())
        assert sum(m.get("requests", 0) for m in stats.values()) == 0
    assert not (tmp_path / "run").exists()


def test_rerun_of_a_finished_run_sends_nothing_and_writes_nothing(tmp_path):
    """Running a finished run again finds every target met: no new records, no duplicate ids."""
    cfg = quick_cfg(tmp_path, proposals=4, target=10, simulator={"config": str(sim_config_file(tmp_path, latency_ms=2))})
    assert run_session(cfg, live=False).exit_code == EXIT_OK
    root = Path(cfg.output.dir)
    before = sorted(r["id"] for r in records(root))
    calls = len(read_ledger(root).calls)
    again = run_session(cfg, live=False)
    assert again.exit_code == EXIT_OK and again.message.startswith("already complete")
    assert sorted(r["id"] for r in records(root)) == before
    assert len(read_ledger(root).calls) == calls


def test_quickstart_command_writes_shards_and_summary(tmp_path):
    """`python -m agen run configs/quickstart.yaml` as a new user runs it: shards and a funnel."""
    proc = subprocess.run([sys.executable, "-m", "agen", "run", "configs/quickstart.yaml", "--out",
                           str(tmp_path / "qs")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Acceptance funnel" in proc.stdout and "each" in proc.stdout
    assert (tmp_path / "qs" / "accepted" / "part-00000.jsonl").stat().st_size > 0


def test_budget_stops_cleanly_and_keeps_what_it_has(tmp_path):
    """A dollar budget stops admission: exit 0, 'budget reached', spend near the budget, work kept."""
    cfg = quick_cfg(tmp_path, proposals=10, target=5000, budget={"usd": 0.15},
                    simulator={"config": str(sim_config_file(tmp_path, latency_ms=2))})
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK and out.message.startswith("stopped: the budget ($0.15) is reached"), out.message
    assert "amplify " in out.message and "/5000" in out.message  # says how far it got
    spent = out.snapshot["costs"]["total"]["cost_usd"]
    assert 0.15 <= spent < 0.25  # in-flight work finishes after the budget is hit, nothing more starts
    recs = records(Path(cfg.output.dir))
    _ids_unique(recs)
    assert sum(r["status"] == "accepted" for r in recs) > 10


def test_anthropic_wire_format_end_to_end(tmp_path):
    """The whole pipeline over the Anthropic Messages format (no `n`: one seeded call per vote)."""
    models = {name: {"provider": "anthropic", "model": wire, "base_url": "sim", "supports_n": False,
                     "max_concurrency": 64}
              for name, wire in (("strong", "sim-large"), ("cheap", "sim-small"))}
    cfg = quick_cfg(tmp_path, proposals=4, target=8, models=models,
                    simulator={"config": str(sim_config_file(tmp_path, latency_ms=2))})
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    root = Path(cfg.output.dir)
    recs = records(root)
    _ids_unique(recs)
    # one sample per call; candidates still voting when the target was met have no record
    decided = {r["id"] for r in recs}
    vote_calls = [c for c in read_ledger(root).calls if c["stage"].endswith(".vote") and c["outcome"] == "ok"
                  and c["task_id"].split("/", 1)[0] in decided]
    assert len(vote_calls) == sum(r["vote"]["samples"] + r["vote"]["truncated"] for r in recs if "vote" in r)
    assert sum(r["status"] == "accepted" for r in recs) >= 12


def test_edited_seed_file_is_refused_on_resume(tmp_path):
    """Seeds changed since the run started change its output: resume refuses, naming the seed file."""
    seeds = tmp_path / "seeds.jsonl"
    rows = (ROOT / "data" / "gsm8k_sample.jsonl").read_text().splitlines()[:20]
    seeds.write_text("\n".join(rows) + "\n")
    cfg = quick_cfg(tmp_path, proposals=2, target=0, seeds={"path": str(seeds)},
                    simulator={"config": str(sim_config_file(tmp_path, latency_ms=2))})
    assert run_session(cfg, live=False).exit_code == EXIT_OK
    seeds.write_text("\n".join(rows[:19]) + "\n")
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_INPUT and "seed file" in out.message and "changed" in out.message
