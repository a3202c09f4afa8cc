"""On a real terminal (a pty): the live table is drawn on stderr, and Ctrl-C leaves no fragment of
it — the summary follows the erased table, and nothing of the table comes after."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pty = pytest.importorskip("pty")
TABLE_MARKS = ("accepted/target", "┃", "│", "━", "─", "┏", "┗")


def _read(fd: int, until: float, buf: bytearray, stop: bytes | None = None) -> bool:
    while time.monotonic() < until:
        if stop is not None and stop in buf:
            return True
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            buf.extend(data)
    return stop is not None and stop in buf


def test_ctrl_c_on_a_terminal_erases_the_live_table(tmp_path):
    pid, fd = pty.fork()
    if pid == 0:  # the child: agen on the pty (stdout and stderr are both the terminal)
        os.chdir(ROOT)
        os.environ.update(COLUMNS="100", LINES="40", TERM="xterm")
        os.execv(sys.executable, [sys.executable, "-m", "agen", "run", "quickstart", "--out",
                                  str(tmp_path / "run"), "--target", "5000", "--grace", "5"])
    buf = bytearray()
    try:
        assert _read(fd, time.monotonic() + 60, buf, b"accepted/target"), bytes(buf)[-2000:]
        _read(fd, time.monotonic() + 1.0, buf)  # a few refreshes
        os.kill(pid, signal.SIGINT)
        _read(fd, time.monotonic() + 60, buf)
    finally:
        with_status = os.waitpid(pid, 0)[1]
        os.close(fd)
    assert os.waitstatus_to_exitcode(with_status) == 130
    text = bytes(buf).decode(errors="replace")
    after = text[text.rindex("\x1b[2K") + len("\x1b[2K"):]  # what follows the last erased line
    assert after.lstrip().startswith("agen summary"), after[:500]
    assert not [m for m in TABLE_MARKS if m in after], after[:2000]
    assert "agen: interrupted; resume with" in after
    assert Path(tmp_path / "run" / "run.json").exists()
