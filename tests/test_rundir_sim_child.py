"""The run's simulator child (SimProcess): its own session, so a terminal Ctrl-C spares it, and no unread pipes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    with pytest.raises(RuntimeError, match="agen sim exited before listening: .+"):
        SimProcess(bad).start()
