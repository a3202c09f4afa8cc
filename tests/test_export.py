"""`agen export`: solutions as SFT responses, pass rates for RL, Parquet, the dataset card."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from agen.app.cli import cli
from agen.app.export import CARD_MARK, PassRange, export, export_rows
from agen.app.runner import EXIT_OK, run_session
from agen.errors import ConfigError
from agen.gen.answers import equivalent
from agen.gen.parse import solution_answer
from conftest import quick_cfg, records, sim_config_file


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    cfg = quick_cfg(tmp, proposals=6, target=30, simulator={"config": str(sim_config_file(tmp, latency_ms=2))},
                    amplify={"min_pool": 4})
    assert run_session(cfg, live=False).exit_code == EXIT_OK
    return Path(cfg.output.dir)


def test_vote_records_keep_solutions_and_pass_rate(run_dir: Path) -> None:
    """Every voted record has its pass rate over the samples drawn and its agreeing solutions."""
    voted = [r for r in records(run_dir) if r["reason"].startswith("vote:")]
    assert voted
    for r in voted:
        v = r["vote"]
        assert v["pass_rate"] == round(v["agree"] / v["samples"], 4)
        assert v["answered"] == sum(x is not None for x in v["votes"]) and v["truncated"] >= 0
        assert len(v["solutions"]) == min(3, v["agree"])
        assert [len(s) for s in v["solutions"]] == sorted(len(s) for s in v["solutions"])
        for s in v["solutions"]:
            assert s.endswith("}") and equivalent(solution_answer(s), r["answer"])


def test_sft_rows_are_full_solutions_ending_in_the_box(run_dir: Path) -> None:
    rows = list(export_rows(run_dir, "sft"))
    accepted = [r for r in records(run_dir) if r["status"] == "accepted"]
    assert len(rows) == len(accepted)
    for row in rows:
        assert row["response"].rstrip().endswith("}") and "\\boxed{" in row["response"]
        assert len(row["response"].splitlines()) > 1  # a solution, not just the answer


def test_rl_rows_and_pass_rate_bounds(run_dir: Path) -> None:
    rows = list(export_rows(run_dir, "rl"))
    assert rows and all(set(r) == {"id", "question", "answer", "pass_rate", "k", "samples", "domain", "stage"}
                        for r in rows)
    assert all(0.5 <= r["pass_rate"] <= 1 and r["domain"] == "math" for r in rows)
    cut = list(export_rows(run_dir, "rl", PassRange(high=0.9)))
    assert [r["id"] for r in cut] == [r["id"] for r in rows if r["pass_rate"] <= 0.9]
    with pytest.raises(ConfigError, match="above"):
        PassRange(0.8, 0.2)


def test_jsonl_and_parquet_load_with_datasets(run_dir: Path, tmp_path: Path) -> None:
    """Both formats load with `datasets`, and so does the folder through the card's YAML header."""
    datasets = pytest.importorskip("datasets")
    n = export(run_dir, "sft", tmp_path / "sft.jsonl")
    js = datasets.load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(js) == n and set(js.column_names) == {"id", "prompt", "response"}
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    m = export(run_dir, "rl", pq_dir / "train.parquet")
    pq = datasets.load_dataset("parquet", data_files=str(pq_dir / "train.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(pq) == m and pq.features["pass_rate"].dtype == "float64"
    card = (pq_dir / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n") and CARD_MARK in card
    for needle in ("## Counts", "sim-large", "Answer-Consistency: 16 solutions", "MIT License", "per accepted"):
        assert needle in card
    folder = datasets.load_dataset(str(pq_dir), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(folder) == m


def test_card_leaves_a_foreign_readme_alone(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("mine\n")
    export(run_dir, "sft", tmp_path / "x.jsonl")
    assert (tmp_path / "README.md").read_text() == "mine\n"


def test_cli_export_formats_and_errors(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "rl.jsonl"
    top = max(r["pass_rate"] for r in export_rows(run_dir, "rl"))  # at least one row passes this bound
    res = runner.invoke(cli, ["export", str(run_dir), "--format", "rl", "--out", str(out), "--min-pass-rate", str(top)])
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert rows and all(r["pass_rate"] >= top for r in rows) and f"wrote {len(rows)} rl rows" in res.output
    none = runner.invoke(cli, ["export", str(run_dir), "--format", "rl", "--out", str(tmp_path / "none.jsonl"),
                               "--min-pass-rate", "1", "--max-pass-rate", "1"])
    if not any(r["pass_rate"] == 1 for r in export_rows(run_dir, "rl")):
        assert none.exit_code == 2 and "within the pass-rate range" in none.output  # nothing written, says why
    bad = runner.invoke(cli, ["export", str(run_dir), "--format", "rl", "--out", str(out),
                              "--min-pass-rate", "0.9", "--max-pass-rate", "0.1"])
    assert bad.exit_code == 2 and "above --max-pass-rate" in bad.output


def test_dataset_card_finds_the_seeds_where_the_run_did_not_in_cwd_first(tmp_path, monkeypatch):
    """Seeds are looked up next to the config first (like templates); the card uses the same order,
    so a same-named file in the working directory does not give the card the wrong licence."""
    import json

    import yaml

    from agen.app.dataset_card import _seed_file, seed_licence
    from agen.config import parse_config
    from agen.config import resolve_beside_config
    from conftest import QUICKSTART

    mine, elsewhere, run = tmp_path / "mine", tmp_path / "cwd", tmp_path / "run"
    for d in (mine, elsewhere, run):
        d.mkdir()
    seeds = (Path(QUICKSTART).parents[1] / "data" / "gsm8k_sample.jsonl").read_text()
    (mine / "my_seeds.jsonl").write_text(seeds)
    (mine / "MY-SEEDS-LICENSE").write_text("MIT License\n")
    (elsewhere / "my_seeds.jsonl").write_text(seeds)
    (run / "run.json").write_text(json.dumps({"config_dir": str(mine)}))
    raw = yaml.safe_load(Path(QUICKSTART).read_text())
    raw["seeds"]["path"] = "my_seeds.jsonl"
    monkeypatch.chdir(elsewhere)
    assert resolve_beside_config(Path("my_seeds.jsonl"), mine) == mine / "my_seeds.jsonl"
    assert seed_licence(_seed_file(run, parse_config(raw)))[0] == "mit"
