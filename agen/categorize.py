"""Give every seed a category (open-ended tasks show two seeds of one category per prompt).

Seeds without one get a cheap classification call each; answers are cached in the run
directory (keyed by prompt, template and model), so a resumed run pays for no seed twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import orjson
import structlog

from agen.config import CategoriesConfig
from agen.filters import Call
from agen.gen.categories import category_cache_key, guess_category, parse_category
from agen.gen.prompts import load_template
from agen.run.rundir import atomic_write
from agen.types import ChatRequest, Example

log = structlog.get_logger("agen.categorize")


async def categorize_seeds(seeds: list[Example], cfg: CategoriesConfig, client, call: Call,  # type: ignore[no-untyped-def]
                           cache_path: Path) -> list[Example]:
    """Seeds with a category each; unparseable replies fall back to a keyword guess (logged)."""
    template = load_template(cfg.template)
    cache: dict[str, str] = orjson.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    wire_model = getattr(getattr(client, "cfg", None), "model", client.name)
    keys = {s.id: category_cache_key(s.question, template, wire_model) for s in seeds if s.category is None}
    todo = [s for s in seeds if s.category is None and keys[s.id] not in cache]
    fallbacks = 0

    async def one(seed: Example) -> None:
        nonlocal fallbacks
        req = ChatRequest(({"role": "user", "content": template.format(prompt=seed.question)},), cfg.max_tokens,
                          temperature=0.0, seed=0, stage="categorize", task_id=f"categorize/{seed.id}")
        out = await call(client, req)
        category = parse_category(out.texts[0])
        if category is None:
            fallbacks += 1
            category = guess_category(seed.question)
        cache[keys[seed.id]] = category

    if todo:
        try:
            await asyncio.gather(*(one(s) for s in todo))
        finally:  # keep what was paid for, even if the run stops here
            atomic_write(cache_path, orjson.dumps(cache, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        log.info("seeds_categorized", classified=len(todo), keyword_fallbacks=fallbacks)
    return [s if s.category is not None else dataclasses.replace(s, category=cache[keys[s.id]]) for s in seeds]
