"""Resume through the real session path: torn tails, corruption, config changes and an exhausted quota."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import SimProcess, check_run, committed_ids, sim_stats, write_run_config, write_sim_config  # noqa: E402

from agen.config import load_config  # noqa: E402
from agen.run.rundir import read_ledger  # noqa: E402
from agen.app.runner import EXIT_INPUT, EXIT_OK, EXIT_PROVIDER, EXIT_STORAGE, run_session  # noqa: E402


@pytest.fixture
def sim(tmp_path):
    with SimProcess(write_sim_config(tmp_path / "sim.yaml", latency_ms=3)) as s:
        yield s


def _run(cfg_path: Path, **overrides):
    cfg = load_config(cfg_path, {k.replace("__", "."): v for k, v in overrides.items()})
    return run_session(cfg, live=False)


def _resume(root: Path):
    return run_session(load_config(root / "config.yaml", {"output.dir": str(root)}), live=False)


def test_torn_tails_are_cut_and_the_run_completes(sim, tmp_path):
    """Half a JSON line at the end of the last accepted shard and of the ledger is cut on resume; the run finishes."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=4, target=12)
    assert _run(cfg).exit_code == EXIT_OK
    before = set(committed_ids(root))
    torn = b'{"id": "torn-0001", "stage": "amplify", "status": "acc'
    shard = sorted((root / "accepted").glob("part-*.jsonl"))[-1]
    ledger = sorted((root / "ledger").glob("part-*.jsonl"))[-1]
    original = {p: p.read_bytes() for p in (shard, ledger)}
    for p in (shard, ledger):
        with open(p, "ab") as f:
            f.write(torn)
    out = _run(cfg, amplify__target=30)
    assert out.exit_code == EXIT_OK, out.message
    assert torn not in shard.read_bytes() and torn not in ledger.read_bytes()
    assert all(p.read_bytes().startswith(original[p]) for p in (shard, ledger))  # only the torn bytes went
    chk = check_run(root, before, {"propose": 4, "amplify": 30}, sim.base_url)
    assert chk.problems == []


def test_corruption_in_the_middle_refuses_to_resume_naming_file_and_line(sim, tmp_path):
    """A bad line before the last one is never skipped: resume exits 4 naming file:line, and nothing is written."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=4, target=10)
    assert _run(cfg).exit_code == EXIT_OK
    shard = sorted((root / "accepted").glob("part-*.jsonl"))[0]
    lines = shard.read_bytes().split(b"\n")
    lines[1] = lines[1][: len(lines[1]) // 2]
    shard.write_bytes(b"\n".join(lines))
    size = shard.stat().st_size
    out = _resume(root)
    assert out.exit_code == EXIT_STORAGE
    assert f"{shard}:2:" in out.message and "corrupt" in out.message
    assert shard.stat().st_size == size


def test_changed_output_field_is_refused_by_name_and_limits_may_change(sim, tmp_path):
    """Changing vote.k is refused with 'vote.k' named and nothing sent; changing a model's concurrency resumes."""
    root = tmp_path / "run"
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=4, target=10)
    assert _run(cfg).exit_code == EXIT_OK
    requests = sum(m["requests"] for m in sim_stats(sim.base_url).values())
    out = _run(cfg, vote__k=8)
    assert out.exit_code == EXIT_INPUT and "vote.k" in out.message
    assert sum(m["requests"] for m in sim_stats(sim.base_url).values()) == requests
    raw = yaml.safe_load(cfg.read_text())
    raw["models"]["cheap"]["max_concurrency"] = 7
    cfg.write_text(yaml.safe_dump(raw))
    out = _run(cfg, amplify__target=20)
    assert out.exit_code == EXIT_OK, out.message
    assert check_run(root, set(), {"propose": 4, "amplify": 20}, sim.base_url).problems == []


def test_exhausted_quota_stops_with_exit_3_without_retry_then_resumes_on_a_fresh_account(tmp_path):
    """quota_after on the cheap model: exit 3 with the provider's message, each refused request sent once; resume completes."""
    sim_cfg = write_sim_config(tmp_path / "sim-quota.yaml", latency_ms=3)
    raw = yaml.safe_load(sim_cfg.read_text())
    raw["models"]["sim-small"]["faults"]["quota_after"] = 60
    sim_cfg.write_text(yaml.safe_dump(raw))
    root = tmp_path / "run"
    with SimProcess(sim_cfg) as sim:
        cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=4, target=40)
        out = _run(cfg)
        assert out.exit_code == EXIT_PROVIDER
        assert "exceeded your current quota" in out.message
        small = sim_stats(sim.base_url)["sim-small"]
    calls = read_ledger(root).calls
    fatal = [r for r in calls if r["outcome"] == "fatal_run"]
    # Refused exactly the requests already in flight when the quota ran out; none was sent again.
    assert len(fatal) == small["status"].get("429", 0) >= 1
    assert small["requests"] == 60 + len(fatal)
    assert all(r["model"] == "cheap" for r in fatal) and len(fatal) <= 256  # models.cheap.max_concurrency
    per_task = Counter(r["task_id"] for r in fatal)
    assert max(per_task.values()) == 1
    last_fatal = {r["task_id"]: i for i, r in enumerate(calls) if r["outcome"] == "fatal_run"}
    assert not [r for i, r in enumerate(calls) if r["task_id"] in last_fatal and i > last_fatal[r["task_id"]]]
    before = set(committed_ids(root))
    with SimProcess(write_sim_config(tmp_path / "sim.yaml", latency_ms=3)) as fresh:
        cfg = write_run_config(tmp_path / "run2.yaml", fresh.base_url, root, proposals=4, target=40)
        out = _run(cfg)
        assert out.exit_code == EXIT_OK, out.message
        chk = check_run(root, before, {"propose": 4, "amplify": 40})
    assert chk.problems == []


def test_restore_classifies_surplus_reasons_by_what_decided_them():
    """`surplus:vote:agree` was judged by the filter; `surplus:not_filtered` passed but was not."""
    from collections import Counter

    from agen.engine.admission import StageCounts

    c = StageCounts()
    c.restore(3, 10, Counter({"vote:agree": 3, "surplus:vote:agree": 2, "surplus:not_filtered": 1,
                              "parse:no_boxed_answer": 4}), 0.0)
    assert (c.judged, c.passed, c.generated) == (5, 6, 10)
