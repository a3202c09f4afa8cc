"""The run directory is its own checkpoint: config snapshot, shards, ledger and a manifest hint.

    RUN_DIR/
      .lock               flock held by the one session using the directory (holds its pid)
      run.json            fingerprint, sessions, the config file's folder (rewritten atomically)
      config.yaml         the validated config of the latest session (no secrets: keys stay in env);
                          only resumable fields (targets, budget, limits) can differ between sessions
      manifest.json       counts and spend, replaced atomically; a hint, never the truth
      accepted/part-*.jsonl   accepted records
      rejected/part-*.jsonl   rejected and failed records, each with its reason
      ledger/part-*.jsonl     every API call (begin/end of each request, one line per HTTP attempt)

The data files are the truth: resume rebuilds everything from them by set difference of ids.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import orjson

from agen import yaml_text
from agen.config import RunConfig, changed_output_fields, parse_config
from agen.errors import ConfigError, StorageError
from agen.run import faults
from agen.run.shards import fsync_dir, read_records, repair_torn_tail, shard_paths

STREAMS = ("accepted", "rejected", "ledger")
LOCK_NAME = ".lock"
DEDUP_CACHE = "dedup-cache"  # the dedup index's files while a session runs (rebuilt each session)


_tmp_counter = itertools.count()


def temp_name(path: Path) -> Path:
    """A temp file beside `path` that no other writer (thread or process) uses: `.NAME.PID.N.tmp`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_tmp_counter)}.tmp")


def is_temp_name(name: str) -> bool:
    """True for the temp files `atomic_write` leaves behind when it is killed before the rename."""
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write(path: Path, data: bytes) -> None:
    """Write temp, fsync, rename, fsync the folder: readers see the old file or the new one.

    The temp name is unique per call, so concurrent writers of one path (a background manifest
    refresh and the final one) never rename each other's half-written files.
    """
    tmp = temp_name(path)
    try:
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            faults.crashpoint("atomic.before_rename")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        faults.crashpoint("atomic.after_rename")
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"writing {path} failed: {exc.strerror or exc}", str(path)) from None


@dataclass
class RunDir:
    """Paths of one run directory, and the session this process is."""

    root: Path
    fingerprint: str
    session: int
    resumed: bool
    lock: str | None = field(default=None, repr=False)  # key of the flock on RUN_DIR/.lock (lock_run_dir)

    def __post_init__(self) -> None:
        # Released on close(), when this object is collected, at interpreter exit, or (kill -9) when
        # the kernel closes the process's files.
        self._release = weakref.finalize(self, unlock_run_dir, self.lock) if self.lock is not None else None

    def close(self) -> None:
        """Release the run directory's lock (idempotent); another session may then open it."""
        if self._release is not None:
            self._release()

    def stream(self, name: str) -> Path:
        return self.root / name

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def write_manifest(self, data: dict[str, Any]) -> None:
        atomic_write(self.manifest_path, orjson.dumps(data, option=orjson.OPT_INDENT_2))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StorageError(f"{path}: cannot read run metadata ({exc})", str(path)) from None


def _snapshot(cfg: RunConfig) -> bytes:
    return yaml_text.dump(cfg.model_dump(mode="json"), sort_keys=False).encode()


def load_snapshot(root: Path) -> RunConfig:
    """The config a run directory was started with."""
    path = root / "config.yaml"
    try:
        raw = yaml_text.load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{root}: not a run directory ({path}: {exc.strerror})") from None
    return parse_config(raw, str(path))


def _lock_holder(root: Path) -> str:
    try:
        return (root / LOCK_NAME).read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


# flock is held per process: RunDirs of one directory opened in this process share one descriptor
# (the CLI runs one session per process; tests and benchmarks run several one after another).
_held_guard = threading.Lock()
_held: dict[str, list[int]] = {}  # realpath of RUN_DIR -> [lock descriptor, open RunDirs]


def lock_run_dir(root: Path) -> str:
    """Take the exclusive lock on RUN_DIR/.lock for this process (writing our pid into it).

    Another process holding it is refused with a ConfigError naming the holder's pid. Returns the
    key to pass to `unlock_run_dir`.
    """
    key = os.path.realpath(root)
    path = root / LOCK_NAME
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            return key
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}", str(path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"{root}: another agen session (pid {_lock_holder(root)}) is using {root}; "
                              f"wait for it to finish or stop it, or choose another output.dir") from None
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot lock {path}: {exc.strerror}", str(path)) from None
        _held[key] = [fd, 1]
        return key


def unlock_run_dir(key: str) -> None:
    """Drop one holder; the last one in this process closes the descriptor, which releases the lock."""
    with _held_guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            os.close(entry[0])


def _writer_alive(name: str) -> bool:
    """Whether the process named in a temp file `.NAME.PID.N.tmp` still runs (it may be mid-write)."""
    parts = name.split(".")
    try:
        pid = int(parts[-3])
    except (IndexError, ValueError):
        return False  # the older fixed `.NAME.tmp`: its writer is long gone
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_temp_files(root: Path) -> None:
    """Temp files of atomic writes killed before their rename (not those of a live `agen report`)."""
    for p in root.iterdir():
        if is_temp_name(p.name) and p.is_file() and not _writer_alive(p.name):
            try:
                p.unlink()
            except OSError as exc:
                raise StorageError(f"removing {p} failed: {exc.strerror}", str(p)) from None


