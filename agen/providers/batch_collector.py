"""One model's batch mode: requests are gathered into provider batches, and each caller gets its
Completion back as if the call had been online.

    request ─▶ forming batch ──(max_size reached or max_wait_s passed)──▶ intent (fsynced)
            ─▶ upload + create (OpenAI) | create (Anthropic) ─▶ id recorded ─▶ poll with backoff
            ─▶ results downloaded ─▶ call lines durable in the ledger ─▶ results kept ─▶ futures resolved

A request's custom_id is its sub-id (`{task}`, `{task}/v{offset}`, `/r{j}`, `/j{i}`; sanitised for
Anthropic, suffixed if the same sub-id is twice in one batch); the journal (`run/batches.py`) maps
it back with `n` and seed. On resume, batches submitted by an earlier session are polled again
(one whose id was never recorded is looked up remotely first), and a request matching one of
their lines waits for that line instead of being sent again; results an earlier session kept
answer matching requests without sending anything. A vote's next wave is a new request, so it
goes into a later batch only if the tally still needs it.

Failed lines (expired, canceled, 5xx/429 inside the batch, missing) are retried online or in a
new batch (`batch.on_failed_lines`), at most `batch.line_retries` times; a line the provider
refuses for good (400, invalid request) fails its task, as online.

A full queue is not a failure: when the provider has no room for one more batch (OpenAI fails it
with `token_limit_exceeded`, Anthropic answers the create with a 429) nothing ran and nothing was
billed, so the same lines wait and go again, not counted as a try. A `RoomGate` holds the
submissions until one of our batches ends (or a backoff passes), then lets them through one at a
time, each once the provider took the one before, until four in a row were taken; a batch refused
while none of ours is open is split in two, in case it alone is over the limit.

When the lane closes (Ctrl-C, a fatal error) nothing is submitted or polled any more: waiting
requests are refused with the lane's error, and submitted batches stay in the journal for the
next session.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from agen.config import BatchConfig
from agen.errors import FatalRunError, ProviderError, RetryableError, Stopped, TaskFailedError
from agen.providers.batch_client import BatchApi, BatchQueueFull, LineOutcome, RemoteBatch, queue_full, taken
from agen.providers.batch_room import RoomGate
from agen.providers.wire import WireError
from agen.run import faults
from agen.run.batches import BatchEntry, BatchLine, BatchStore
from agen.types import ChatRequest, Completion, Usage

if TYPE_CHECKING:
    from agen.providers.client import ModelClient

log = structlog.get_logger("agen.providers.batch")

FIND_MARGIN_S = 300.0  # clock skew allowed between us and the provider when finding a batch by creation time
Match = tuple[str, int, "int | None"]


class _Gone(Exception):
    """The provider no longer knows a recorded batch (404): deleted, or a restarted server forgot it."""


class _NoRoom(Exception):
    """The provider refused a batch for want of room (its intent is void): its lines wait and go again."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class BatchSetup:
    """What Providers needs to give a model a batch mode."""

    cfg: BatchConfig
    store: BatchStore
    mode_for: Callable[[str, str], str]  # (request stage, model name) -> "online" | "batch"


@dataclass(eq=False)
class _Pending:
    req: ChatRequest
    n: int
    fut: asyncio.Future[Completion]
    tries: int = 0  # batches this request was in already


