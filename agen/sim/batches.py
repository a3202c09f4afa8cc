"""The sim's batch jobs, shared by both wires: what a batch holds, how it runs, what it counts.

A job is a list of (custom_id, body) lines. It runs as one asyncio task in the sim process: a
tenth of its delay validating, eight tenths answering its lines (spread over the time, so a poll
sees progress), a tenth finalizing. Each line is answered by the online endpoint's own code
(`Handlers.answer(..., batch=True)`): same model, world, seeds, `n` and usage, but none of the
online rate limits, scripts, random faults or latency. The wire modules (`openai_batches`,
`anthropic_batches`) turn a job into each provider's objects and result lines.

Batch state lives in this process only: a restarted sim (or `POST /sim/reset`) has forgotten every
batch and file, which breaks a client's assumption that a submitted batch survives anything. With
`batch_dir` in the sim config they are kept there (`agen.sim.batch_store`) and a restarted sim
takes them up again: ended jobs as they were, unfinished ones run again from the start.
`BatchBook` counts what was submitted (`GET /sim/batch_stats`), so a crash test can assert that no
batch was submitted twice.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agen.sim import limits
from agen.sim.batch_store import BatchStore
from agen.sim.config import BatchOptions, SimConfig
from agen.sim.files import SimFile

__all__ = ["AnswerLine", "BatchBook", "Job", "LineResult", "Phase", "End"]

Wire = Literal["openai", "anthropic"]
Phase = Literal["validating", "in_progress", "finalizing", "ended"]
End = Literal["completed", "failed", "expired", "cancelled"]
Outcome = Literal["ok", "error", "expired", "canceled"]

# (wire, body, request id) -> (status, response body, billed usage (input, cached, cache write, output) or None)
AnswerLine = Callable[[Wire, dict[str, Any], str], Awaitable[tuple[int, Any, tuple[int, int, int, int] | None]]]

_STEPS = 20  # a job answers its lines in up to this many slices of its in-progress time


@dataclass(slots=True)
class LineResult:
    custom_id: str
    outcome: Outcome
    status: int = 0  # HTTP status of the answer (ok/error)
    body: Any = None  # the answer's body (ok/error)
    request_id: str = ""


@dataclass
class Job:
    """One submitted batch, wire-neutral. Times are wall-clock epoch seconds."""

    id: str
    wire: Wire
    lines: list[tuple[str, dict[str, Any]]]
    opts: BatchOptions
    model: str | None  # the model of the first line (whose options the job uses)
    prompt_tokens: int  # what the job holds in the enqueued-token budget while it runs
    created_at: float
    extra: dict[str, Any] = field(default_factory=dict)  # the wire's own fields (endpoint, metadata, file ids)
    phase: Phase = "validating"
    end: End | None = None
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    ended_at: float | None = None
    cancel_at: float | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # why a job failed (OpenAI's errors.data)
    results: dict[str, LineResult] = field(default_factory=dict)  # custom_id -> result, in answer order
    seq: int = 0  # submission order in this sim (and the seed of its random draws)
    task: asyncio.Task[None] | None = None

    _KEPT = ("id", "wire", "lines", "model", "prompt_tokens", "created_at", "extra", "phase", "end", "in_progress_at",
             "finalizing_at", "ended_at", "cancel_at", "errors", "seq")

    def to_doc(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in self._KEPT}
        doc["results"] = [[r.custom_id, r.outcome, r.status, r.body, r.request_id] for r in self.results.values()]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], opts: BatchOptions) -> Job:
        job = cls(**{k: doc[k] for k in cls._KEPT if k != "lines"}, lines=[(c, b) for c, b in doc["lines"]], opts=opts)
        job.results = {r[0]: LineResult(*r) for r in doc["results"]}
        return job

    @property
    def running(self) -> bool:
        return self.phase != "ended"

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(r.outcome for r in self.results.values())


@dataclass
class _Usage:
    lines: int = 0
    status: collections.Counter[int] = field(default_factory=collections.Counter)
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "status": {str(k): v for k, v in sorted(self.status.items())},
                "input_tokens": self.input_tokens, "cached_input_tokens": self.cached_input_tokens,
                "cache_write_tokens": self.cache_write_tokens, "output_tokens": self.output_tokens}


Finisher = Callable[["BatchBook", Job], None]  # a wire's work at the end of a job (OpenAI: the result files)


class BatchBook:
    """Every job and file of this sim process, what was submitted, and the runner of jobs."""

    def __init__(self, cfg: SimConfig, finishers: dict[str, Finisher] | None = None) -> None:
        self.cfg = cfg
        self.finishers = finishers or {}
        self.jobs: dict[str, Job] = {}  # insertion order = creation order
        self.files: dict[str, SimFile] = {}  # OpenAI files, id -> file
        self.submitted: collections.Counter[str] = collections.Counter()  # wire -> batches accepted
        self.custom_ids: collections.Counter[tuple[str, str]] = collections.Counter()  # (wire, custom_id) -> batches
        self.digests: collections.Counter[str] = collections.Counter()  # digest of a batch's lines -> batches
        self.usage: dict[str, _Usage] = collections.defaultdict(_Usage)  # model -> what its batch lines billed
        self._seq = 0
        self.api_bucket = limits.TokenBucket(cfg.batch_api_rpm, time.monotonic()) if cfg.batch_api_rpm else None
        self.store = BatchStore(cfg.batch_dir) if cfg.batch_dir else None
        if self.store is not None:
            self._load(self.store)

    # ------------------------------------------------------------ what batch_dir keeps

    def _load(self, store: BatchStore) -> None:
        jobs, files, book = store.load()
        for meta, data in files:
            self.files[meta["id"]] = SimFile(data=data, **meta)
        for doc in jobs:
            self.jobs[doc["id"]] = Job.from_doc(doc, self.options(doc["model"]))
        self.submitted.update(book.get("submitted", {}))
        self.custom_ids.update({tuple(k.split("\x00", 1)): v for k, v in book.get("custom_ids", {}).items()})
        self.digests.update(book.get("digests", {}))
        for m, u in book.get("usage", {}).items():
            self.usage[m] = _Usage(u["lines"], collections.Counter({int(k): v for k, v in u["status"].items()}),
                                   u["input_tokens"], u["cached_input_tokens"], u["cache_write_tokens"],
                                   u["output_tokens"])
        self._seq = max((j.seq for j in self.jobs.values()), default=0)

    def resume(self, answer: AnswerLine) -> None:
        """Run again the jobs a previous sim process left unfinished (from the start: lines are answered
        deterministically, seeds included); call once the event loop runs."""
        for job in self.jobs.values():
            if job.running and job.task is None:
                job.results.clear()
                job.phase, job.in_progress_at, job.finalizing_at = "validating", None, None
                self._start(job, answer)

    def _save(self, job: Job | None = None) -> None:
        if self.store is None:
            return
        if job is not None:
            self.store.save_job(job.to_doc())
        self.store.save_book({
            "submitted": dict(self.submitted),
            "custom_ids": {f"{w}\x00{c}": k for (w, c), k in self.custom_ids.items()},
            "digests": dict(self.digests), "usage": {m: u.as_dict() for m, u in self.usage.items()}})

    def add_file(self, f: SimFile) -> None:
        f.seq = max((g.seq for g in self.files.values()), default=0) + 1
        self.files[f.id] = f
        if self.store is not None:
            self.store.save_file(f.meta(), f.data)

    def delete_file(self, file_id: str) -> None:
        del self.files[file_id]
        if self.store is not None:
            self.store.delete_file(file_id)

    def delete_job(self, job_id: str) -> None:
        del self.jobs[job_id]
        if self.store is not None:
            self.store.delete_job(job_id)

    def options(self, model: str | None) -> BatchOptions:
        m = self.cfg.models.get(model) if model is not None else None
        return m.batch if m is not None and m.batch is not None else self.cfg.batch

    def over_enqueued_limit(self, model: str | None, tokens: int, opts: BatchOptions) -> bool:
        """Would a new job of `tokens` prompt tokens exceed `max_enqueued_tokens` with this model's unfinished
        jobs (those not failing)? Checked at create, in submission order, on both wires."""
        if opts.max_enqueued_tokens is None:
            return False
        held = sum(j.prompt_tokens for j in self.jobs.values() if j.running and not j.errors and j.model == model)
        return held + tokens > opts.max_enqueued_tokens

    def add(self, job: Job, answer: AnswerLine) -> None:
        """Record a submitted job and start running it."""
        self.jobs[job.id] = job
        self.submitted[job.wire] += 1
        for cid, _ in job.lines:
            self.custom_ids[(job.wire, cid)] += 1
        h = hashlib.blake2b(digest_size=12)
        for cid, body in sorted(job.lines, key=lambda x: x[0]):
            h.update(cid.encode() + b"\x00" + repr(sorted(body.items())).encode() + b"\x01")
        self.digests[h.hexdigest()] += 1
        self._seq += 1
        job.seq = self._seq
        self._save(job)
        self._start(job, answer)

    def _start(self, job: Job, answer: AnswerLine) -> None:
        rng = random.Random(f"{self.cfg.seed}/{job.wire}/{job.seq}")
        job.task = asyncio.get_running_loop().create_task(self._run(job, answer, rng))

    def cancel(self, job: Job) -> None:
        if job.running and job.cancel_at is None:
            job.cancel_at = time.time()
            self._save(job)

    def close(self, forget: bool = False) -> None:
        """Stop every running job where it is (the sim is stopping, or `/sim/reset`); `forget`: also
        wipe what batch_dir keeps (a reset forgets, a stop does not)."""
        for j in self.jobs.values():
            if j.task is not None and not j.task.done():
                j.task.cancel()
        self.jobs.clear()
        self.files.clear()
        if forget and self.store is not None:
            self.store.clear()

    def stats(self) -> dict[str, Any]:
        """What `GET /sim/batch_stats` returns: submissions, repeats, per-model usage of batch lines."""
        return {
            "submitted": dict(self.submitted),
            "resubmitted_custom_ids": sorted(f"{w}:{c}" for (w, c), k in self.custom_ids.items() if k > 1),
            "identical_batches": sum(k - 1 for k in self.digests.values()),
            "batches": [{"id": j.id, "wire": j.wire, "model": j.model, "lines": len(j.lines),
                         "phase": j.phase, "end": j.end, "counts": dict(j.counts())} for j in self.jobs.values()],
            "files": len(self.files),
            "by_model": {m: u.as_dict() for m, u in sorted(self.usage.items())},
        }

    # ------------------------------------------------------------ running a job

    async def _run(self, job: Job, answer: AnswerLine, rng: random.Random) -> None:
        o = job.opts
        total = o.delay_s + (rng.uniform(0.0, o.jitter_s) if o.jitter_s else 0.0)
        if await self._wait(job, total * 0.1):
            return self._finish(job, "cancelled")
        if job.errors:  # the input file did not validate
            return self._finish(job, "failed")
        if job.wire == "openai" and rng.random() < o.fail_p:
            job.errors.append({"code": "server_error", "message": "The batch could not be processed. Please try again.",
                               "param": None, "line": None})
            return self._finish(job, "failed")
        job.phase, job.in_progress_at = "in_progress", time.time()
        n = len(job.lines)
        # Lines are answered, and so listed in the results, in an order of their own: both providers only
        # promise that custom_id matches a result to its request (and an expired batch's unanswered lines
        # are any of them, not its tail).
        lines = job.lines[:]
        rng.shuffle(lines)
        expiring = rng.random() < o.expire_p
        stop_at = int(n * o.expire_done_share) if expiring else n
        step = max(1, -(-n // _STEPS))
        pause = total * 0.8 / max(1, -(-n // step))
        done = 0
        cancelled = False
        while done < stop_at:
            for k, (cid, body) in enumerate(lines[done:min(stop_at, done + step)], 1):
                job.results[cid] = await self._answer(job, cid, body, answer, rng)
                if k % 32 == 0:
                    await asyncio.sleep(0)  # a line is CPU only: let online requests and polls in between
            done = min(stop_at, done + step)
            if await self._wait(job, pause):
                cancelled = True
                break
        if expiring and not cancelled:
            await self._wait(job, pause * max(0, -(-(n - stop_at) // step)))  # the rest of its window passes
            cancelled = job.cancel_at is not None
        rest: Outcome = "canceled" if cancelled else "expired"
        for cid, _ in lines[done:]:
            job.results[cid] = LineResult(cid, rest)
        if cancelled or expiring:
            return self._finish(job, "cancelled" if cancelled else "expired")
        job.phase, job.finalizing_at = "finalizing", time.time()
        await asyncio.sleep(total * 0.1)
        self._finish(job, "completed")

    async def _answer(self, job: Job, cid: str, body: dict[str, Any], answer: AnswerLine,
                      rng: random.Random) -> LineResult:
        rid = "req_" + hashlib.blake2b(f"{job.id}/{cid}".encode(), digest_size=16).hexdigest()
        model = body.get("model") if isinstance(body.get("model"), str) else "_unknown"
        u = self.usage[model]
        u.lines += 1
        if rng.random() < job.opts.line_error_p:
            u.status[500] += 1
            return LineResult(cid, "error", 500, _server_error(job.wire, rid), rid)
        status, out, billed = await answer(job.wire, body, rid)
        u.status[status] += 1
        if billed is not None and status == 200:
            u.input_tokens += billed[0]
            u.cached_input_tokens += billed[1]
            u.cache_write_tokens += billed[2]
            u.output_tokens += billed[3]
        return LineResult(cid, "ok" if status == 200 else "error", status, out, rid)

    async def _wait(self, job: Job, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as the job is being cancelled."""
        deadline = time.monotonic() + seconds
        while job.cancel_at is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, 0.05))
        return True

    def _finish(self, job: Job, end: End) -> None:
        if end == "cancelled":
            for cid, _ in job.lines:
                job.results.setdefault(cid, LineResult(cid, "canceled"))
        job.end, job.phase, job.ended_at = end, "ended", time.time()
        finish = self.finishers.get(job.wire)
        if finish is not None:
            finish(self, job)
        self._save(job)


def _server_error(wire: Wire, rid: str) -> dict[str, Any]:
    if wire == "openai":
        return {"error": {"message": "The server had an error while processing your request. Sorry about that!",
                          "type": "server_error", "param": None, "code": None}}
    return {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}, "request_id": rid}
