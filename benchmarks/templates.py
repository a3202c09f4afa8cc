"""Template rendering: agen's known-placeholder `fill` against str.format and string.Template.

    python benchmarks/templates.py

Renders the shipped generation template with two 400-character seeds; prints µs per render and
the ratio to str.format measured in the same run (all three are microseconds; a request is ~10^5)."""

from __future__ import annotations

import json
import string
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agen.gen.prompts import fill  # noqa: E402


def main() -> None:
    text = (ROOT / "configs" / "templates" / "verifiable_generate.txt").read_text()
    as_format = text.replace("{", "{{").replace("}", "}}").replace("{{examples}}", "{examples}")
    as_template = string.Template(text.replace("$", "$$").replace("{examples}", "$examples"))
    shown = "Seed Question 1: " + "x" * 400 + "\nSeed Question 2: " + "y" * 400
    assert fill(text, examples=shown) == as_format.format(examples=shown) == as_template.substitute(examples=shown)
    n = 100_000
    us = {name: timeit.timeit(f, number=n) / n * 1e6 for name, f in (
        ("str.format", lambda: as_format.format(examples=shown)),
        ("fill", lambda: fill(text, examples=shown)),
        ("string.Template", lambda: as_template.substitute(examples=shown)))}
    for name, v in us.items():
        print(f"{name:16} {v:6.2f} µs/render  ratio to str.format {v / us['str.format']:.2f}")
    print(json.dumps({k: round(v, 3) for k, v in us.items()}))


if __name__ == "__main__":
    main()
