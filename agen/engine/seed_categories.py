"""Give every seed a category (open-ended tasks show two seeds of one category per prompt).

Seeds without one get a cheap classification call each; answers are cached in the run
directory (keyed by prompt, template and model), so a resumed run pays for no seed twice.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import structlog

from agen.config import CategoriesConfig
from agen.errors import TaskFailedError
from agen.filters import Call, gather_settled
from agen.gen.category_parse import category_cache_key, guess_category, parse_category
from agen.gen.prompts import fill, load_template
from agen.run.rundir import atomic_write
from agen.types import ChatRequest, Example

log = structlog.get_logger("agen.engine.seed_categories")
_SAVE_EVERY = 25


async def categorize_seeds(seeds: list[Example], cfg: CategoriesConfig, client, call: Call,  # type: ignore[no-untyped-def]
                           cache_path: Path) -> list[Example]:
    """Seeds with a category each; an unparseable reply or a failed call falls back to a keyword
    guess (counted and logged); a run-fatal error stops it, after every call has ended."""
    template = load_template(cfg.template)
    cache: dict[str, str] = orjson.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    wire_model = getattr(getattr(client, "cfg", None), "model", client.name)
    keys = {s.id: category_cache_key(s.question, template, wire_model) for s in seeds if s.category is None}
    todo = [s for s in seeds if s.category is None and keys[s.id] not in cache]

    def save() -> None:
        atomic_write(cache_path, orjson.dumps(cache, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    async def one(seed: Example) -> None:
        nonlocal fallbacks, unsaved
        req = ChatRequest(({"role": "user", "content": fill(template, prompt=seed.question)},), cfg.max_tokens,
                          temperature=0.0, seed=0, stage="categorize", task_id=f"categorize/{seed.id}")
        try:
            category = parse_category((await call(client, req)).texts[0])
        except TaskFailedError:  # this seed's call can never succeed: it must not stop the run
            category = None
        if category is None:
            fallbacks += 1
            category = guess_category(seed.question)
        cache[keys[seed.id]] = category
        unsaved += 1
        if unsaved >= _SAVE_EVERY:  # a crash loses at most this many paid classifications
            unsaved = 0
            save()

    fallbacks = unsaved = 0
    if todo:
        try:
            await gather_settled(*(one(s) for s in todo))
        finally:  # keep what was paid for, even if the run stops here
            save()
        log.info("seeds_categorized", classified=len(todo), keyword_fallbacks=fallbacks)
    return [s if s.category is not None else dataclasses.replace(s, category=cache[keys[s.id]]) for s in seeds]
