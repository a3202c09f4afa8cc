"""Where the workers of one run write: `RUN_ROOT/workers/W/` is worker W's own run directory.

Each worker directory is an ordinary run directory (same config, same fingerprint, so task ids
`{fp}-{stage}-{i}` mean the same task everywhere); the run root holds nothing else the workers
write. `agen status` reads every worker directory; `agen merge` combines them into one.
"""

from __future__ import annotations

from pathlib import Path

WORKERS = "workers"


def worker_dir(output_dir: Path, worker_id: str) -> Path:
    """Worker `worker_id`'s run directory. `output.dir` is the run root, except on `agen resume
    RUN_ROOT/workers/W`, where it is that worker directory already."""
    if output_dir.parent.name == WORKERS and output_dir.name == worker_id:
        return output_dir
    return output_dir / WORKERS / worker_id


def is_run_root(path: Path) -> bool:
    """A folder of worker directories (and not itself a run directory)."""
    return (path / WORKERS).is_dir() and not (path / "run.json").exists()


def worker_dirs(root: Path) -> list[Path]:
    """Every worker directory under a run root that has started (has run.json), by name."""
    folder = root / WORKERS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / "run.json").exists())


def task_index(task_id: str) -> tuple[str, int]:
    """(stage, index) of a task id `{fp}-{stage}-{index:08d}`."""
    head, index = task_id.rsplit("-", 1)
    return head.rsplit("-", 1)[1], int(index)
