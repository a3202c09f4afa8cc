"""`agen init DIR`: an editable starter — a built-in config, its templates and its seeds, copied into
DIR with paths relative to the config (templates and seeds are looked up next to it first)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from agen import yaml_text
from agen.app.dataset_card import licence_files
from agen.config import CONFIGS_DIR, DATA_ROOT, RunConfig, builtin_config, parse_config
from agen.errors import ConfigError, StorageError

HEADER = ("# Starter config written by `agen init` from the built-in '{base}' config. Every key is described\n"
          "# in the README. Templates and seeds named here are looked up next to this file first;\n"
          "# output.dir is relative to the directory you run agen in.\n")


def _templates(cfg: RunConfig) -> list[tuple[list[str], str]]:
    """(dotted path in the YAML, template file name) of every template the config uses."""
    out = []
    for stage in ("propose", "amplify"):
        sc = getattr(cfg, stage)
        out.append(([stage, "template"], cfg.template(sc)))
        out.append(([stage, "example_template"], cfg.template(sc, "example")))
    if cfg.vote is not None:
        out.append((["vote", "template"], cfg.solve_template()))  # the domain's default if unset
    if cfg.rip is not None:
        out.append((["rip", "respond_template"], cfg.rip.respond_template))
        out.append((["rip", "judge_template"], cfg.rip.judge_template))
    if cfg.categories is not None:
        out.append((["categories", "template"], cfg.categories.template))
    return out


def write_starter(directory: Path, base: str = "quickstart") -> Path:
    source = builtin_config(base)
    if source is None:
        raise ConfigError(f"no built-in config named {base!r}")
    target = directory / "config.yaml"
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another directory")
    raw: dict[str, Any] = yaml_text.load(source.read_text(encoding="utf-8"))
    cfg = parse_config(raw, str(source))
    try:
        (directory / "templates").mkdir(parents=True, exist_ok=True)
        for keys, name in _templates(cfg):
            shutil.copyfile(CONFIGS_DIR / "templates" / name, directory / "templates" / name)
            raw.setdefault(keys[0], {})[keys[1]] = f"templates/{name}"
        seeds = DATA_ROOT / raw["seeds"]["path"]
        shutil.copyfile(seeds, directory / seeds.name)
        for lic in licence_files(seeds):  # the card reads the seeds' licence from beside them
            shutil.copyfile(lic, directory / lic.name)
        raw["seeds"]["path"] = seeds.name
        raw["output"] = {**raw.get("output", {}), "dir": f"runs/{directory.resolve().name}"}
        target.write_text(HEADER.format(base=base) + yaml_text.dump(raw, sort_keys=False), encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"writing {directory} failed: {exc.strerror}", str(directory)) from None
    return target
