"""The generate and filter workers: one candidate from its prompt to its verdict.

A worker never writes anything itself: every outcome goes to `finish` (which builds the record
and hands it to the sink), and a fatal provider error to `fatal` (which stops the run and leaves
the task uncommitted, so a resume redoes it). A task cut by a stop (`Stopped`: the run no longer
sends) is left uncommitted too; what it paid for is journaled and replayed on resume.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from agen.config import RunConfig, StageConfig
from agen.engine.admission import StageCounts
from agen.engine.tasks import FilterJob, GenTask
from agen.engine.turns import Turns
from agen.errors import FatalRunError, Stopped, TaskFailedError
from agen.filters import Call, CandidateFilter, FilterTask, TargetMet
from agen.gen.dedup import Deduper
from agen.gen.parse import Candidate, ParseFailure
from agen.gen.prompts import generation_messages
from agen.providers import Providers
from agen.seeding import stable_int
from agen.types import ChatRequest

Finish = Callable[..., Awaitable[None]]  # (task, candidate|None, status, reason, model, **extra)


@dataclass(slots=True)
class WorkerContext:
    """What the workers share with the pipeline that owns them."""

    cfg: RunConfig
    providers: Providers
    counts: dict[str, StageCounts]
    dedup: Deduper
    parse: Callable[[str], Candidate | ParseFailure]
    filter: CandidateFilter
    call: Call
    finish: Finish
    fatal: Callable[[FatalRunError], None]
    turns: Turns
    seen: Callable[[int, str], Awaitable[str | None]]  # the run-wide exact-duplicate set (other workers)

    def stage_cfg(self, stage: str) -> StageConfig:
        return self.cfg.propose if stage == "propose" else self.cfg.amplify

    def full(self, stage: str) -> bool:
        """The stage's target is met: work in flight is not sent any further (a resume redoes it)."""
        return self.counts[stage].full(self.stage_cfg(stage).target)


async def generate_worker(ctx: WorkerContext, stage: str, task_q: asyncio.Queue[GenTask | None],
                          filter_q: asyncio.Queue[FilterJob | None]) -> None:
    """generate → parse → dedup; a candidate that survives goes on to the filter queue."""
    sc = ctx.stage_cfg(stage)
    client = ctx.providers[sc.model]
    c = ctx.counts[stage]
    while (task := await task_q.get()) is not None:
        await ctx.turns.checkpoint()
        if ctx.full(stage):
            c.generating -= 1
            continue
        messages = generation_messages(ctx.cfg.template(sc), ctx.cfg.template(sc, "example"), task.examples,
                                       ctx.cfg.prompts.cache_layout)
        req = ChatRequest(messages=messages, max_tokens=sc.max_tokens,
                          temperature=sc.temperature, seed=stable_int(f"{ctx.cfg.seed}/{task.key}"), stage=stage,
                          task_id=task.id)
        try:
            out = await ctx.call(client, req)
        except Stopped:
            c.generating -= 1
            continue
        except TaskFailedError as exc:
            c.generating -= 1
            c.generated += 1
            await ctx.finish(task, None, "failed", f"generate_failed:{type(exc).__name__}", sc.model, error=str(exc))
            continue
        except FatalRunError as exc:
            c.generating -= 1
            ctx.fatal(exc)
            continue
        c.generating -= 1
        c.generated += 1
        await ctx.turns.checkpoint()
        finish = out.finish_reasons[0] if out.finish_reasons else None
        if out.truncated(0):  # cut at max_tokens: not a format error, and never worth a vote
            await ctx.finish(task, None, "rejected", "parse:truncated", sc.model, raw=out.texts[0][-2000:],
                             finish_reason=finish)
            continue
        parsed = ctx.parse(out.texts[0])
        if isinstance(parsed, ParseFailure):
            await ctx.finish(task, None, "rejected", f"parse:{parsed.reason}", sc.model, raw=out.texts[0][-2000:],
                             finish_reason=finish)
            continue
        if ctx.full(stage):  # paid for but not worth a filter any more: kept, visible, not counted
            await ctx.finish(task, parsed, "surplus", "surplus:not_filtered", sc.model)
            continue
        dup = ctx.dedup.check_and_add(parsed.question, task.id)
        if dup is not None:
            await ctx.finish(task, parsed, "rejected", f"duplicate:{dup.kind}", sc.model,
                             duplicate_of=dup.match_id, duplicate_score=round(dup.score, 4), finish_reason=finish)
            continue
        try:
            first = await ctx.seen(ctx.dedup.last_exact_key, task.id)  # exact_key(parsed.question)
        except FatalRunError as exc:  # the coordinator is gone: left uncommitted, redone on resume
            ctx.fatal(exc)
            continue
        if first is not None:  # another worker had this very question first
            await ctx.finish(task, parsed, "rejected", "duplicate:exact", sc.model, duplicate_of=first,
                             duplicate_score=1.0, finish_reason=finish)
            continue
        c.passed += 1
        c.filtering += 1
        await filter_q.put(FilterJob(task, parsed, sc.model, finish))


async def filter_worker(ctx: WorkerContext, filter_q: asyncio.Queue[FilterJob | None]) -> None:
    """Vote or RIP on one candidate at a time; the verdict becomes the record's status."""
    while (job := await filter_q.get()) is not None:
        await ctx.turns.checkpoint()
        task = job.task
        c = ctx.counts[task.stage]
        if ctx.full(task.stage):
            c.filtering -= 1
            await ctx.finish(task, job.candidate, "surplus", "surplus:not_filtered", job.gen_model)
            continue
        ftask = FilterTask(task.id, f"{ctx.cfg.seed}/{task.key}", task.stage,
                           job.candidate.question, job.candidate.answer, lambda: ctx.full(task.stage))
        try:
            verdict = await ctx.filter.judge(ftask)
        except TargetMet as met:  # not sent further; what it already paid for stays on the record
            c.filtering -= 1
            await ctx.finish(task, job.candidate, "surplus", "surplus:not_filtered", job.gen_model,
                             finish_reason=job.finish_reason, **met.detail)
            continue
        except Stopped:
            c.filtering -= 1  # left uncommitted: resumed from its journaled results
            continue
        except TaskFailedError as exc:
            c.filtering -= 1
            await ctx.finish(task, job.candidate, "failed", f"filter_failed:{type(exc).__name__}",
                             job.gen_model, error=str(exc))
            continue
        except FatalRunError as exc:
            c.filtering -= 1
            ctx.fatal(exc)
            continue
        c.filtering -= 1
        c.judged += 1
        c.judged_accepted += verdict.accepted
        extra: dict[str, Any] = {"finish_reason": job.finish_reason, **verdict.detail}
        await ctx.finish(task, job.candidate, "accepted" if verdict.accepted else "rejected",
                         verdict.reason, job.gen_model, **extra)
