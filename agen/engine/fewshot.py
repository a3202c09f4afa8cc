"""Which examples a generation prompt shows: seeds for propose, accepted proposals for amplify."""

from __future__ import annotations

import random

from agen.config import StageConfig
from agen.types import Example


def pick_examples(sc: StageConfig, stage: str, index: int, run_seed: int, seeds: list[Example],
                  pool: list[Example], open_ended: bool) -> list[Example]:
    """The few-shot examples of task `index`, deterministic from its place: seeds for propose;
    accepted proposals (mixed with seeds at `seed_mix`) for amplify. Open-ended tasks draw all
    shots from one category."""
    rng = random.Random(f"{run_seed}/{stage}/{index}")
    use_pool = stage == "amplify" and bool(pool)
    category = None
    if open_ended:
        category = rng.choice(pool if use_pool else seeds).category
    shots: list[Example] = []
    for _ in range(sc.shots * 4):  # a few redraws for duplicates and thin categories
        source = seeds if not use_pool or rng.random() < sc.seed_mix else pool
        pick = rng.choice(source)
        if category is not None and pick.category != category:
            pick = rng.choice([ex for ex in source if ex.category == category] or source)
        if pick not in shots:
            shots.append(pick)
        if len(shots) == sc.shots:
            break
    return shots