def run_config_dir(root: Path) -> Path | None:
    """The folder of the config file the run was last started from (relative seed paths resolve there)."""
    meta_path = root / "run.json"
    if not meta_path.exists():
        return None
    folder = _read_json(meta_path).get("config_dir")
    return Path(folder) if folder else None


def open_run_dir(cfg: RunConfig, root: Path, config_dir: Path | None = None,
                 seeds_digest: str | None = None) -> RunDir:
    """Start a new run directory, or reopen one whose output-defining config is unchanged.

    `config_dir` (the config file's folder) is recorded in run.json, absolute, so `agen resume`
    resolves relative paths such as seeds.path as the first session did. `seeds_digest` (a hash
    of the loaded seeds) is recorded too: seeds edited since the run started are refused, since
    they change what the run writes as surely as a changed config field.
    The returned RunDir holds an exclusive lock on the directory until `close()` (or process exit):
    a session in another process is refused while it is held.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create run directory {root}: {exc.strerror}", str(root)) from None
    key = lock_run_dir(root)
    try:
        return _open_locked(cfg, root, key, config_dir.resolve() if config_dir is not None else None,
                            seeds_digest)
    except BaseException:
        unlock_run_dir(key)
        raise


def _session_entry(config_dir: Path | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"started": time.time(), "pid": os.getpid()}
    if config_dir is not None:
        entry["config_dir"] = str(config_dir)
    return entry


def _open_locked(cfg: RunConfig, root: Path, lock: str, config_dir: Path | None,
                 seeds_digest: str | None) -> RunDir:
    meta_path = root / "run.json"
    fp = cfg.fingerprint()
    if meta_path.exists():
        old = load_snapshot(root)
        changed = changed_output_fields(old, cfg)
        if changed:
            raise ConfigError(
                f"{root}: cannot resume: these fields change the output and differ from the run's "
                f"config ({root / 'config.yaml'}): {', '.join(changed)}. Restore them, or use a new "
                f"output directory.")
        meta = _read_json(meta_path)
        if meta.get("fingerprint") != fp:
            raise ConfigError(f"{root}: run fingerprint {meta.get('fingerprint')} does not match this "
                              f"config's {fp}; use a new output directory")
        recorded = meta.get("seeds_digest")
        if seeds_digest is not None and recorded is not None and recorded != seeds_digest:
            raise ConfigError(f"{root}: cannot resume: the seed file ({cfg.seeds.path}) changed since the "
                              f"run started; restore it, or use a new output directory")
        meta.setdefault("seeds_digest", seeds_digest)
        sessions = meta.get("sessions", [])
        meta["sessions"] = sessions + [_session_entry(config_dir)]
        if config_dir is not None:
            meta["config_dir"] = str(config_dir)
        for name in STREAMS:  # torn tails first, before any reader or writer looks
            folder = root / name
            if folder.exists() and shard_paths(folder):
                try:
                    repair_torn_tail(shard_paths(folder)[-1])
                except OSError as exc:
                    raise StorageError(f"repairing {folder} failed: {exc.strerror}", str(folder)) from None
        faults.crashpoint("rundir.after_repair")
        _remove_temp_files(root)
        # Only resumable fields can differ now: the snapshot follows them, so `agen resume` and
        # `agen status` see this session's targets, budget and limits.
        atomic_write(root / "config.yaml", _snapshot(cfg))
        atomic_write(meta_path, orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        return RunDir(root, fp, len(sessions), resumed=True, lock=lock)
    # No run.json: new, or a first session that died before writing it (only the snapshot and temp
    # files of atomic_write can be there then). Either way nothing was sent: start over.
    leftovers = [p for p in root.iterdir() if p.name != LOCK_NAME]
    if any(p.name != "config.yaml" and not is_temp_name(p.name) for p in leftovers):
        raise ConfigError(f"{root}: exists, is not empty and is not an agen run directory; "
                          f"choose another output.dir")
    _remove_temp_files(root)
    atomic_write(root / "config.yaml", _snapshot(cfg))
    meta = {"fingerprint": fp, "created": time.time(), "config_dir": str(config_dir) if config_dir else None,
            "seeds_digest": seeds_digest, "sessions": [_session_entry(config_dir)]}
    atomic_write(meta_path, orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return RunDir(root, fp, 0, resumed=False, lock=lock)


class LedgerCalls:
    """The ledger's call lines, read from the files each time they are iterated (a run of a million
    calls is never a list of a million dicts in memory)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._folder.exists():
            for row in read_records(self._folder):
                if row.get("ev") == "call":
                    yield row

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class LedgerSummary:
    """What the ledger says was spent, including calls cut off by a crash."""

    calls: LedgerCalls
    open_requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # begun, never ended

    @property
    def billing_unknown(self) -> int:
        return len(self.open_requests)


def read_ledger(root: Path) -> LedgerSummary:
    """The call lines (streamed on each iteration), and the requests that began but never ended
    (billing unknown: the only lines held)."""
    folder = root / "ledger"
    out = LedgerSummary(LedgerCalls(folder))
    if not folder.exists():
        return out
    for row in read_records(folder):
        ev = row.get("ev")
        if ev == "begin":
            out.open_requests[f"{row.get('session')}/{row.get('req')}"] = row
        elif ev == "end" and not row.get("cut"):
            out.open_requests.pop(f"{row.get('session')}/{row.get('req')}", None)
    return out
