"""The generator: seeds → propose → dedup → filter → amplify → dedup → filter → sink, one event loop.

The filter is Answer-Consistency voting for verifiable tasks and RIP for open-ended ones.

Worker pools are joined by bounded queues, so memory stays flat whatever the targets:

    producer(stage) ─task_q─▶ generate workers ─filter_q─▶ filter workers ─▶ Sink (group commit)

Producers admit work guided by the running acceptance rate until the stage's target of *committed*
accepted examples is met, the budget is spent, or a stop is asked for. Every task id is stable
(`{fingerprint}-{stage}-{index}`), so a resumed run skips what is committed and redoes the rest.

Two kinds of stop: `request_stop` (targets, budget) admits nothing new but lets the work in
flight finish; `stop_sending` (first Ctrl-C or SIGTERM) also sends no further request of any
kind: the lanes are closed, so only requests already on the wire finish (within one latency);
the tasks they belonged to stay uncommitted and their paid results are journaled
(`run/journal.py`), so a resume replays them instead of paying twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections import defaultdict
from typing import Any, Callable

import structlog

from agen.config import RunConfig, StageConfig
from agen.cost import CostBook
from agen.engine.admission import StageCounts, budget_left
from agen.engine.coordination import Coordination, Solo
from agen.engine.fewshot import COVERAGE_TASKS, FewShotCoverage, Rotation, coverage, pick_examples
from agen.engine.loop_lag import LoopLagMonitor
from agen.engine.records import build_record, call_row
from agen.engine.seed_categories import categorize_seeds
from agen.engine.tasks import FilterJob, GenTask
from agen.engine.turns import Turns
from agen.engine.watchdog import Stall, Watchdog
from agen.engine.workers import WorkerContext, filter_worker, generate_worker
from agen.errors import FatalRunError, Stopped, StorageError, TaskFailedError
from agen.filters import Call, CandidateFilter
from agen.gen.dedup import Deduper
from agen.gen.parse import Candidate, parse_open_generation
from agen.providers import Providers
from agen.run.journal import Journal, base_task
from agen.run.ledger import PreviousSessions
from agen.run.restore import Restored
from agen.run.rundir import DEDUP_CACHE, RunDir
from agen.run.sink import Sink
from agen.types import CallRecord, Example, ScoreRequest
from agen.verify import make_verifier

log = structlog.get_logger("agen.engine.pipeline")

STAGES = ("propose", "amplify")
FilterFactory = Callable[[Call], CandidateFilter]


class Pipeline:
    """One run of the generator over an opened run directory and provider lanes."""

    def __init__(self, cfg: RunConfig, run_dir: RunDir, providers: Providers, seeds: list[Example],
                 restored: Restored, costs: CostBook, make_filter: FilterFactory,
                 previous: PreviousSessions | None = None, coord: Coordination | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.providers = providers
        self.seeds = seeds
        self.costs = costs
        self.counts = {s: StageCounts() for s in STAGES}
        for stage, c in restored.counts.items():
            self.counts[stage].restore(c.accepted, c.finished, c.reasons, c.spent_usd)
        self.pool: list[Example] = list(restored.pool)  # accepted proposals: amplify's few-shots
        self._rotation = Rotation(cfg.seed)
        self._shown: list[list[str]] = []  # shown example ids of the first amplify tasks admitted
        self.done_ids = restored.done_ids
        # its files are a cache in the run directory (emptied here, removed at the end): the shards
        # are the record, and the index is rebuilt from them below
        self.dedup = Deduper(threshold=cfg.dedup.near_threshold, store=run_dir.root / DEDUP_CACHE)
        for ex in seeds:
            self.dedup.add(ex.question, ex.id)
        for rid, question in restored.dedup_items:
            self.dedup.add(question, rid)
        restored.dedup_items.clear()  # indexed: the texts are not needed again this session
        self.coord: Coordination = coord if coord is not None else Solo(run_dir.fingerprint, self.done_ids)
        self.sink = Sink(run_dir, cfg.output, self.done_ids, self._on_commit, before_write=self._before_write)
        self.stop_reason: str | None = None
        self.sending = True  # False after stop_sending: no request may leave any more
        self.stopped_sending_at: float | None = None
        self._lanes_closed = False
        self.journal = Journal(previous.journal if previous else None)
        self._paid_before = previous.paid_ids if previous else frozenset()
        self.redone_usd = 0.0  # paid in this session for a request an earlier session had paid for
        self._replayed_cost: defaultdict[str, float] = defaultdict(float)  # per task: paid in an earlier session, replayed
        self.fatal: FatalRunError | None = None
        self.watchdog = Watchdog(cfg.watchdog)
        self.stall: Stall | None = None  # why the watchdog stopped the run
        self.exhausted: list[str] = []  # stages that tried max_attempts candidates short of their target
        self.started = time.monotonic()
        self.loop_lag = LoopLagMonitor()
        self._task_cost: defaultdict[str, float] = defaultdict(float)
        self._changed = asyncio.Event()
        self._req_ids = itertools.count()
        self._propose_done = asyncio.Event()
        self._work: asyncio.Task[None] | None = None
        self.accepted_this_session = 0
        self.parse = make_verifier(cfg).parse if cfg.task == "verifiable" else parse_open_generation
        self.filter = make_filter(self._call)
        store = getattr(providers, "batch_store", None)
        if store is not None:  # batch results' call lines are made durable before the results are kept
            store.ledger_barrier = self.sink.log_durable
        self.workers = WorkerContext(cfg, providers, self.counts, self.dedup, self.parse, self.filter,
                                     self._call, self._finish, self._fatal, Turns(), self.coord.seen)

    # ---- bookkeeping -------------------------------------------------------------------------

    def on_call(self, rec: CallRecord) -> None:
        """Ledger hook for every HTTP attempt: durable line, cost book, per-task cost."""
        self.sink.log(call_row(self.run_dir.session, rec))
        self.costs.add(rec)
        if rec.cost_usd and rec.task_id in self._paid_before:
            self.redone_usd += rec.cost_usd
        self._task_cost[base_task(rec.task_id)] += rec.cost_usd
        stage = self.counts.get(rec.stage.split(".", 1)[0])
        if stage is not None:
            stage.spent_in_flight_usd += rec.cost_usd

    async def _before_write(self, batch: list[dict[str, Any]]) -> set[str]:
        """Ask the coordination which records may still be written; the refused ones (or all, if the
        coordinator is gone) are not committed here and leave the counts as if never decided."""
        try:
            refused = await self.coord.before_write(batch)
        except FatalRunError as exc:
            self._fatal(exc)
            refused = {r["id"] for r in batch}
        if refused:
            log.warning("not_committed", records=len(refused), why="claim lost or coordinator unreachable")
            for r in batch:
                if r["id"] in refused:
                    c = self.counts[r["stage"]]
                    c.committing -= 1
                    c.committing_accepted -= r["status"] == "accepted"
                    c.spent_in_flight_usd += r["cost_usd"]  # still spent; the ledger keeps its calls
        return refused

    def _on_commit(self, batch: list[dict[str, Any]]) -> None:
        self.coord.committed(batch)
        for r in batch:
            c = self.counts[r["stage"]]
            c.finished += 1
            c.committing -= 1
            c.spent_usd += r["cost_usd"]
            c.reasons[r["reason"]] += 1
            if r["status"] == "accepted":
                c.committing_accepted -= 1
                c.accepted += 1
                self.accepted_this_session += 1
                if r["stage"] == "propose":
                    self.pool.append(Example(r["id"], r["question"], r["answer"], r.get("category")))
            self._watch(r["stage"], self.watchdog.observe(r))
        for stage in {r["stage"] for r in batch}:
            sc, c = self._stage_cfg(stage), self.counts[stage]
            self._watch(stage, self.watchdog.check_reachable(
                stage, c.accepted + c.others_accepted, sc.target, sc.attempts_cap() - c.finished, sc.attempts_cap(),
                f"{stage}.max_attempts"))
        self._notify()

    def _watch(self, stage: str, stall: Stall | None) -> None:
        if stall is not None and self.stall is None and self.stop_reason is None:
            self.stall = stall
            log.error("no_progress", stage=stage, cause=stall.cause, detail=stall.message)
            self.request_stop("no_progress")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def request_stop(self, reason: str) -> None:
        """Stop admitting work; in-flight tasks finish and are committed."""
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("stopping", reason=reason)
        self.filter.abort_pilot()
        self._notify()

    def stop_sending(self, reason: str) -> None:
        """Stop now without losing what was paid: nothing new is admitted and no further request
        is sent (queued or retrying requests are refused by their lanes with `Stopped`); requests on
        the wire finish and are recorded; cut tasks stay uncommitted, their results journaled."""
        self.halt_sending(reason)
        self.request_stop(reason)
        if not self._lanes_closed:
            self._lanes_closed = True
            for name in self.providers:
                lane = self.providers[name].lane
                lane.close(lane.closed or Stopped(f"not sent: {reason}"))

    def halt_sending(self, reason: str) -> None:
        """From this instant no request leaves (flags only, so a signal handler may call it in the
        middle of any code); `stop_sending`, run on the loop, does the rest."""
        if self.sending:
            self.sending = False
            self.stopped_sending_at = time.time()
            self.providers.halt(Stopped(f"not sent: {reason}"))

    def cancel_now(self) -> None:
        """Abandon in-flight work (it is redone on resume); the sink still flushes what it has."""
        if self._work is not None:
            self._work.cancel()

    def budget_left(self) -> bool:
        return budget_left(self.cfg.budget, self.costs, self.counts, self.coord.others_spent())

    # ---- calls -------------------------------------------------------------------------------

    async def _call(self, client: Any, req: Any) -> Any:
        """A chat completion (ChatRequest) or a reward score (ScoreRequest), bracketed by ledger
        begin/end lines, so a crash leaves 'billing unknown', never nothing."""
        paid = self.journal.replay(req)
        if paid is not None:  # an earlier session paid for this very request: not sent again
            self._replayed_cost[base_task(req.task_id)] += paid.cost_usd
            return paid
        if not self.sending:
            raise Stopped("not sent: the run is stopping")
        rid = next(self._req_ids)
        cut = False  # not sent yet: a cancel while `begin` is being made durable cuts nothing
        try:
            await self.sink.log_durable({"ev": "begin", "session": self.run_dir.session, "req": rid,
                                         "task_id": req.task_id, "model": client.name, "stage": req.stage})
            if not self.sending:
                raise Stopped("not sent: the run is stopping")
            cut = True
            if isinstance(req, ScoreRequest):
                result = await client.score(req.prompt, req.response, stage=req.stage, task_id=req.task_id)
            else:
                result = await client.complete(req)
            cut = False
            self.journal.hold(req, result)
            return result
        except (FatalRunError, TaskFailedError, Stopped):  # Stopped: refused by the lane, never sent
            cut = False
            raise
        finally:
            self.sink.log({"ev": "end", "session": self.run_dir.session, "req": rid, "cut": cut})

    # ---- producers -----------------------------------------------------------------------------

    def _stage_cfg(self, stage: str) -> StageConfig:
        return self.cfg.propose if stage == "propose" else self.cfg.amplify

    def _max_attempts(self, stage: str) -> int:
        return self._stage_cfg(stage).attempts_cap()

    def _examples(self, stage: str, index: int) -> list[Example]:
        examples = pick_examples(self._stage_cfg(stage), stage, index, self.cfg.seed, self.seeds, self.pool,
                                 self.cfg.task == "open_ended", self._rotation)
        if stage == "amplify" and len(self._shown) < COVERAGE_TASKS:
            self._shown.append([ex.id for ex in examples])
        return examples

    def fewshot_coverage(self) -> FewShotCoverage:
        """How many proposals the first amplify tasks of this session showed, and how evenly."""
        return coverage(self._shown, {ex.id for ex in self.pool}, len(self.pool))

    async def _produce(self, stage: str, task_q: asyncio.Queue[GenTask | None], workers: int) -> None:
        sc = self._stage_cfg(stage)
        c = self.counts[stage]
        try:
            if stage == "amplify":
                wanted = max(sc.shots, sc.min_pool)
                while len(self.pool) < wanted and not self._propose_done.is_set() and self.stop_reason is None:
                    await self._changed.wait()
                if not self.pool:
                    log.warning("amplify_without_proposals", detail="no accepted proposals; amplifying from seeds")
            admitted = 0
            while True:
                while True:
                    if self.stop_reason is not None or c.full(sc.target):
                        return
                    if not self.budget_left():
                        self.request_stop("budget")
                        return
                    if c.expected_accepted() < sc.target:
                        break
                    if c.generating + c.filtering < self.filter.min_in_flight(stage):
                        break  # a calibration pilot needs more candidates before any is decided
                    await self._changed.wait()
                try:
                    index = await self.coord.claim(stage, self._max_attempts(stage))
                except FatalRunError as exc:
                    self._fatal(exc)
                    return
                if index is None:
                    break
                tid = f"{self.run_dir.fingerprint[:8]}-{stage}-{index:08d}"
                if tid in self.done_ids:  # committed here, its mark lost with a crash: marked again
                    self.coord.committed([{"id": tid, "stage": stage, "status": "rejected"}])
                    continue
                c.generating += 1
                self.watchdog.admitted(stage, index)
                await task_q.put(GenTask(tid, stage, index, self._examples(stage, index)))
                admitted += 1
                if admitted % 32 == 0:
                    await asyncio.sleep(0)  # a put into a free queue never yields: bound the loop turn
            self.exhausted.append(stage)
            log.warning("max_attempts_reached", stage=stage, attempts=self._max_attempts(stage))
        finally:
            # Cancelled (second Ctrl-C, storage error): the workers are too, and put() on a full
            # queue nobody reads would block this finally, and the whole shutdown, forever.
            if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                for _ in range(workers):
                    await task_q.put(None)

    def _fatal(self, exc: FatalRunError) -> None:
        """The run cannot go on; the task is left uncommitted so a resume redoes it."""
        if self.fatal is None:
            self.fatal = exc
            log.error("fatal_provider_error", error=str(exc))
        self.request_stop("fatal_provider_error")

    async def _finish(self, task: GenTask, cand: Candidate | None, status: str, reason: str,
                      model: str, **extra: Any) -> None:
        """Build the record of a finished task and hand it to the sink (counted as committing)."""
        c, target = self.counts[task.stage], self._stage_cfg(task.stage).target
        if status == "accepted":
            try:
                fits = not c.full(target) and await self.coord.take_slot(task.stage, task.index, target)
            except FatalRunError as exc:  # the coordinator is gone: left uncommitted, journaled
                self._fatal(exc)
                return
            if not fits:
                status, reason = "surplus", f"surplus:{reason}"  # decided after the target was met: kept, not counted
        cost = self._task_cost.pop(task.id, 0.0)
        c.spent_in_flight_usd -= cost
        self.journal.drop(task.id)
        cost += self._replayed_cost.pop(task.id, 0.0)  # what the task cost, whichever session paid
        rec = build_record(self.cfg, self.run_dir.session, task, cand, status, reason, model, cost, extra)
        c.committing += 1
        c.committing_accepted += status == "accepted"
        await self.sink.put(rec)

    # ---- orchestration -------------------------------------------------------------------------

    async def _run_stage(self, stage: str, filter_q: asyncio.Queue[FilterJob | None]) -> None:
        sc, c = self._stage_cfg(stage), self.counts[stage]
        if sc.target <= c.accepted + c.others_accepted:
            if stage == "propose":
                self._propose_done.set()
            return
        workers = self._width(sc.workers, stage, sc.model)
        task_q: asyncio.Queue[GenTask | None] = asyncio.Queue(maxsize=workers)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._produce(stage, task_q, workers))
                for _ in range(workers):
                    tg.create_task(generate_worker(self.workers, stage, task_q, filter_q))
            self.filter.finish_pilot(stage)  # its pilot must not wait on the other stage's workers
        finally:
            if stage == "propose":
                self._propose_done.set()
                self._notify()

    def _width(self, configured: int, stage: str, model: str) -> int:
        """Workers of a stage: in batch mode enough to fill a batch (a lane's cap does not apply to
        batch lines, and thousands of requests waiting in a batch are normal)."""
        if self.cfg.mode_for(stage, model) == "batch":
            return max(configured, self.cfg.batch.max_size)
        return configured

    async def _stages_and_filters(self) -> None:
        fc = self.cfg.vote if self.cfg.task == "verifiable" else self.cfg.rip
        width = self._width(fc.concurrency, "amplify.vote" if fc is self.cfg.vote else "amplify.respond",  # type: ignore[union-attr]
                            fc.model)  # type: ignore[union-attr]
        filter_q: asyncio.Queue[FilterJob | None] = asyncio.Queue(maxsize=width)
        async with asyncio.TaskGroup() as tg:
            voters = [tg.create_task(filter_worker(self.workers, filter_q)) for _ in range(width)]

            async def stages() -> None:
                try:
                    async with asyncio.TaskGroup() as inner:
                        inner.create_task(self._run_stage("propose", filter_q))
                        inner.create_task(self._run_stage("amplify", filter_q))
                    self.filter.finish_pilot()  # no candidate is coming that a pilot could wait for
                finally:
                    if not asyncio.current_task().cancelling():  # type: ignore[union-attr]  # see _produce
                        for _ in voters:
                            await filter_q.put(None)

            tg.create_task(stages())

    async def _prepare_seeds(self) -> None:
        """Open-ended runs: every seed gets a category before any prompt shows two of one kind."""
        cc = self.cfg.categories
        if self.cfg.task != "open_ended" or all(s.category for s in self.seeds):
            return
        if cc is None:
            self.seeds = [dataclasses.replace(s, category=s.category or "miscellaneous") for s in self.seeds]
            return
        self.seeds = await categorize_seeds(self.seeds, cc, self.providers[cc.model], self._call,
                                            self.run_dir.root / "seed_categories.json")

    async def _work_all(self) -> None:
        try:
            await self._prepare_seeds()
        except FatalRunError as exc:
            self._fatal(exc)
            return
        except Stopped:
            return
        await self._stages_and_filters()

    async def run(self) -> None:
        """Run to the targets (or a stop); always flush the sink before returning."""
        self.sink.open()
        self.loop_lag.start()
        sink_task = asyncio.create_task(self.sink.run(), name="sink")
        self._work = asyncio.create_task(self._work_all(), name="work")
        watch = asyncio.create_task(self._watch_sink(sink_task), name="watch-sink")
        ticks = asyncio.create_task(self._coordinate(), name="coordinate")
        storage_error: StorageError | None = None
        try:
            await self._work
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise
        except ExceptionGroup as group:
            # A storage error raised in a worker (writing thresholds, or re-raising the writer's
            # own error when offering a record) is reported once, as a storage error, below.
            # Anything else is a bug and propagates.
            storage, rest = group.split(lambda e: not isinstance(e, BaseExceptionGroup)
                                        and isinstance(e, StorageError))
            if rest is not None:
                raise rest from None
            storage_error = _first_leaf(storage)  # type: ignore[assignment]
        finally:
            watch.cancel()
            ticks.cancel()
            for row in self.journal.unfinished(self.run_dir.session):  # cut tasks: resume replays these
                self.sink.log(row)
            await self.filter.aclose()
            self.loop_lag.close()
            await self.sink.aclose()
            await asyncio.shield(sink_task)
            self.dedup.close()
            with contextlib.suppress(FatalRunError):
                await self._tick()  # the final global counts for the summary and exit code
            await self.coord.aclose()
        if self.sink.error is not None:
            raise self.sink.error
        if storage_error is not None:
            raise storage_error

    async def _coordinate(self) -> None:
        """Renew claims, follow the other workers' counts and share their proposals (coordinated runs)."""
        every = self.coord.tick_s
        if every is None:
            return
        while True:
            try:
                await self._tick()
            except FatalRunError as exc:
                self._fatal(exc)
                return
            await asyncio.sleep(every)

    async def _tick(self) -> None:
        proposals = await self.coord.tick({s: c.expected_in_flight() for s, c in self.counts.items()},
                                          (self.costs.total_usd + sum(c.cost_ahead() for c in self.counts.values()),
                                           self.costs.total_tokens))
        own = {ex.id for ex in self.pool} if proposals else set()
        self.pool.extend(ex for ex in proposals if ex.id not in own)
        for stage, c in self.counts.items():
            c.others_accepted = self.coord.others_accepted(stage)
            c.others_in_flight = self.coord.others_in_flight(stage)
        self._notify()

    async def _watch_sink(self, sink_task: asyncio.Task[None]) -> None:
        await asyncio.wait([sink_task])
        if self.sink.error is not None:
            self.request_stop("storage_error")
            self.cancel_now()

    def snapshot(self) -> dict[str, Any]:
        """Counts and spend for the manifest, the progress display and the summary."""
        return {
            "fingerprint": self.run_dir.fingerprint,
            "session": self.run_dir.session,
            "stages": {s: {"accepted": c.accepted, "accepted_all": c.accepted + c.others_accepted,
                           "target": self._stage_cfg(s).target,
                           "max_tokens": self._stage_cfg(s).max_tokens,
                           "finished": c.finished, "inflight": c.inflight, "reasons": dict(c.reasons)}
                       for s, c in self.counts.items()},
            "costs": self.costs.snapshot(),
            "stop_reason": self.stop_reason,
            "stall": None if self.stall is None else self.stall.message,
            "exhausted": list(self.exhausted),
            "stopped_sending_at": self.stopped_sending_at,
            "redone_usd": round(self.redone_usd, 8),
            "replayed": {"requests": self.journal.replayed, "usd": round(self.journal.replayed_usd, 8)},
            "fewshot": self.fewshot_coverage().as_dict(),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "loop_lag": self.loop_lag.snapshot(),
            **({"others_spent_usd": round(self.coord.others_spent()[0], 8)} if self.coord.tick_s else {}),
        }


def _first_leaf(group: BaseException | None) -> BaseException | None:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group
