"""Disk full: exit 4 naming the path, and once space is back the run resumes with nothing lost or repeated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_resume import SimProcess, agen, check_run, committed_ids, write_run_config, write_sim_config  # noqa: E402


@pytest.fixture
def sim(tmp_path):
    with SimProcess(write_sim_config(tmp_path / "sim.yaml", latency_ms=3)) as s:
        yield s


def _disk_full_then_resume(sim, tmp_path: Path, root: Path, env: dict[str, str], free_space) -> None:
    cfg = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=6, target=120)
    log = tmp_path / "agen.log"
    proc = agen(["run", str(cfg)], log, env=env)
    assert proc.wait(timeout=60) == 4, log.read_text()[-3000:]
    text = log.read_text()
    assert "No space left on device" in text and f"{root}/" in text  # the path that failed
    before = set(committed_ids(root))
    free_space()
    assert agen(["resume", str(root)], log).wait(timeout=90) == 0, log.read_text()[-3000:]
    chk = check_run(root, before, {"propose": 6, "amplify": 120}, sim.base_url)
    assert chk.problems == []


def test_injected_enospc_exits_4_naming_the_path_and_resume_completes(sim, tmp_path):
    """ENOSPC mid-write (a torn line left behind) -> exit 4 with the shard's path; without it, resume completes."""
    _disk_full_then_resume(sim, tmp_path, tmp_path / "run", {"AGEN_FAULT_ENOSPC_AFTER": "60000"}, lambda: None)


def test_full_tmpfs_exits_4_and_resumes_after_it_grows(sim, tmp_path):
    """A real 256 KiB tmpfs fills up -> exit 4; remounted larger, resume completes (skipped where mount is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        def grow() -> None:
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)

        _disk_full_then_resume(sim, tmp_path, mnt / "run", {}, grow)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_storage_errors_outside_a_run_exit_4(tmp_path):
    """`agen init` (and export/report, through the same CLI guard) report a path that cannot be
    written as a storage error, exit 4 as the README's table says, not 2 (bad input)."""
    from click.testing import CliRunner

    from agen.app.cli import cli

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = CliRunner().invoke(cli, ["init", str(blocker / "starter")])
    assert res.exit_code == 4, res.output
    assert "writing" in res.output and str(blocker / "starter") in res.output
    bad_input = CliRunner().invoke(cli, ["init", str(tmp_path / "x"), "--from", "quickstart"])
    assert bad_input.exit_code == 0  # the same command with a writable folder works
    again = CliRunner().invoke(cli, ["init", str(tmp_path / "x")])
    assert again.exit_code == 2 and "already exists" in again.output  # bad input stays 2
