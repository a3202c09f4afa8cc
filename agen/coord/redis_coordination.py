"""`engine/coordination.Coordination` on Redis: many workers, one run (scripts in `coord/scripts`).

Lifecycle of a task index: claimed (lease, renewed every `lease_s / 3` while the worker lives) →
being committed (`PRECOMMIT`, just before its group commit is written: no longer expires) → done
(`DONE`, after the fsync). A worker killed with claims outstanding loses them after `lease_s`, or
at once when the same worker id starts again (`RELEASE`, after it has marked its whole shard done:
whatever is still "being committed" then never reached its shard). So an index is run twice only
if a live worker stalls for longer than its lease; even then the stalled worker's record is
refused by `PRECOMMIT` (the claim is the other worker's now) and not written, and its late
accepted verdict takes no target slot: no id is ever committed twice, no slot leaks.

Redis restarted empty (no persistence) under running workers: every script that hands out or
commits work sees the run's `epoch` key gone and the worker stops (exit 6). The first worker to
start again rebuilds the state from every worker directory under the run root it can read
(committed indices done, each stage's `next` past the highest committed index, the proposals and
the exact-duplicate keys), conservatively: an index some worker held but had not committed is
never handed out again (the run draws fresh indices instead). This needs the run root to be one
folder all workers see (one machine or a shared filesystem); otherwise run Redis with persistence
(`appendonly yes`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import structlog

from agen.config import CoordinatorConfig
from agen.coord import scripts
from agen.coord.layout import task_index, worker_dirs
from agen.coord.shard_facts import Committed, committed_records
from agen.errors import ConfigError, FatalRunError
from agen.providers.shared_quota import redacted_url
from agen.types import Example

log = structlog.get_logger("agen.coord")

STAGES = ("propose", "amplify")
_CHUNK = 2000  # indices per script call when a shard is (re)marked
READY_WAIT_S = 120.0


class CoordinatorUnreachableError(FatalRunError):
    """Redis (the coordinator) did not answer, or lost the run's state: stop, resumable (exit 6)."""

    exit_code = 6


