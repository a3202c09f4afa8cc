"""Open-ended generation end to end over HTTP: category-aware prompts, RIP with a real reward signal."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

import orjson
import yaml

from agen.config import parse_config
from agen.app.runner import EXIT_NO_PROGRESS, EXIT_OK, run_session
from agen.sim import prompt_quality
from conftest import ROOT, records, sim_config_file


def _open_cfg(tmp_path: Path, **sections):
    raw = yaml.safe_load((ROOT / "configs" / "open_ended.yaml").read_text())
    raw["seeds"]["path"] = str(ROOT / "data" / "self_instruct_prompts.jsonl")
    raw["output"]["dir"] = str(tmp_path / "run")
    raw["simulator"] = {"config": str(sim_config_file(tmp_path, latency_ms=3))}
    for key, value in sections.items():
        raw[key].update(value)
    return parse_config(raw)


def test_rip_keeps_prompts_of_higher_hidden_quality(tmp_path):
    """Prompts RIP keeps have clearly higher hidden quality than the unfiltered pool; records carry it all."""
    cfg = _open_cfg(tmp_path, propose={"target": 15}, amplify={"target": 30})
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    root = Path(cfg.output.dir)
    recs = records(root)
    judged = [r for r in recs if r["reason"].startswith("rip:") and r["reason"] != "rip:judge_failed"]
    kept = [r for r in judged if r["status"] == "accepted"]
    q_all = mean(prompt_quality(r["question"]) for r in judged)
    q_kept = mean(prompt_quality(r["question"]) for r in kept)
    print(f"hidden quality: unfiltered pool {q_all:.3f} ({len(judged)} prompts), kept {q_kept:.3f} ({len(kept)})")
    assert q_kept > q_all + 0.08
    frozen = orjson.loads((root / "rip_thresholds.json").read_bytes())["stages"]
    assert set(frozen) == {"propose", "amplify"}  # each stage calibrated on its own candidates
    for doc in frozen.values():
        assert doc["pilot"] == 32 and set(doc["thresholds"]) == {"min_reward", "min_len", "max_gap"}
        assert set(doc["interval_90"]) == set(doc["thresholds"]) and len(doc["pilot_keep_rate_90"]) == 2
    for r in judged:
        assert r["rip"]["thresholds"] == frozen[r["stage"]]["thresholds"]
    for r in kept:
        rip = r["rip"]
        assert len(rip["responses"]) == len(rip["rewards"]) == 8
        assert rip["metrics"]["min_reward"] >= rip["thresholds"]["min_reward"]
        assert r["category"]  # two seeds of one category were shown
    categories = orjson.loads((root / "seed_categories.json").read_bytes())
    assert len(categories) == 175  # every Self-Instruct seed classified once, cached in the run
    _dpo_pairs_are_best_vs_worst(root, kept)


def _dpo_pairs_are_best_vs_worst(root: Path, kept: list[dict]) -> None:
    """`agen export --format dpo` writes each kept prompt's highest- vs lowest-rewarded response."""
    from agen.app.export import export

    n = export(root, "dpo", root / "dpo.jsonl")
    rows = [orjson.loads(line) for line in (root / "dpo.jsonl").read_bytes().splitlines()]
    assert n == len(rows) > 0 and {r["id"] for r in rows} <= {r["id"] for r in kept}
    by_id = {r["id"]: r["rip"] for r in kept}
    for row in rows:
        rip = by_id[row["id"]]
        scored = [(x, resp) for x, resp in zip(rip["rewards"], rip["responses"]) if x is not None]
        assert max(x for x, resp in scored if resp == row["chosen"]) == max(x for x, _ in scored)
        assert min(x for x, resp in scored if resp == row["rejected"]) == min(x for x, _ in scored)


def test_kept_fraction_matches_a_single_percentile_threshold(tmp_path):
    """With only tau1 active at the 50th percentile of a reward model's scores, about half is kept."""
    cfg = _open_cfg(tmp_path, propose={"target": 40, "max_attempts": 90}, amplify={"target": 0},
                    rip={"judge_model": "rm", "judge_kind": "reward",
                         "thresholds": {"min_reward": {"percentile": 50}, "min_len": {"value": 0},
                                        "max_gap": {"value": 1e9}}})
    assert run_session(cfg, live=False).exit_code == EXIT_OK
    judged = [r for r in records(Path(cfg.output.dir)) if r["reason"].startswith("rip:")]
    share = sum(r["status"] == "accepted" for r in judged) / len(judged)
    print(f"kept {share:.2f} of {len(judged)} prompts with tau1 at the pilot's median")
    assert len(judged) >= 60 and 0.3 <= share <= 0.7


def test_propose_ending_before_its_pilot_is_full_does_not_hang_the_run(tmp_path):
    """Propose runs out of attempts with its pilot short of 32: its waiting candidates held filter
    workers the amplify pilot needed, and the run sat at 0 accepted forever. Each stage's pilot now
    freezes when that stage ends. (The timeout only turns a hang into a failure.)"""
    import subprocess
    import sys

    cfg = _open_cfg(tmp_path, propose={"max_attempts": 10})
    path = tmp_path / "open.yaml"
    raw = yaml.safe_load((ROOT / "configs" / "open_ended.yaml").read_text())
    raw["seeds"]["path"] = str(ROOT / "data" / "self_instruct_prompts.jsonl")
    raw["propose"]["max_attempts"] = 10
    raw["simulator"] = {"config": cfg.simulator.config}
    path.write_text(yaml.safe_dump(raw))
    res = subprocess.run([sys.executable, "-m", "agen", "run", str(path), "--out", str(tmp_path / "run"),
                          "--target", "10", "--no-preflight"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == EXIT_NO_PROGRESS and "amplify 10/10" in res.stderr, res.stdout + res.stderr
    recs = records(tmp_path / "run")
    assert sum(r["status"] == "accepted" and r["stage"] == "amplify" for r in recs) == 10
    frozen = orjson.loads((tmp_path / "run" / "rip_thresholds.json").read_bytes())["stages"]
    assert 0 < frozen["propose"]["pilot"] <= sum(r["stage"] == "propose" for r in recs) <= 10
    assert frozen["amplify"]["pilot"] == 32


def test_truncated_rip_responses_are_counted_apart(tmp_path):
    """Responses cut at rip.max_tokens are counted on the record (`rip.truncated`), as a vote counts
    its truncated samples; with room to finish, none are."""
    (tmp_path / "cut").mkdir()
    (tmp_path / "full").mkdir()
    cut = _open_cfg(tmp_path / "cut", propose={"target": 4}, amplify={"target": 0}, rip={"max_tokens": 16})
    assert run_session(cut, live=False).exit_code == EXIT_OK
    judged = [r for r in records(Path(cut.output.dir)) if "rip" in r]
    assert judged and all(r["rip"]["truncated"] == len(r["rip"]["responses"]) for r in judged)
    full = _open_cfg(tmp_path / "full", propose={"target": 4}, amplify={"target": 0})
    assert run_session(full, live=False).exit_code == EXIT_OK
    judged = [r for r in records(Path(full.output.dir)) if "rip" in r]
    assert judged and sum(r["rip"]["truncated"] for r in judged) < sum(len(r["rip"]["responses"]) for r in judged)
