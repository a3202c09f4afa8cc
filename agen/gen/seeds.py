"""Load human seed examples from JSONL, mapping the user's field names onto agen's."""

from __future__ import annotations

from pathlib import Path

import orjson

from agen.config import SeedsConfig, resolve_beside_config
from agen.errors import ConfigError
from agen.gen.parse import extract_boxed, gsm8k_reference
from agen.types import Example


def _reference(raw: str | None, fmt: str) -> str | None:
    if raw is None:
        return None
    if fmt == "gsm8k":
        return gsm8k_reference(raw)
    if fmt == "boxed":
        return extract_boxed(raw)
    return raw.strip() or None


def load_seeds(cfg: SeedsConfig, base_dir: Path | None = None) -> list[Example]:
    """Read every seed; a malformed line is a ConfigError naming the file, line and field."""
    path = resolve_beside_config(Path(cfg.path), base_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"seeds.path: cannot read seed file {path}: {exc.strerror}") from None
    seeds: list[Example] = []
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(row).__name__}")
        question = row.get(cfg.question_field)
        if not isinstance(question, str) or not question.strip():
            keys = ", ".join(sorted(row)) or "(none)"
            raise ConfigError(f"{where}: no text in field {cfg.question_field!r} "
                              f"(set seeds.question_field; this row has: {keys})")
        answer = None
        if cfg.answer_field is not None:
            raw_answer = row.get(cfg.answer_field)
            if raw_answer is not None and not isinstance(raw_answer, (str, int, float)):
                raise ConfigError(f"{where}: field {cfg.answer_field!r} must be text or a number")
            answer = _reference(None if raw_answer is None else str(raw_answer), cfg.answer_format)
        category = row.get(cfg.category_field) if cfg.category_field else None
        seeds.append(Example(f"seed-{lineno:06d}", question.strip(), answer,
                             str(category) if category is not None else None))
        if cfg.limit and len(seeds) >= cfg.limit:
            break
    if len(seeds) < 2:
        raise ConfigError(f"{path}: needs at least 2 seed examples, found {len(seeds)}")
    return seeds
