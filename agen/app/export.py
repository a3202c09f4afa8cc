"""`agen export`: turn a run's accepted records into training files.

`dpo`: RIP's by-product — for each accepted open-ended prompt, its best- and worst-rewarded
responses as a chosen/rejected pair (prompt, chosen, rejected), as the RIP paper does.
`sft`: prompt/response pairs — a verifiable example's question with its verified answer, or an
open-ended prompt with its best-rewarded response.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import orjson
import yaml

from agen.errors import ConfigError, StorageError
from agen.gen.rip_metrics import preference_pair
from agen.run.shards import read_records


def _best(rip: dict[str, Any]) -> str | None:
    scored = [(r, i) for i, r in enumerate(rip["rewards"]) if r is not None]
    if not scored:
        return None
    return rip["responses"][max(scored, key=lambda ri: (ri[0], -ri[1]))[1]]


def export_rows(run_dir: Path, fmt: str) -> Iterator[dict[str, Any]]:
    folder = run_dir / "accepted"
    if not (run_dir / "run.json").exists():
        raise ConfigError(f"{run_dir}: not an agen run directory (no run.json)")
    if not folder.exists():
        return
    for r in read_records(folder):
        rip = r.get("rip")
        if fmt == "dpo":
            if rip is None:
                continue
            pair = preference_pair(rip["responses"], rip["rewards"])
            if pair is not None:
                chosen, rejected = pair
                yield {"id": r["id"], "prompt": r["question"], "chosen": chosen, "rejected": rejected}
        elif fmt == "sft":
            response = _best(rip) if rip is not None else r["answer"]
            if response is not None:
                yield {"id": r["id"], "prompt": r["question"], "response": response}
        else:
            raise ConfigError(f"unknown export format {fmt!r}; use 'dpo' or 'sft'")


def default_format(run_dir: Path) -> str:
    """dpo for an open-ended run (RIP's preference pairs), sft otherwise (a math run has no pairs)."""
    try:
        task = (yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("task")
    except OSError:
        raise ConfigError(f"{run_dir}: not an agen run directory (no config.yaml)") from None
    return "dpo" if task == "open_ended" else "sft"


def export(run_dir: Path, fmt: str, out: Path) -> int:
    """Write `out` (JSONL) atomically enough: a temp file renamed into place. Returns rows written;
    no rows at all is an error saying why (nothing is written)."""
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for row in export_rows(run_dir, fmt):
                f.write(orjson.dumps(row) + b"\n")
                n += 1
        if n == 0:
            tmp.unlink()
            accepted = sum(1 for _ in read_records(run_dir / "accepted")) if (run_dir / "accepted").exists() else 0
            why = ("it has no accepted records yet (see `agen status`)" if accepted == 0 else
                   f"none of its {accepted} accepted records has what {fmt!r} needs"
                   + (" (dpo pairs come from open-ended runs; try --format sft)" if fmt == "dpo" else ""))
            raise ConfigError(f"{run_dir}: nothing to export as {fmt}: {why}")
        tmp.replace(out)
    except OSError as exc:
        raise StorageError(f"writing {out} failed: {exc.strerror}", str(out)) from None
    return n
