"""Where a sim with `batch_dir` keeps its batches and files, so they outlive a sim restart.

Without it a restarted sim has forgotten every batch (the default: it breaks a client's
assumption that a submitted batch survives). With it, `agen run` + kill -9 + `agen resume` on the
built-in sim (a child that dies with agen) meets its batches again, as it would at a provider.
Layout: `jobs/<id>.json`, `files/<id>.json` + `files/<id>.bin`, `book.json` (the submission
counters). Every write is a rename of a complete temporary file, so a killed sim leaves whole files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import orjson


class BatchStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for sub in ("jobs", "files"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def save_job(self, doc: dict[str, Any]) -> None:
        self._write(self.root / "jobs" / f"{doc['id']}.json", orjson.dumps(doc))

    def delete_job(self, job_id: str) -> None:
        (self.root / "jobs" / f"{job_id}.json").unlink(missing_ok=True)

    def save_file(self, meta: dict[str, Any], data: bytes) -> None:
        self._write(self.root / "files" / f"{meta['id']}.bin", data)
        self._write(self.root / "files" / f"{meta['id']}.json", orjson.dumps(meta))

    def delete_file(self, file_id: str) -> None:
        for ext in (".json", ".bin"):
            (self.root / "files" / f"{file_id}{ext}").unlink(missing_ok=True)

    def save_book(self, doc: dict[str, Any]) -> None:
        self._write(self.root / "book.json", orjson.dumps(doc))

    def load(self) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], bytes]], dict[str, Any]]:
        """(job documents, (file meta, bytes) pairs, book document), each in creation order."""
        jobs = [orjson.loads(p.read_bytes()) for p in (self.root / "jobs").glob("*.json")]
        files = []
        for p in (self.root / "files").glob("*.json"):
            data = p.with_suffix(".bin")
            if data.exists():
                files.append((orjson.loads(p.read_bytes()), data.read_bytes()))
        book = self.root / "book.json"
        jobs.sort(key=lambda d: (d["created_at"], d["seq"]))
        files.sort(key=lambda f: (f[0]["created_at"], f[0]["seq"]))
        return jobs, files, orjson.loads(book.read_bytes()) if book.exists() else {}

    def clear(self) -> None:
        """Forget everything kept (`POST /sim/reset`)."""
        for sub in ("jobs", "files"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "book.json").unlink(missing_ok=True)