class RedisCoordination:
    """One worker's view of a coordinated run."""

    def __init__(self, cfg: CoordinatorConfig, fingerprint: str, run_root: Path) -> None:
        import redis.asyncio as aioredis  # optional extra: agen[redis]

        self.cfg, self.worker, self.fingerprint, self.run_root = cfg, cfg.worker_id, fingerprint, run_root
        self.tick_s: float | None = min(0.25, cfg.lease_s / 3)
        self._where = redacted_url(cfg.url)
        password = os.environ.get(cfg.password_env) if cfg.password_env else None
        self._pool = aioredis.BlockingConnectionPool.from_url(
            cfg.url, password=password, max_connections=8, timeout=cfg.timeout_s,
            socket_timeout=cfg.timeout_s, socket_connect_timeout=cfg.timeout_s)
        self._redis = aioredis.Redis(connection_pool=self._pool)
        self._s = {name: self._redis.register_script(getattr(scripts, name))
                   for name in ("CLAIM", "RENEW", "PRECOMMIT", "DONE", "RELEASE", "SEEN", "SLOT")}
        self.prefix = f"agen:run:{cfg.name or fingerprint}:"
        self._held: dict[str, set[int]] = defaultdict(set)  # claimed, not committed yet
        self._others: dict[str, int] = {}
        self._others_in_flight: dict[str, float] = {}
        self._others_spent: tuple[float, int] = (0.0, 0)
        self._pool_offset = 0
        self._background: set[asyncio.Task[None]] = set()
        self._failed: FatalRunError | None = None

    # ---- keys and calls ----------------------------------------------------------------------

    def key(self, name: str, stage: str | None = None) -> str:
        return f"{self.prefix}{stage}:{name}" if stage else self.prefix + name

    def _keys(self, stage: str, *names: str) -> list[str]:
        return [self.key("epoch") if n == "epoch" else self.key(n, stage) for n in names]

    def _unreachable(self, what: str) -> CoordinatorUnreachableError:
        return CoordinatorUnreachableError(
            f"coordinator: Redis at {self._where} {what}; stopped (resumable): start Redis, then resume "
            f"this worker", provider="redis", code="coordinator_unreachable")

    async def _do(self, coro: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await asyncio.wait_for(coro, self.cfg.timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise self._unreachable(f"did not answer ({type(exc).__name__}: {exc})") from exc

    def _lost(self) -> CoordinatorUnreachableError:
        return self._unreachable("has lost this run's state (restarted without persistence?): restart the "
                                 "workers; the first one rebuilds it from the shards under the run root")

    # ---- start ---------------------------------------------------------------------------------

    async def open(self, own_dir: Path) -> None:
        """Join the run: make sure Redis holds its state (rebuilding it after a loss), mark this
        worker's committed shard done, and give back whatever an earlier session of it held."""
        await self._do(self._redis.ping())
        if await self._do(self._redis.set(self.key("epoch"), self.fingerprint, nx=True)):
            await self._rebuild()
        else:
            epoch = await self._do(self._redis.get(self.key("epoch")))
            if epoch is not None and epoch.decode() != self.fingerprint:
                raise ConfigError(f"coordinator: the run name {self.cfg.name or self.fingerprint!r} on "
                                  f"{self._where} belongs to a run with another config (fingerprint "
                                  f"{epoch.decode()}); set coordinator.name to a new name")
            await self._wait_ready()
        await self._mark(self.worker, committed_records(own_dir))
        await self._do(self._redis.hdel(self.key("infl", "propose"), self.worker))
        await self._do(self._redis.hdel(self.key("infl", "amplify"), self.worker))
        for stage in STAGES:
            released = await self._do(self._s["RELEASE"](keys=self._keys(stage, "lease", "owner", "pending", "slot"),
                                                         args=[self.worker]))
            if released:
                log.info("claims_released", stage=stage, indices=released, worker=self.worker)
        await self._read_counts()  # the others' counts and spend before this worker admits anything

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WAIT_S
        while not await self._do(self._redis.exists(self.key("ready"))):
            if time.monotonic() > deadline:
                raise self._unreachable(f"has no complete state for this run after {READY_WAIT_S:.0f} s (a "
                                        f"worker died rebuilding it?); delete {self.key('epoch')} and restart")
            await asyncio.sleep(0.2)

    async def _rebuild(self) -> None:
        """The state is new (or was lost): rebuild it from every worker directory's shards."""
        from agen.run.ledger import costs_from_ledger

        dirs = worker_dirs(self.run_root)
        top: dict[str, int] = {}
        for d in dirs:
            costs, _ = costs_from_ledger(d, set())  # every worker's spend, from its ledger
            await self._do(self._redis.hset(self.key("spent"), d.name, f"{costs.total_usd!r}:{costs.total_tokens}"))
            facts = list(committed_records(d))
            for c in facts:
                top[c.stage] = max(top.get(c.stage, -1), c.index)
            await self._mark(d.name, facts, publish=True)
        for stage, hi in top.items():
            await self._do(self._redis.set(self.key("next", stage), hi + 1))
        await self._do(self._redis.set(self.key("ready"), "1"))
        if top:
            log.warning("coordinator_rebuilt", workers=len(dirs), next={s: n + 1 for s, n in top.items()})

    async def _mark(self, worker: str, facts: Any, publish: bool = False) -> None:
        """DONE for committed records (idempotent); with `publish`, also their proposals and keys."""
        from agen.gen.dedup import exact_key

        by_stage: dict[str, list[Committed]] = defaultdict(list)

        async def flush(stage: str) -> None:
            rows = by_stage.pop(stage, [])
            if not rows:
                return
            args: list[Any] = [worker]
            for c in rows:
                args += [c.index, int(c.accepted)]
            await self._do(self._s["DONE"](keys=self._keys(stage, "lease", "owner", "pending", "done", "acc", "total", "slot"),
                                           args=args))
            if publish:
                props = [self._proposal(worker, c.id, c.question, c.answer, c.category)
                         for c in rows if c.accepted and c.stage == "propose" and c.question]
                if props:
                    await self._do(self._redis.rpush(self.key("pool"), *props))
                seen = {str(exact_key(c.question)): c.id for c in rows if c.question}
                if seen:
                    await self._do(self._redis.hset(self.key("seen"), mapping=seen))

        for c in facts:
            by_stage[c.stage].append(c)
            if len(by_stage[c.stage]) >= _CHUNK:
                await flush(c.stage)
        for stage in list(by_stage):
            await flush(stage)

    @staticmethod
    def _proposal(worker: str, rid: str, question: str | None, answer: str | None, category: str | None) -> bytes:
        return orjson.dumps({"w": worker, "id": rid, "q": question, "a": answer, "c": category})

    # ---- Coordination ---------------------------------------------------------------------------

    async def claim(self, stage: str, limit: int) -> int | None:
        i = int(await self._do(self._s["CLAIM"](keys=self._keys(stage, "epoch", "next", "lease", "owner", "done"),
                                                args=[self.worker, repr(self.cfg.lease_s), limit])))
        if i == -2:
            raise self._lost()
        if i < 0:
            return None
        self._held[stage].add(i)
        return i

    def others_accepted(self, stage: str) -> int:
        return self._others.get(stage, 0)

    def others_in_flight(self, stage: str) -> float:
        return self._others_in_flight.get(stage, 0.0)

    async def before_write(self, records: list[dict[str, Any]]) -> set[str]:
        refused: set[str] = set()
        for stage, ids in _by_stage(records).items():
            got = await self._do(self._s["PRECOMMIT"](keys=self._keys(stage, "epoch", "lease", "owner", "pending", "done"),
                                                      args=[self.worker, *ids.keys()]))
            if got and int(got[0]) == -2:
                raise self._lost()
            for i in got:
                refused.add(ids[int(i)])
                self._held[stage].discard(int(i))
            if got:
                log.warning("claims_lost", stage=stage, indices=[int(i) for i in got], worker=self.worker,
                            detail="another worker took them over (a stall longer than lease_s); not written")
        return refused

    def committed(self, records: list[dict[str, Any]]) -> None:
        facts = []
        props = []
        for r in records:
            stage, index = task_index(r["id"])
            self._held[stage].discard(index)
            accepted = r["status"] == "accepted"
            facts.append(Committed(r["id"], stage, index, accepted, None, None, None))
            if accepted and stage == "propose" and r.get("question"):
                props.append(self._proposal(self.worker, r["id"], r["question"], r.get("answer"), r.get("category")))

        async def mark() -> None:
            await self._mark(self.worker, facts)
            if props:
                await self._do(self._redis.rpush(self.key("pool"), *props))

        self._soon(mark())

    async def take_slot(self, stage: str, index: int, target: int) -> bool:
        ok = await self._do(self._s["SLOT"](keys=self._keys(stage, "total", "slot", "owner", "done"),
                                            args=[index, target, self.worker]))
        return bool(int(ok))

    async def seen(self, key: int, task_id: str) -> str | None:
        first = await self._do(self._s["SEEN"](keys=[self.key("seen")], args=[str(key), task_id]))
        first = first.decode() if isinstance(first, bytes) else str(first)
        return None if first == task_id else first

    def others_spent(self) -> tuple[float, int]:
        return self._others_spent

    async def tick(self, in_flight: dict[str, float], spent: tuple[float, int]) -> list[Example]:
        if self._failed is not None:
            raise self._failed
        for stage, held in self._held.items():
            if held:
                await self._do(self._s["RENEW"](keys=self._keys(stage, "lease", "owner"),
                                                args=[self.worker, repr(self.cfg.lease_s), *sorted(held)]))
        now = time.time()
        for stage in STAGES:
            # what each worker expects its work in flight to add, with its time: a killed worker's
            # entry stops counting after one lease
            await self._do(self._redis.hset(self.key("infl", stage), self.worker,
                                            f"{in_flight.get(stage, 0.0):.3f}:{now:.3f}"))
        await self._do(self._redis.hset(self.key("spent"), self.worker, f"{spent[0]!r}:{spent[1]}"))
        await self._read_counts(now)
        rows = await self._do(self._redis.lrange(self.key("pool"), self._pool_offset, -1))
        self._pool_offset += len(rows)
        out = []
        for raw in rows:
            p = orjson.loads(raw)
            if p["w"] != self.worker:
                out.append(Example(p["id"], p["q"], p["a"], p.get("c")))
        return out

    async def _read_counts(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        spent = await self._do(self._redis.hgetall(self.key("spent")))
        rows = [v.split(b":") for w, v in spent.items() if w.decode() != self.worker]
        self._others_spent = (sum(float(u) for u, _ in rows), sum(int(t) for _, t in rows))
        for stage in STAGES:
            acc = await self._do(self._redis.hgetall(self.key("acc", stage)))
            self._others[stage] = sum(int(v) for w, v in acc.items() if w.decode() != self.worker)
            infl = await self._do(self._redis.hgetall(self.key("infl", stage)))
            self._others_in_flight[stage] = sum(
                float(v.split(b":")[0]) for w, v in infl.items()
                if w.decode() != self.worker and now - float(v.split(b":")[1]) < self.cfg.lease_s)

    def _soon(self, coro: Any) -> None:
        async def run() -> None:
            try:
                await coro
            except FatalRunError as exc:
                self._failed = self._failed or exc

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Finish the background marks, give back what this worker claimed and did not commit."""
        try:
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
            if self._failed is None:
                for stage in STAGES:
                    await self._do(self._redis.hdel(self.key("infl", stage), self.worker))
                    await self._do(self._s["RELEASE"](keys=self._keys(stage, "lease", "owner", "pending", "slot"),
                                                      args=[self.worker]))
        except FatalRunError as exc:
            log.warning("claims_not_released", error=str(exc), detail=f"they return after lease_s={self.cfg.lease_s}")
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the connections (nothing given back: for a worker that never joined the run)."""
        await self._redis.aclose()
        await self._pool.disconnect()


def _by_stage(records: list[dict[str, Any]]) -> dict[str, dict[int, str]]:
    """index -> record id, per stage."""
    out: dict[str, dict[int, str]] = defaultdict(dict)
    for r in records:
        stage, index = task_index(r["id"])
        out[stage][index] = r["id"]
    return out
