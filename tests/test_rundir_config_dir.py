"""run.json records the config file's folder, and `agen resume` resolves relative paths (seeds.path) from it."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner
from conftest import QUICKSTART

import agen.app.cli
import agen.app.runner
from agen.config import load_config
from agen.run.rundir import open_run_dir, run_config_dir


def _meta(root: Path) -> dict:
    return orjson.loads((root / "run.json").read_bytes())


def test_run_json_records_the_absolute_config_folder_per_session(tmp_path, monkeypatch):
    """A relative config_dir is stored absolute at creation and per session; a reopen without one keeps it."""
    root = tmp_path / "run"
    (tmp_path / "cfgs").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = load_config(QUICKSTART, {"output.dir": str(root)})
    open_run_dir(cfg, root, config_dir=Path("cfgs")).close()
    meta = _meta(root)
    assert meta["config_dir"] == str(tmp_path / "cfgs")
    assert meta["sessions"][0]["config_dir"] == str(tmp_path / "cfgs")
    assert run_config_dir(root) == tmp_path / "cfgs"
    open_run_dir(cfg, root).close()
    assert run_config_dir(root) == tmp_path / "cfgs" and len(_meta(root)["sessions"]) == 2
    open_run_dir(cfg, root, config_dir=tmp_path).close()
    assert run_config_dir(root) == tmp_path
    assert run_config_dir(tmp_path / "nowhere") is None


def test_agen_resume_passes_the_recorded_config_folder_to_run_session(tmp_path, monkeypatch):
    """`agen resume RUN_DIR` calls run_session with config_dir read from run.json (no request is sent here)."""
    root = tmp_path / "run"
    cfg = load_config(QUICKSTART, {"output.dir": str(root)})
    open_run_dir(cfg, root, config_dir=QUICKSTART.parent).close()
    seen: dict = {}

    def fake_run_session(cfg, *, config_dir=None, grace_s=30.0, live=None, probe=True):
        seen.update(config_dir=config_dir, out=cfg.output.dir)
        return agen.app.runner.Outcome(0, "done", {})

    monkeypatch.setattr(agen.app.runner, "run_session", fake_run_session)
    monkeypatch.setattr(agen.app.cli, "configure_logging", lambda *a, **k: None)
    res = CliRunner().invoke(agen.app.cli.cli, ["resume", str(root)])
    assert res.exit_code == 0, res.output
    assert seen == {"config_dir": QUICKSTART.parent.resolve(), "out": str(root)}


def test_simulator_config_is_found_next_to_the_config_not_in_cwd(tmp_path, monkeypatch):
    """`simulator.config: my_sim.yaml` means the file beside the config, as seeds and templates do."""
    import yaml
    from click.testing import CliRunner

    from agen.app.cli import cli
    from conftest import quick_raw, sim_config_file

    folder, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    sim_config_file(tmp_path, latency_ms=2).rename(folder / "my_sim.yaml")
    raw = quick_raw(tmp_path, proposals=1, target=2, simulator={"config": "my_sim.yaml"})
    (folder / "config.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(elsewhere)
    res = CliRunner().invoke(cli, ["run", str(folder / "config.yaml"), "--no-preflight"])
    assert res.exit_code == 0, res.output
