"""One session per run directory: another process is refused while a session holds RUN_DIR/.lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUICKSTART

from agen.config import load_config
from agen.errors import ConfigError
from agen.run.rundir import open_run_dir
from agen.app.status import run_status

OPEN_IN_CHILD = """
import sys
from pathlib import Path
from agen.config import load_config
from agen.errors import ConfigError
from agen.run.rundir import open_run_dir
root = Path(sys.argv[1])
try:
    held = open_run_dir(load_config(sys.argv[2], {"output.dir": str(root)}), root)
except ConfigError as exc:
    print(exc)
    sys.exit(2)
"""


def _cfg(root: Path):
    return load_config(QUICKSTART, {"output.dir": str(root)})


def _open_in_child(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", OPEN_IN_CHILD, str(root), str(QUICKSTART)], check=False,
                          capture_output=True, text=True, timeout=60)


def test_another_process_is_refused_naming_the_holder_pid(tmp_path):
    """While this process holds the run directory, a second session in another process gets a clear ConfigError."""
    root = tmp_path / "run"
    held = open_run_dir(_cfg(root), root)
    assert (root / ".lock").read_text().strip() == str(os.getpid())
    res = _open_in_child(root)
    assert res.returncode == 2, res.stderr
    assert f"another agen session (pid {os.getpid()}) is using {root}" in res.stdout
    held.close()
    held.close()  # idempotent
    res = _open_in_child(root)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_lock_is_released_when_the_last_run_dir_of_this_process_goes(tmp_path):
    """Two RunDirs of one directory in this process share the lock; it is released once both are closed or collected."""
    root = tmp_path / "run"
    first = open_run_dir(_cfg(root), root)
    second = open_run_dir(_cfg(root), root)
    assert second.resumed and second.session == 1
    first.close()
    assert _open_in_child(root).returncode == 2
    del second  # collected: its finalizer drops the last holder
    assert _open_in_child(root).returncode == 0


def test_status_reads_a_run_directory_while_a_session_holds_it(tmp_path):
    """`agen status` only reads, so it works while the lock is held by another process's session."""
    root = tmp_path / "run"
    open_run_dir(_cfg(root), root).close()
    code = OPEN_IN_CHILD + "sys.stdout.write('held\\n')\nsys.stdout.flush()\nsys.stdin.read()\n"
    child = subprocess.Popen([sys.executable, "-c", code, str(root), str(QUICKSTART)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        assert "Status:" in run_status(root)
        with pytest.raises(ConfigError, match=rf"another agen session \(pid {child.pid}\)"):
            open_run_dir(_cfg(root), root)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=60)
        child.stdout.close()
