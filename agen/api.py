"""The Python API: `agen.run(config, **overrides)` and `agen.load(run_dir)`, beside the CLI.

    import agen
    result = agen.run("configs/quickstart.yaml", out="runs/demo", target=50)
    print(result.accepted, result.cost_usd, result.accepted_files)
    ds = agen.load(result.run_dir)          # a datasets.Dataset of the accepted records

`run` takes a config path, a dict (the YAML's content) or a `RunConfig`. Overrides are dotted
paths (`**{"vote.k": 8}`), the same with `__` for the dot (`vote__k=8`), or the CLI's shortcuts
(`out`, `target`, `proposals`, `budget_usd`, `k`: `vote.k`, or `rip.k` for an open-ended task). A bad config raises `ConfigError` (one line
naming the field); every other end — done, budget reached, interrupted, a fatal provider or
storage error — returns a `RunResult` whose `exit_code` is the CLI's and whose run is resumable.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agen import yaml_text
from agen.app.logs import configure_logging
from agen.app.runner import EXIT_INPUT, EXIT_OK, run_session
from agen.config import RunConfig, k_key, load_config, parse_config, set_dotted
from agen.errors import ConfigError
from agen.run.shards import read_records

__all__ = ["RunResult", "load", "run"]

SHORTCUTS = {"out": "output.dir", "target": "amplify.target", "proposals": "propose.target",
             "budget_usd": "budget.usd"}
STATUSES = ("accepted", "rejected", "failed", "surplus", "all")


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run left behind: counts and cost per stage, and where the data is."""

    exit_code: int
    message: str
    run_dir: Path
    accepted: dict[str, int]  # per stage
    finished: dict[str, int]  # candidates finished per stage (accepted, rejected or failed)
    cost_usd: float
    accepted_files: list[Path]

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def cost_per_accepted_usd(self) -> float | None:
        total = sum(self.accepted.values())
        return self.cost_usd / total if total else None


def _dotted(overrides: dict[str, Any], config: Any) -> dict[str, Any]:
    names = {**SHORTCUTS, "k": k_key(config)}
    return {names.get(k, k.replace("__", ".")): v for k, v in overrides.items()}


def _apply(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for dotted, value in overrides.items():
        set_dotted(raw, dotted, value, "agen.run config")
    return raw


def _config(config: str | Path | dict[str, Any] | RunConfig, overrides: dict[str, Any]) -> tuple[RunConfig, Path | None]:
    if isinstance(config, (str, Path)):
        return load_config(config, overrides), Path(config).parent
    raw = config.model_dump(mode="json") if isinstance(config, RunConfig) else yaml_text.load(yaml_text.dump(config))
    return parse_config(_apply(raw, overrides), "agen.run config"), None


def run(config: str | Path | dict[str, Any] | RunConfig, *, quiet: bool = False, live: bool = False,
        **overrides: Any) -> RunResult:
    """Run (or resume) a config to its targets; see the module doc. `quiet` hides the summary,
    `live` shows the progress display."""
    cfg, config_dir = _config(config, _dotted(overrides, config))
    configure_logging(cfg.log_level)
    sink = io.StringIO() if quiet else None
    with contextlib.redirect_stdout(sink) if sink is not None else contextlib.nullcontext():
        outcome = run_session(cfg, config_dir=config_dir, live=live)
    if outcome.exit_code == EXIT_INPUT:
        raise ConfigError(outcome.message)
    snap = outcome.snapshot
    root = Path(cfg.output.dir)
    stages = snap.get("stages", {})
    return RunResult(
        exit_code=outcome.exit_code, message=outcome.message, run_dir=root,
        accepted={s: v["accepted"] for s, v in stages.items()},
        finished={s: v["finished"] for s, v in stages.items()},
        cost_usd=snap.get("costs", {}).get("total", {}).get("cost_usd", 0.0),
        accepted_files=sorted((root / "accepted").glob("part-*.jsonl")) if (root / "accepted").exists() else [])


def _records(root: Path, status: str) -> Iterator[dict[str, Any]]:
    folders = ["accepted"] if status == "accepted" else ["rejected"] if status in ("rejected", "failed", "surplus") \
        else ["accepted", "rejected"]
    for name in folders:
        if (root / name).exists():
            for r in read_records(root / name):
                if status == "all" or r["status"] == status:
                    yield r


def load(run_dir: str | Path, status: str = "accepted", as_dataset: bool | None = None) -> Any:
    """A run's records of `status` (accepted, rejected, failed, surplus or all) as a `datasets.Dataset`,
    or — without `datasets` installed, or with `as_dataset=False` — an iterator of dicts."""
    root = Path(run_dir)
    if status not in STATUSES:
        raise ConfigError(f"agen.load: status {status!r} is not one of {', '.join(STATUSES)}")
    if not (root / "run.json").exists():
        raise ConfigError(f"{root}: not an agen run directory (no run.json)")
    if as_dataset is False:
        return _records(root, status)
    try:
        import datasets
    except ImportError:
        if as_dataset:
            raise ConfigError("agen.load(as_dataset=True) needs the datasets package (pip install datasets)") from None
        return _records(root, status)
    return datasets.Dataset.from_list(_same_columns(list(_records(root, status))))


def _same_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row with the union of all rows' keys (None where missing): `Dataset.from_list` takes
    its columns from the first row and would drop e.g. `vote` when a failed record comes first."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in columns} for r in rows]