@dataclass(eq=False)
class _Recovered:
    """A line of a batch an earlier session submitted; resolves to its Completion, or None: send again."""

    line: BatchLine
    fut: asyncio.Future[Completion | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _usage_row(u: Usage) -> dict[str, int]:
    return {"input": u.input_tokens, "cached_input": u.cached_input_tokens, "cache_write": u.cache_write_tokens,
            "output": u.output_tokens, "reasoning": u.reasoning_tokens}


def _not_recorded(*_: Any, **__: Any) -> None:
    """A line an earlier session already billed in the ledger."""


def completion_of(row: dict[str, Any], model: str) -> Completion:
    u = row.get("usage") or {}
    usage = Usage(u.get("input", 0), u.get("cached_input", 0), u.get("cache_write", 0), u.get("output", 0),
                  u.get("reasoning", 0))
    return Completion(tuple(row["texts"]), usage, row["cost_usd"], model, row.get("request_id"),
                      finish_reasons=tuple(row.get("finish") or ()))


class BatchCollector:
    """Gathers one model's batch-mode requests into batches, submits, polls, resolves."""

    def __init__(self, client: ModelClient, api: BatchApi, setup: BatchSetup) -> None:
        self.client = client
        self.api = api
        self.cfg = setup.cfg
        self.store = setup.store
        self._forming: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._live: set[_Pending] = set()  # in a submitted batch of this session
        self._kept: dict[Match, list[dict[str, Any]]] = {}  # results an earlier session kept, unused
        self._recovered: dict[Match, list[_Recovered]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: asyncio.Task[None] | None = None
        self._closed: BaseException | None = None
        self._finding = asyncio.Lock()
        self._room = RoomGate(self.cfg.poll_s, self.cfg.poll_max_s)
        self._open = 0  # batches this session created that have not ended
        self.stats = {"batches": 0, "lines": 0, "lines_failed": 0, "lines_retried": 0, "recovered": 0,
                      "answered_from_kept": 0}
        client.lane.on_close(self.close)

    # ---------------------------------------------------------------- the request path
    async def request(self, req: ChatRequest, n: int) -> Completion:
        """One request (n choices) answered through a batch. Raises FatalRunError, TaskFailedError or Stopped."""
        if self._started is None:
            self._started = self._spawn(self._recover())
        await asyncio.shield(self._started)
        self._refuse_if_closed()
        match = (req.task_id, n, req.seed)
        kept = self._kept.get(match)
        if kept:
            row = kept.pop()
            if row.get("ok"):
                self.stats["answered_from_kept"] += 1
                return completion_of(row, self.client.name)
        rec = self._recovered.get(match)
        if rec:
            got = await rec.pop().fut
            if got is not None:
                return got
            self._refuse_if_closed()
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(req, n, fut))
        return await fut

    def _refuse_if_closed(self) -> None:
        closed = self._closed or self.client.lane.closed  # a signal handler may have halted the lane just now
        if closed is not None:
            raise copy.copy(closed)
        self.client._raise_if_fatal()

    def _enqueue(self, p: _Pending) -> None:
        self._forming.append(p)
        if len(self._forming) >= self.cfg.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.cfg.max_wait_s, self._flush)

    def _flush(self) -> None:
        """Submit what is forming (at most max_size; the rest starts the next batch)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        take, self._forming = self._forming[:self.cfg.max_size], self._forming[self.cfg.max_size:]
        take = [p for p in take if not p.fut.done()]  # a caller cancelled meanwhile
        if self._forming:
            self._timer = asyncio.get_running_loop().call_later(self.cfg.max_wait_s, self._flush)
        if not take:
            return
        if self._closed is not None:
            for p in take:
                p.fut.set_exception(copy.copy(self._closed))
            return
        self._live.update(take)
        self._spawn(self._submit(take))

    # ---------------------------------------------------------------- one batch
    async def _submit(self, batch: list[_Pending]) -> None:
        """Submit `batch` and resolve its lines; refused for want of room, it waits and goes again."""
        try:
            while True:
                probe = await self._room.enter()
                if self._closed is not None:
                    self._fail(batch, self._closed)
                    return
                try:
                    await self._submit_once(batch)
                    return
                except _NoRoom as exc:
                    alone = self._open == 0
                    self._room.refused(exc.retry_after_s, ours_open=not alone)
                    log.warning("batch_queue_full", model=self.client.name, lines=len(batch),
                                our_open_batches=self._open, detail=str(exc)[:200],
                                action="the lines wait for room and go again (nothing was billed)")
                    if alone and len(batch) > 1:  # it may alone be over the limit
                        rest, batch = batch[len(batch) // 2:], batch[:len(batch) // 2]
                        self._spawn(self._submit(rest))
                finally:
                    if probe:
                        self._room.probe_done()
        finally:
            self._live.difference_update(batch)

    async def _submit_once(self, batch: list[_Pending]) -> None:
        taken: set[str] = set()
        lines: list[BatchLine] = []
        for p in batch:
            cid = self.api.custom_id(p.req.task_id, taken)
            taken.add(cid)
            lines.append(BatchLine(cid, p.req.task_id, p.n, p.req.seed, p.req.stage))
        by_cid = dict(zip((ln.custom_id for ln in lines), batch))
        try:
            entry = await self.store.intent(self.client.name, self.api.provider, lines)
            faults.crashpoint("batch_after_intent")
            remote = await self._create(entry, [(ln.custom_id, self.client.batch_body(p.req, p.n))
                                                for ln, p in zip(lines, batch)])
            if remote is None:  # never created: the requests are free to go again
                for p in batch:
                    self._retry(p, LineOutcome("", None, "not_created", "the batch could not be created"))
                return
            self._open += 1
            try:
                ended = await self._poll(entry, remote, accepted=self._room.accepted)
            finally:
                self._open -= 1
            if ended is None:
                return
            if queue_full(ended):
                await self.store.record(entry, "void", why=f"queue full: batch {ended.id} failed with "
                                                            "token_limit_exceeded")
                raise _NoRoom(f"batch {ended.id} failed: token_limit_exceeded")
            self._room.room_likely()  # one of ours ended: a waiting batch may fit now
            self.stats["batches"] += 1
            self.stats["lines"] += len(lines)
            await self._collect(entry, ended, lambda cid, row, outcome: self._settle(by_cid[cid], row, outcome))
        except _Gone as exc:
            await self.store.record(entry, "void", why=f"gone at the provider: {exc}"[:300])
            for p in batch:
                self._retry(p, LineOutcome("", None, "gone", str(exc)))
        except FatalRunError as exc:
            self.client._set_fatal(exc)
            self._fail(batch, exc)
        except TaskFailedError as exc:
            self._fail(batch, exc)
        except _NoRoom:
            raise
        except BaseException as exc:  # a storage error, a cancel: nothing more can be done for these
            self._fail(batch, exc if isinstance(exc, Exception) else Stopped("the run is stopping"))
            raise

    async def _create(self, entry: BatchEntry, bodies: list[tuple[str, dict[str, Any]]]) -> RemoteBatch | None:
        """Upload (OpenAI) and create the batch, recording each id as soon as it is known; None if
        the provider refused to create it (it then has no batch from this intent, verified)."""
        try:
            if self.api.provider == "openai":
                file_id = await self.api.upload(bodies)
                await self.store.record(entry, "file", file_id=file_id)
                remote = await self.api.create(entry.key, file_id=file_id, window=self.cfg.completion_window)
            else:
                remote = await self.api.create(entry.key, lines=bodies)
        except RetryableError as exc:
            # The create may have reached the provider before the connection failed: look before resubmitting.
            found = await self._find(entry)
            if found is None:
                await self.store.record(entry, "void", why=f"create failed: {exc.message}"[:300])
            return found
        except TaskFailedError as exc:
            await self.store.record(entry, "void", why=f"create refused: {exc.message}"[:300])
            raise
        except BatchQueueFull as exc:  # refused at create (Anthropic): no batch was made
            await self.store.record(entry, "void", why=f"queue full: {exc.message}"[:300])
            raise _NoRoom(exc.message, exc.retry_after_s) from None
        faults.crashpoint("batch_after_create")  # created, its id not yet recorded
        await self.store.record(entry, "submitted", batch_id=remote.id)
        return remote

    async def _find(self, entry: BatchEntry) -> RemoteBatch | None:
        """The batch an intent made, if the provider has it. One look-up at a time, each adopting its
        batch before the next looks: two intents of the same size never claim the same batch."""
        async with self._finding:
            found = await self._look_up(entry)
            if found is not None:
                await self.store.record(entry, "submitted", batch_id=found.id, adopted=True)
            return found

    async def _look_up(self, entry: BatchEntry) -> RemoteBatch | None:
        found = await self.api.find(entry.key, entry.ts - FIND_MARGIN_S, len(entry.lines), self.store.known_batch_ids())
        if not found:
            return None
        if self.api.provider == "openai" or len(found) == 1:
            return found[0]
        # Anthropic, several candidates of the right size: the one whose custom_ids are ours (needs it ended).
        want = {ln.custom_id for ln in entry.lines}
        while True:
            for b in found:
                b2 = await self.api.retrieve(b.id)
                if b2.ended and {o.custom_id for o in await self.api.results(b2)} == want:
                    return b2
            if all(b.ended for b in found):
                return None
            await asyncio.sleep(self.cfg.poll_s)
            found = [await self.api.retrieve(b.id) for b in found]

    async def _await_results(self, entry: BatchEntry, remote: RemoteBatch,
                             settle: Callable[[str, dict[str, Any], LineOutcome], None]) -> None:
        """Poll until the batch ended, keep every line's outcome (durably), then settle each line."""
        ended = await self._poll(entry, remote)
        if ended is not None:
            await self._collect(entry, ended, settle)

    async def _poll(self, entry: BatchEntry, remote: RemoteBatch,
                    accepted: Callable[[], None] | None = None) -> RemoteBatch | None:
        """The batch once it has ended (states journaled as they change); None if the lane closed first.
        `accepted` is called once the provider has taken it: past validation and not refused for room."""
        delay = self.cfg.poll_s
        while True:
            if accepted is not None and taken(remote):
                accepted()
                accepted = None
            if remote.ended:
                break
            if self._closed is not None:
                return None  # no request leaves any more; the next session polls this batch
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg.poll_max_s)
            if self._closed is not None:
                return None
            remote = await self._retrieve(remote.id)
            faults.crashpoint("batch_polled")
            if remote.status != entry.status:
                await self.store.record(entry, "state", status=remote.status)
        return None if self._closed is not None else remote

    async def _collect(self, entry: BatchEntry, remote: RemoteBatch,
                       settle: Callable[[str, dict[str, Any], LineOutcome], None]) -> None:
        """Download an ended batch's results, keep every line's outcome (durably), then settle each line."""
        outcomes = {o.custom_id: o for o in await self.api.results(remote)}
        faults.crashpoint("batch_downloaded")
        rows: dict[str, dict[str, Any]] = {}
        got: dict[str, LineOutcome] = {}
        bill = entry.key not in self.store.billed  # else an earlier session's ledger has these lines' cost
        for ln in entry.lines:
            o = outcomes.get(ln.custom_id) or LineOutcome(ln.custom_id, None, "missing",
                                                          f"not in the results of batch {remote.id} ({remote.status})")
            rows[ln.custom_id], got[ln.custom_id] = self._line_row(ln, o, remote.id, bill)
        await self.store.results(entry, rows)
        for ln in entry.lines:
            settle(ln.custom_id, rows[ln.custom_id], got[ln.custom_id])

    async def _retrieve(self, batch_id: str) -> RemoteBatch:
        try:
            return await self.api.retrieve(batch_id)
        except FatalRunError as exc:
            if exc.status == 404:
                raise _Gone(exc.message) from None
            raise

    def _line_row(self, ln: BatchLine, o: LineOutcome, batch_id: str, bill: bool) -> tuple[dict[str, Any], LineOutcome]:
        """What a line gave, as the journal keeps it; its call line goes to the ledger (mode batch) if `bill`."""
        c = self.client
        record = c._record if bill else _not_recorded
        if o.doc is not None:
            try:
                parsed = c._parse(o.doc)
            except WireError as exc:
                usage = exc.usage or Usage()
                cost = c.batch_cost(usage)
                record(ln.stage, ln.sub_id, "bad_response", 200, usage, cost, 0.0, batch_id, mode="batch")
                o = LineOutcome(o.custom_id, None, "bad_response", str(exc), retryable=True)
                return {"ok": False, "error": o.error, "message": o.message[:300], "retryable": True,
                        "cost_usd": cost}, o
            cost = c.batch_cost(parsed.usage)
            rid = parsed.request_id or batch_id
            record(ln.stage, ln.sub_id, "ok", 200, parsed.usage, cost, 0.0, rid, mode="batch")
            return {"ok": True, "texts": list(parsed.texts), "finish": list(parsed.finish_reasons),
                    "usage": _usage_row(parsed.usage), "cost_usd": cost, "request_id": rid}, o
        record(ln.stage, ln.sub_id, "capacity" if o.retryable else "fatal_task", None, Usage(), 0.0, 0.0,
               batch_id, mode="batch")
        return {"ok": False, "error": o.error, "message": o.message[:300], "retryable": o.retryable}, o

    def _settle(self, p: _Pending, row: dict[str, Any], o: LineOutcome) -> None:
        if p.fut.done():
            return
        if row.get("ok"):
            p.fut.set_result(completion_of(row, self.client.name))
        else:
            self._retry(p, o)

    def _retry(self, p: _Pending, o: LineOutcome) -> None:
        """A line that failed: again (online or in a new batch) while it may, else its task fails."""
        self.stats["lines_failed"] += o.error != "not_created"
        if p.fut.done():
            return
        if not o.retryable or p.tries >= self.cfg.line_retries:
            p.fut.set_exception(TaskFailedError(
                f"batch line {p.req.task_id} failed ({o.error}: {o.message[:200]})"
                + ("" if not o.retryable else f"; retried {p.tries} time(s)"),
                provider=self.api.provider, model=self.client.name, code=o.error))
            return
        p.tries += 1
        self.stats["lines_retried"] += 1
        if self._closed is not None:
            p.fut.set_exception(copy.copy(self._closed))
        elif self.cfg.on_failed_lines == "online":
            self._spawn(self._online(p))
        else:
            self._enqueue(p)

    async def _online(self, p: _Pending) -> None:
        try:
            res = await self.client._call_online(p.req, p.n)
        except (ProviderError, Stopped) as exc:
            if not p.fut.done():
                p.fut.set_exception(exc)
        else:
            if not p.fut.done():
                p.fut.set_result(res)

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        for p in batch:
            if not p.fut.done():
                p.fut.set_exception(copy.copy(exc))

    # ---------------------------------------------------------------- resume
    async def _recover(self) -> None:
        """Kept results and open batches of earlier sessions: matched by (sub-id, n, seed)."""
        for e in self.store.kept_results(self.client.name):
            for ln in e.lines:
                row = (e.results or {}).get(ln.custom_id)
                if row is not None and row.get("ok"):
                    self._kept.setdefault(ln.match, []).append(row)
        for e in self.store.open_entries(self.client.name):
            recs = [_Recovered(ln) for ln in e.lines]
            for r in recs:
                self._recovered.setdefault(r.line.match, []).append(r)
            self.stats["recovered"] += 1
            self._spawn(self._follow(e, {r.line.custom_id: r for r in recs}))

    async def _follow(self, e: BatchEntry, recs: dict[str, _Recovered]) -> None:
        """Poll a batch an earlier session submitted (found again first if its id was never recorded)."""
        def free_all() -> None:
            for r in recs.values():
                if not r.fut.done():
                    r.fut.set_result(None)

        def settle(cid: str, row: dict[str, Any], o: LineOutcome) -> None:
            r = recs[cid]
            if not r.fut.done():
                r.fut.set_result(completion_of(row, self.client.name) if row.get("ok") else None)

        try:
            if e.batch_id is None:
                found = await self._find(e)
                if found is None:
                    await self.store.record(e, "void", why="not found at the provider after a crash before submit")
                    log.info("batch_never_created", model=self.client.name, key=e.key)
                    free_all()
                    return
                log.info("batch_found_again", model=self.client.name, key=e.key, batch_id=found.id)
            remote = await self._retrieve(e.batch_id)  # type: ignore[arg-type]
            self._open += 1  # it holds room in the provider's queue like one of this session's
            try:
                await self._await_results(e, remote, settle)
            finally:
                self._open -= 1
            self._room.room_likely()  # it ended: a batch waiting for room may fit now
            if self._closed is not None:
                self._refuse_recovered(recs.values())
        except _Gone as exc:
            await self.store.record(e, "void", why=f"gone at the provider: {exc}"[:300])
            log.warning("batch_gone", model=self.client.name, key=e.key, batch_id=e.batch_id, detail=str(exc))
            free_all()
        except FatalRunError as exc:
            self.client._set_fatal(exc)
            self._refuse_recovered(recs.values(), exc)
        except TaskFailedError as exc:
            log.warning("batch_unreadable", model=self.client.name, key=e.key, error=exc.message)
            free_all()

    def _refuse_recovered(self, recs: Any, exc: BaseException | None = None) -> None:
        for r in recs:
            if not r.fut.done():
                r.fut.set_exception(copy.copy(exc or self._closed or Stopped("the run is stopping")))

    # ---------------------------------------------------------------- lifecycle
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def close(self, exc: BaseException) -> None:
        """The lane closed: refuse what waits (forming, submitted, recovered); submit and poll no more."""
        if self._closed is not None:
            return
        self._closed = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        forming, self._forming = self._forming, []
        self._fail(forming, exc)
        self._fail(list(self._live), exc)
        self._room.release_all()  # submissions waiting for room wake, see the close and stop
        for recs in self._recovered.values():
            self._refuse_recovered(recs, exc)

    async def aclose(self) -> None:
        """End of the session: stop background polling (submitted batches are in the journal)."""
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except BaseException:  # noqa: BLE001 - cancelled or already reported to its callers
                pass

    def statistics(self) -> dict[str, int]:
        return {f"batch/{k}": v for k, v in self.stats.items()} | {"batch/http_calls": self.api.calls,
                                                                   "batch/queue_full": self._room.refusals}
