"""Few-shot coverage: amplify spreads its prompts over the whole pool, deterministically."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from agen.app.report import build_report
from agen.app.runner import EXIT_OK, run_session
from agen.app.summary import render_summary
from agen.config import StageConfig
from agen.engine.fewshot import Rotation, coverage, pick_examples
from agen.types import Example
from conftest import quick_cfg, records, sim_config_file

SEEDS = [Example(f"seed-{i}", f"seed question {i}", str(i), None) for i in range(30)]
POOL = [Example(f"run-propose-{i:08d}", f"proposal {i}", str(i), None) for i in range(12)]


def _amplify(**kw) -> StageConfig:
    return StageConfig(model="cheap", shots=kw.pop("shots", 2), **kw)


def test_rotation_is_least_used_first_on_a_fixed_pool() -> None:
    """Over any run of consecutive tasks every proposal is shown floor or ceil of its fair share."""
    sc = _amplify(shots=3)
    uses: Counter[str] = Counter()
    for index in range(17, 17 + 40):  # 120 slots over 12 proposals, starting anywhere
        shots = pick_examples(sc, "amplify", index, 7, SEEDS, POOL, False)
        assert len({ex.id for ex in shots}) == 3
        uses.update(ex.id for ex in shots)
    assert set(uses) == {ex.id for ex in POOL}
    assert set(uses.values()) == {10}


def test_choice_is_a_function_of_seed_stage_index_and_pool() -> None:
    """The same (seed, index, pool) gives the same shots with or without a shared rotation,
    in any call order; a different run seed orders the pool differently."""
    sc = _amplify()
    shared = Rotation(3)
    forward = [pick_examples(sc, "amplify", i, 3, SEEDS, POOL, False, shared) for i in range(20)]
    backward = [pick_examples(sc, "amplify", i, 3, SEEDS, POOL, False) for i in reversed(range(20))]
    assert forward == backward[::-1]
    other = [pick_examples(sc, "amplify", i, 4, SEEDS, POOL, False) for i in range(20)]
    assert other != forward


def test_rotation_grows_incrementally_as_a_fresh_one() -> None:
    """A rotation fed the pool as it grows equals one built from the final pool."""
    grown = Rotation(9)
    for n in range(1, len(POOL) + 1):
        grown.sync(POOL[:n])
    assert grown.sync(POOL) == Rotation(9).sync(POOL)


def test_seed_mix_and_propose_draw_from_seeds() -> None:
    """Propose shows seeds; amplify with seed_mix=1 shows only seeds; shots are distinct."""
    for stage, sc in (("propose", _amplify()), ("amplify", _amplify(seed_mix=1.0))):
        for i in range(30):
            shots = pick_examples(sc, stage, i, 0, SEEDS, POOL, False)
            assert len(shots) == 2 and len(set(shots)) == 2 and all(ex in SEEDS for ex in shots)


def test_open_ended_shots_share_a_category() -> None:
    """Open-ended prompts show examples of one category, falling back to that category's seeds."""
    pool = [Example(f"p{i}", f"q{i}", None, "brainstorming" if i % 3 else "coding") for i in range(9)]
    seeds = [Example(f"s{i}", f"sq{i}", None, "coding") for i in range(5)]
    for i in range(30):
        shots = pick_examples(_amplify(shots=3), "amplify", i, 1, seeds, pool, True)
        assert len(shots) == 3 and len({ex.category for ex in shots}) == 1


def test_coverage_counts_only_proposals() -> None:
    """Distinct proposals and the top-3 share ignore seed slots."""
    cov = coverage([["a", "b"], ["a", "seed"], ["c", "d"], ["a", "e"]], {"a", "b", "c", "d", "e"}, 6)
    assert (cov.tasks, cov.slots, cov.distinct, cov.pool) == (4, 7, 5, 6)
    assert cov.top3_share == 5 / 7


def test_quickstart_amplify_sees_many_proposals(tmp_path: Path) -> None:
    """Quick start over real HTTP: the first 100 amplify tasks show >= 10 distinct proposals and the
    top 3 take <= 35% of the slots; the summary's figures equal the report's, rebuilt from records."""
    cfg = quick_cfg(tmp_path, proposals=20, target=120,
                    simulator={"config": str(sim_config_file(tmp_path, latency_ms=2))})
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    root = Path(cfg.output.dir)
    recs = records(root)
    first_amplify = min(r["created"] for r in recs if r["stage"] == "amplify")
    accepted_before = [r for r in recs if r["stage"] == "propose" and r["status"] == "accepted"
                       and r["created"] < first_amplify]
    assert len(accepted_before) >= cfg.amplify.min_pool  # amplify waited for the pool
    fewshot = build_report(root)["fewshot"]
    print("fewshot coverage:", json.dumps(fewshot))
    assert fewshot["tasks"] == 100 and fewshot["distinct"] >= 10 and fewshot["top3_share"] <= 0.35
    assert out.snapshot["fewshot"] == fewshot
    assert "Amplify few-shots: the first 100 tasks showed" in render_summary(out.snapshot)


def test_a_resumed_sessions_coverage_line_says_it_counts_this_session() -> None:
    """The pipeline counts the tasks of its own session; on a resume that is not the run's first 100."""
    snap = {"fingerprint": "0" * 16, "session": 2, "elapsed_s": 1.0, "stop_reason": None,
            "stages": {s: {"accepted": 1, "target": 1, "finished": 1, "inflight": 0, "reasons": {}}
                       for s in ("propose", "amplify")},
            "costs": {"by_stage": {}, "by_stage_model": {}, "total": {"cost_usd": 0.0}},
            "fewshot": {"tasks": 40, "distinct": 9, "pool": 20, "top3_share": 0.3, "slots": 80}}
    text = " ".join(render_summary(snap).split())
    assert "Amplify few-shots: this session's first 40 tasks showed 9 distinct" in text


def test_open_ended_walk_takes_the_first_members_of_the_start_category() -> None:
    """The walk stops once its slots are filled; what it picks is the definition: the first
    `shots - from_seeds` members from `start` on (wrapping) in the start member's category."""
    cats = ["a", "b", "c"]
    pool = [Example(f"run-propose-{i:08d}", f"proposal {i}", str(i), cats[i % 7 % 3]) for i in range(40)]
    seeds = [Example(f"seed-{i}", f"seed {i}", str(i), cats[i % 3]) for i in range(9)]
    sc = _amplify(shots=3, seed_mix=0.3)
    members = Rotation(5).sync(pool)
    for index in range(60):
        shots = pick_examples(sc, "amplify", index, 5, seeds, pool, True)
        start = index * 3 % len(members)
        walk = [members[(start + j) % len(members)] for j in range(len(members))]
        from_pool = [ex for ex in shots if ex.id.startswith("run-")]
        same = [ex for ex in walk if ex.category == walk[0].category]
        assert from_pool == same[: len(from_pool)] and len(shots) == 3
        assert {ex.category for ex in shots} == {walk[0].category}
