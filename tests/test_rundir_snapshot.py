"""config.yaml follows the latest session: targets, budget and limits changed on resume are what resume and status see."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import QUICKSTART

from agen.config import load_config
from agen.errors import ConfigError
from agen.run.rundir import load_snapshot, open_run_dir
from agen.app.status import snapshot_from_files


def _cfg(root: Path, **overrides):
    return load_config(QUICKSTART, {"output.dir": str(root), **overrides})


def test_reopen_with_a_new_target_and_budget_rewrites_the_snapshot(tmp_path):
    """Created with amplify.target 5, reopened with 50 and a budget: config.yaml and status say 50 and the budget."""
    root = tmp_path / "run"
    open_run_dir(_cfg(root, **{"amplify.target": 5}), root).close()
    assert load_snapshot(root).amplify.target == 5
    open_run_dir(_cfg(root, **{"amplify.target": 50, "budget.usd": 3.5}), root).close()
    snap = load_snapshot(root)
    assert snap.amplify.target == 50 and snap.budget.usd == 3.5
    assert snapshot_from_files(root)["stages"]["amplify"]["target"] == 50


def test_a_refused_reopen_leaves_the_snapshot_alone(tmp_path):
    """A changed output-defining field is refused and config.yaml keeps the run's config."""
    root = tmp_path / "run"
    open_run_dir(_cfg(root), root).close()
    before = (root / "config.yaml").read_bytes()
    with pytest.raises(ConfigError, match="seed"):
        open_run_dir(_cfg(root, seed=12345, **{"amplify.target": 77}), root)
    assert (root / "config.yaml").read_bytes() == before
