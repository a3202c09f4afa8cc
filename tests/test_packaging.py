"""An installed agen (a wheel, not the checkout) runs its quick start from any directory.

Builds the wheel once (pure Python, `AGEN_COMPILE=0`: the build a machine without a C compiler
gets, and the quick start on it; the rest of the suite runs the editable install, compiled where it
can be, see tests/test_native.py), installs it with --no-deps into a fresh venv that sees this environment's
dependencies (a .pth line, not --system-site-packages: the editable agen must not leak in), and
runs `agen --version`, `agen run quickstart` and `agen init` from a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import ROOT


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"AGEN_COMPILE": "0"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_wheel_installs_and_runs_the_quick_start_from_another_directory(tmp_path):
    src = tmp_path / "src"  # a copy, so the in-tree build leaves nothing in the checkout
    for name in ("agen", "configs", "data"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "_bundled", "*.so", "_compiled.json"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)], tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(wheels.glob("agen-*.whl"))
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    assert _run([base, "-m", "venv", "--without-pip", str(venv)], tmp_path).returncode == 0
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                 str(wheel)], tmp_path)
    assert inst.returncode == 0, inst.stderr[-3000:]
    agen = str(venv / "bin" / "agen")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import agen.config as c; print(c.CONFIGS_DIR)"], work)
    assert str(site) in where.stdout, where.stdout + where.stderr  # the installed copy, not the checkout
    version = _run([agen, "--version"], work).stdout
    assert version.startswith("agen ") and "pure Python (not built)" in version, version
    res = _run([agen, "run", "quickstart", "--proposals", "2", "--target", "6"], work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "done: every target met" in res.stderr + res.stdout
    assert list((work / "runs" / "quickstart" / "accepted").glob("*.jsonl"))
    init = _run([agen, "init", "starter"], work)
    assert init.returncode == 0, init.stderr
    res = _run([agen, "run", "starter/config.yaml", "--proposals", "1", "--target", "2"], work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
