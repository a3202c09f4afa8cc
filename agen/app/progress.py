"""Live progress: a rich display on a terminal, a structured log line every few seconds otherwise."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table

log = structlog.get_logger("agen.app.progress")


def count_429s(stats: dict[str, Any]) -> int:
    """HTTP 429 responses over every lane (`<model>/status/429`)."""
    return int(sum(v for k, v in stats.items() if k.endswith("/status/429")))


def count_requests(stats: dict[str, Any]) -> int:
    """HTTP attempts over every lane (`<model>/requests`)."""
    return int(sum(v for k, v in stats.items() if k.count("/") == 1 and k.endswith("/requests")))


class Progress:
    """Reads the pipeline's committed counts and the lanes' statistics; owns no state of its own."""

    def __init__(self, pipeline: Any, providers: Any, *, live: bool | None = None, every_s: float = 5.0) -> None:
        self.pipeline = pipeline
        self.providers = providers
        self.live = sys.stderr.isatty() if live is None else live
        self.every_s = every_s if not self.live else 0.5
        self._task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()
        self._last = (self._t0, 0)

    def figures(self) -> dict[str, Any]:
        snap = self.pipeline.snapshot()
        stats = self.providers.statistics()
        now = time.monotonic()
        reqs = count_requests(stats)
        t_last, r_last = self._last
        rps = (reqs - r_last) / max(1e-9, now - t_last)
        self._last = (now, reqs)
        accepted = sum(s["accepted"] for s in snap["stages"].values())
        target = sum(s["target"] for s in snap["stages"].values())
        cost = snap["costs"]["total"]["cost_usd"]
        done_now = self.pipeline.accepted_this_session
        elapsed = now - self._t0
        eta = (target - accepted) * elapsed / done_now if done_now and target > accepted else None
        return {"stages": snap["stages"], "requests": reqs, "rps": rps, "429s": count_429s(stats),
                "cost_usd": cost, "cost_per_accepted": cost / accepted if accepted else None,
                "eta_s": eta, "elapsed_s": elapsed}

    def _table(self, f: dict[str, Any]) -> Table:
        t = Table(title="agen", expand=False)
        for col in ("stage", "accepted/target", "finished", "in flight"):
            t.add_column(col)
        for name, s in f["stages"].items():
            t.add_row(name, f"{s['accepted']}/{s['target']}", str(s["finished"]), str(s["inflight"]))
        cpa = f"${f['cost_per_accepted']:.6f}" if f["cost_per_accepted"] is not None else "-"
        eta = f"{f['eta_s']:.0f}s" if f["eta_s"] is not None else "-"
        t.caption = (f"{f['rps']:.0f} req/s · {f['requests']} requests · {f['429s']} 429s · "
                     f"${f['cost_usd']:.4f} spent · {cpa}/accepted · ETA {eta}")
        return t

    async def _loop(self) -> None:
        if self.live:
            with Live(self._table(self.figures()), console=Console(stderr=True), refresh_per_second=4,
                      transient=True) as live:
                while True:
                    await asyncio.sleep(self.every_s)
                    live.update(self._table(self.figures()))
        while True:
            await asyncio.sleep(self.every_s)
            f = self.figures()
            log.info("progress", **{f"{k}_accepted": v["accepted"] for k, v in f["stages"].items()},
                     requests=f["requests"], rps=round(f["rps"], 1), throttled=f["429s"],
                     cost_usd=round(f["cost_usd"], 6), eta_s=None if f["eta_s"] is None else round(f["eta_s"]))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="progress")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
