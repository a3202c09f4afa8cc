"""The Python API: agen.run(config, **overrides) -> RunResult and agen.load(run_dir), over real HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

import agen
import agen.run.shards  # the package stays callable once its modules are imported
from agen.errors import ConfigError
from agen.run.rundir import read_ledger
from conftest import QUICKSTART, quick_raw, records, sim_config_file


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> agen.RunResult:
    tmp = tmp_path_factory.mktemp("api")
    raw = quick_raw(tmp, proposals=4, target=10, simulator={"config": str(sim_config_file(tmp, latency_ms=2))})
    return agen.run(raw, quiet=True, out=str(tmp / "api-run"), amplify__min_pool=4, **{"vote.k": 8})


def test_run_applies_overrides_and_reports_counts_cost_and_paths(result: agen.RunResult) -> None:
    assert result.ok and result.message.startswith("done: every target met") and result.run_dir.name == "api-run"
    recs = records(result.run_dir)
    for stage in ("propose", "amplify"):
        mine = [r for r in recs if r["stage"] == stage]
        assert result.accepted[stage] == sum(r["status"] == "accepted" for r in mine) >= (4 if stage == "propose" else 10)
        assert result.finished[stage] == len(mine)
    assert all(r["vote"]["k"] == 8 for r in recs if "vote" in r)  # the dotted override reached the config
    assert result.cost_usd == pytest.approx(sum(c["cost_usd"] for c in read_ledger(result.run_dir).calls))
    assert result.cost_per_accepted_usd == pytest.approx(result.cost_usd / sum(result.accepted.values()))
    assert result.accepted_files and all(p.exists() for p in result.accepted_files)


def test_run_again_is_already_complete(result: agen.RunResult) -> None:
    """A second call on the same directory resumes it: nothing left to do, same counts."""
    again = agen.run(result.run_dir / "config.yaml", quiet=True, out=str(result.run_dir))
    assert again.ok and "already complete" in again.message and again.accepted == result.accepted


def test_bad_config_raises_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vote.k"):
        agen.run(QUICKSTART, quiet=True, out=str(tmp_path / "x"), k=0)
    assert not (tmp_path / "x").exists()


def test_load_gives_a_dataset_or_an_iterator(result: agen.RunResult) -> None:
    pytest.importorskip("datasets")
    ds = agen.load(result.run_dir)
    assert len(ds) == sum(result.accepted.values()) and set(ds["status"]) == {"accepted"}
    everything = agen.load(result.run_dir, status="all")
    assert len(everything) == sum(result.finished.values())
    rows = agen.load(result.run_dir, status="rejected", as_dataset=False)
    assert not isinstance(rows, list) and all(r["status"] == "rejected" for r in rows)
    with pytest.raises(ConfigError, match="status"):
        agen.load(result.run_dir, status="good")
    with pytest.raises(ConfigError, match="not an agen run directory"):
        agen.load(result.run_dir / "accepted")


def _run_dir_with(tmp_path: Path, rejected: list[dict]) -> Path:
    root = tmp_path / "hand-made"
    (root / "rejected").mkdir(parents=True)
    (root / "run.json").write_text("{}")
    (root / "rejected" / "part-00000.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in rejected))
    return root


def test_load_keeps_columns_the_first_record_lacks(tmp_path: Path) -> None:
    """A failed record (no `vote`) first must not drop the `vote` column of every later row."""
    pytest.importorskip("datasets")
    root = _run_dir_with(tmp_path, [{"id": "a", "status": "failed", "reason": "parse"},
                                    {"id": "b", "status": "rejected", "reason": "vote:low", "vote": {"k": 8}}])
    ds = agen.load(root, status="all")
    assert ds.column_names == ["id", "status", "reason", "vote"]
    assert ds["vote"] == [None, {"k": 8}]


def test_load_has_a_surplus_status_read_from_rejected(tmp_path: Path) -> None:
    root = _run_dir_with(tmp_path, [{"id": "a", "status": "surplus", "reason": "surplus:vote:agree"},
                                    {"id": "b", "status": "rejected", "reason": "vote:low"}])
    assert [r["id"] for r in agen.load(root, status="surplus", as_dataset=False)] == ["a"]


def test_k_shortcut_is_the_filters_sample_count_for_either_task(tmp_path: Path) -> None:
    from agen.api import _dotted
    from agen.config import k_key

    assert _dotted({"k": 4}, QUICKSTART) == {"vote.k": 4}
    open_ended = Path(agen.__file__).parents[1] / "configs" / "open_ended.yaml"
    assert _dotted({"k": 4, "out": "x"}, open_ended) == {"rip.k": 4, "output.dir": "x"}
    assert k_key({"task": "open_ended"}) == "rip.k"
