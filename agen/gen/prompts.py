"""Render the generation and solve prompts from the template files under configs/templates."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

from agen.config import CONFIGS_DIR
from agen.errors import ConfigError
from agen.types import Example

TEMPLATES_DIR = CONFIGS_DIR / "templates"


@lru_cache(maxsize=32)
def load_template(name: str) -> str:
    """A template by file name (under configs/templates) or by path."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = TEMPLATES_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"template {name!r}: cannot read {path}: {exc.strerror}") from None


def check_template(name: str, fields: set[str]) -> None:
    """Fail before any request if a template lacks a field it must fill."""
    text = load_template(name)
    for field in fields:
        if "{" + field + "}" not in text:
            raise ConfigError(f"template {name!r} has no {{{field}}} placeholder")


def generation_prompt(template: str, example_template: str, examples: Sequence[Example]) -> str:
    """The CoT-Self-Instruct prompt showing `examples` as seed questions (or seed prompts)."""
    item = load_template(example_template)
    shown = "\n".join(item.format(index=i, question=ex.question).rstrip("\n")
                      for i, ex in enumerate(examples, start=1))
    return load_template(template).format(examples=shown)


def solve_prompt(template: str, question: str) -> str:
    """The prompt a voter answers: solve, ending in \\boxed{}."""
    return load_template(template).format(question=question)
