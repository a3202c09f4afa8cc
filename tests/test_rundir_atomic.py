"""atomic_write: unique temp names, so concurrent writers of one file never trip over each other."""

from __future__ import annotations

import os
import threading

import pytest

from agen.errors import StorageError
from agen.run import rundir
from agen.run.rundir import atomic_write, is_temp_name


def test_concurrent_writers_of_one_path_never_fail_or_leave_temp_files(tmp_path):
    """Eight threads rewriting one manifest at once all succeed; the file is one whole write; no temp file is left."""
    path = tmp_path / "manifest.json"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        start.wait()
        try:
            for j in range(60):
                atomic_write(path, f"writer {i} round {j}\n".encode() * 50)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = set(path.read_text().splitlines())
    assert len(lines) == 1 and next(iter(lines)).startswith("writer ")
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_a_failed_write_removes_its_temp_file(tmp_path, monkeypatch):
    """A rename that fails raises StorageError naming the path, and the temp file does not linger."""
    path = tmp_path / "manifest.json"

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir.os, "replace", broken_replace)
    with pytest.raises(StorageError, match="manifest.json failed: No space left on device"):
        atomic_write(path, b"{}")
    assert os.listdir(tmp_path) == []


def test_temp_names_are_unique_and_recognised():
    """Each call gets its own `.NAME.PID.N.tmp`, which is_temp_name recognises."""
    a, b = rundir.temp_name(rundir.Path("/x/run.json")), rundir.temp_name(rundir.Path("/x/run.json"))
    assert a != b and str(os.getpid()) in a.name
    assert is_temp_name(a.name) and not is_temp_name("run.json") and not is_temp_name("config.yaml")
