"""The run's simulator child (SimProcess): its own session, so a terminal Ctrl-C spares it, and no unread pipes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agen.errors import SimStartError
from agen.sim.process import SimProcess


def test_the_sim_child_has_its_own_session_and_process_group():
    """A terminal Ctrl-C goes to the foreground process group; the sim child is not in ours, so in-flight work can drain."""
    with SimProcess() as sim:
        assert sim.pid is not None
        assert os.getsid(sim.pid) == sim.pid != os.getsid(0)
        assert os.getpgid(sim.pid) != os.getpgid(0)
    assert sim.pid is None


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_the_sim_child_writes_to_no_pipe():
    """The child's stdout and stderr are not pipes that nobody reads after start-up (a full pipe would block it)."""
    with SimProcess() as sim:
        targets = [os.readlink(f"/proc/{sim.pid}/fd/{fd}") for fd in (1, 2)]
    assert not any(t.startswith("pipe:") for t in targets), targets


def test_a_child_that_fails_to_start_reports_its_error(tmp_path):
    """A sim that exits before listening raises RuntimeError with the end of its output."""
    bad = tmp_path / "sim.yaml"
    bad.write_text("models: [not, a, mapping\n")
    with pytest.raises(SimStartError, match="agen sim exited before listening: .+"):
        SimProcess(bad).start()


def _sim_children_of(pid: int) -> list[int]:
    """Pids of sim children started for parent `pid` (found by their --parent-pid argument)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agen.sim" in argv and b"--parent-pid" in argv and argv[argv.index(b"--parent-pid") + 1] == str(pid).encode():
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_kill_9_of_agen_takes_the_sim_child_along_and_resume_reuses_the_fixed_port(tmp_path):
    """kill -9 agen mid-run: its built-in sim is gone within seconds, so `agen resume` on the same
    fixed simulator.port starts its own and finishes (no 'address already in use')."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import yaml

    from conftest import ROOT, quick_raw, sim_config_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = quick_raw(tmp_path, proposals=4, target=60,
                    simulator={"config": str(sim_config_file(tmp_path, latency_ms=100)), "port": port})
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    with open(tmp_path / "agen.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agen", "run", str(cfg)], cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while not list((tmp_path / "run").glob("ledger/*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _sim_children_of(proc.pid)
    assert len(children) == 1, (tmp_path / "agen.log").read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30  # an orphan would live on; a loaded machine may take seconds
    while _alive(children[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(children[0]), "the sim child outlived its parent"
    res = subprocess.run([sys.executable, "-m", "agen", "resume", str(tmp_path / "run"), "--grace", "5"],
                         cwd=ROOT, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert b"Traceback" not in res.stderr


def test_a_busy_simulator_port_is_a_one_line_error(tmp_path):
    """Something already listens on simulator.port: exit 2 with one line naming the port, no traceback."""
    import socket

    from agen.app.runner import EXIT_INPUT, run_session
    from agen.config import parse_config
    from conftest import quick_raw

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run_session(parse_config(quick_raw(tmp_path, simulator={"port": port})), live=False)
    assert out.exit_code == EXIT_INPUT
    assert f"simulator.port {port}" in out.message and "in use" in out.message and "\n" not in out.message


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_the_parent_pid_watch_alone_ends_an_orphaned_sim(tmp_path):
    """Started off the main thread there is no PR_SET_PDEATHSIG (it would fire when that thread
    ends): the getppid() watch still ends the child once its parent is kill -9'd."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    code = ("import threading, time\n"
            "from agen.sim.process import SimProcess\n"
            "box = []\n"
            "t = threading.Thread(target=lambda: box.append(SimProcess().start())); t.start(); t.join()\n"
            "print(box[0].pid, flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
    assert b"--no-pdeathsig" in argv and _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 30  # an orphan would live on; a loaded machine may take seconds
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
