"""The dataset card `agen export` writes beside its file: what the data is and how it was made.

Hugging Face reads the YAML header (licence, task, data file); people read the rest: counts,
models, cost, the filter and its settings, and where the seeds came from under which licence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agen.app.status import snapshot_from_files
from agen.config import RunConfig, resolve_beside_config
from agen.run.rundir import load_snapshot

# Licence files ship beside seed files as NAME-LICENSE (data/GSM8K-LICENSE for gsm8k_*.jsonl).
_LICENCE_IDS = (("MIT License", "mit"), ("Apache License", "apache-2.0"), ("Creative Commons", "other"))


def _norm(s: str) -> str:
    return s.lower().replace("-", "").replace("_", "")


def _seed_file(root: Path, cfg: RunConfig) -> Path | None:
    config_dir = json.loads((root / "run.json").read_text(encoding="utf-8")).get("config_dir")
    p = resolve_beside_config(Path(cfg.seeds.path), Path(config_dir) if config_dir else None)  # as the run found them
    return p if p.is_file() else None


def licence_files(seed_file: Path) -> list[Path]:
    """The NAME-LICENSE files beside `seed_file` that belong to it (its stem starts with NAME)."""
    stem = _norm(seed_file.stem)
    return [lic for lic in sorted(seed_file.parent.glob("*LICENSE*"))
            if (prefix := _norm(lic.name.split("LICENSE")[0])) and stem.startswith(prefix)]


def seed_licence(seed_file: Path | None) -> tuple[str, str]:
    """(HF licence id, human text) for the seeds, from a NAME-LICENSE file beside them."""
    if seed_file is None:
        return "unknown", "unknown (seed file not found): state your seeds' licence here"
    for lic in licence_files(seed_file):
        head = lic.read_text(encoding="utf-8", errors="replace").strip().splitlines()[0].strip()
        ident = next((i for marker, i in _LICENCE_IDS if marker in head), "other")
        return ident, f"{head} (`{lic.name}` beside `{seed_file.name}`)"
    return "unknown", f"unknown: no licence file found beside `{seed_file.name}`; state it here"


def _filter_text(cfg: RunConfig) -> str:
    if cfg.vote is not None:
        v = cfg.vote
        return (f"Answer-Consistency: {v.k} solutions sampled from `{v.model}`; kept when the majority "
                f"answer equals the candidate's and holds at least {v.min_share:.0%} of the votes "
                f"(early stopping {'on' if v.early_stop else 'off'}: a pass rate is over the samples drawn).")
    if cfg.rip is not None:
        r = cfg.rip
        return (f"RIP: {r.k} responses from `{r.model}` scored by `{r.judge_model}` ({r.judge_kind}); "
                f"thresholds calibrated on a pilot and frozen (`rip_thresholds.json`).")
    return "none"


def render_card(root: Path, fmt: str, data_file: str, rows: int, low: float | None,
                high: float | None) -> str:
    cfg = load_snapshot(root)
    snap = snapshot_from_files(root)
    ident, licence = seed_licence(_seed_file(root, cfg))
    task = "text-generation" if cfg.task == "open_ended" or fmt in ("sft", "dpo") else "question-answering"
    stages = snap["stages"]
    total = snap["costs"]["total"]["cost_usd"]
    accepted = sum(s["accepted"] for s in stages.values())
    models = "\n".join(f"- `{name}`: {m.provider} `{m.model}`" for name, m in cfg.models.items())
    counts = "\n".join(f"- {name}: {s['accepted']} accepted of {s['finished']} candidates"
                       for name, s in stages.items())
    bounds = ("" if low is None and high is None else
              f"\nExported only problems with a pass rate in [{low if low is not None else 0}, "
              f"{high if high is not None else 1}].")
    lines: list[Any] = [
        "---", f"license: {ident}", "task_categories:", f"- {task}", "configs:", "- config_name: default",
        "  data_files:", "  - split: train", f"    path: {data_file}", "---", "",
        f"# agen dataset `{root.name}` ({fmt})", "",
        f"{rows} rows in `{data_file}`, exported with `agen export --format {fmt}` from run "
        f"`{snap['fingerprint']}` ({cfg.task} task).{bounds}", "",
        "## Counts", counts, "",
        "## Models", models,
        f"- propose with `{cfg.propose.model}`, amplify with `{cfg.amplify.model}` "
        f"(few-shots from at least {cfg.amplify.min_pool} accepted proposals)", "",
        "## Cost", f"${total:.4f} in all, ${total / accepted:.6f} per accepted example." if accepted
        else f"${total:.4f} in all.", "",
        "## Filter", _filter_text(cfg), "",
        "## Seeds", f"`{cfg.seeds.path}`; licence: {licence}.", "",
        "Generated data may inherit the seeds' licence and the model providers' terms; check both.",
    ]
    return "\n".join(str(x) for x in lines)
