"""A first session that died before run.json was written leaves a directory that starts over, not an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUICKSTART, ROOT

from agen.config import load_config
from agen.errors import ConfigError
from agen.run.faults import CRASH_EXIT
from agen.run.rundir import open_run_dir

CHILD = """
import sys
from pathlib import Path
from agen.config import load_config
from agen.run.rundir import open_run_dir
root = Path(sys.argv[1])
open_run_dir(load_config(sys.argv[2], {"output.dir": str(root)}), root).close()
"""


def _cfg(root: Path):
    return load_config(QUICKSTART, {"output.dir": str(root)})


@pytest.mark.parametrize("point", ["atomic.before_rename:1", "atomic.after_rename:1"])
def test_crash_before_run_json_is_written_starts_over(tmp_path, point):
    """Killed while writing config.yaml (before or after its rename), the next open starts a fresh run."""
    root = tmp_path / "run"
    env = dict(os.environ, AGEN_CRASHPOINT=point)
    res = subprocess.run([sys.executable, "-c", CHILD, str(root), str(QUICKSTART)], cwd=ROOT, env=env,
                         check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == CRASH_EXIT, res.stderr
    assert not (root / "run.json").exists()
    run_dir = open_run_dir(_cfg(root), root)
    assert not run_dir.resumed and run_dir.session == 0
    assert sorted(p.name for p in root.iterdir()) == [".lock", "config.yaml", "run.json"]
    run_dir.close()


def test_snapshot_and_stale_temp_files_by_hand_start_over(tmp_path):
    """config.yaml, an old-style and a dead writer's temp file, and .lock count as an empty directory."""
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.yaml").write_text("half: [")
    (root / ".run.json.tmp").write_bytes(b"{")
    (root / ".config.yaml.999999999.0.tmp").write_bytes(b"x")
    (root / ".lock").write_text("1\n")
    run_dir = open_run_dir(_cfg(root), root)
    assert not run_dir.resumed
    assert sorted(p.name for p in root.iterdir()) == [".lock", "config.yaml", "run.json"]
    run_dir.close()


def test_any_other_file_still_refuses_the_directory(tmp_path):
    """A directory holding anything else (here data.csv) is still refused: it is not ours to overwrite."""
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.yaml").write_text("x: 1")
    (root / "data.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="is not empty and is not an agen run directory"):
        open_run_dir(_cfg(root), root)
