"""One session of a run: check everything, open the run directory, run the pipeline, report.

Everything that can be wrong with the input (config, keys, seeds, templates, a changed config on
resume) is found before the first request. Exit codes (the README's table): 0 every target met or
the budget reached, 2 bad input or environment, 3 fatal provider error, 4 storage error, 5 no
progress (watchdog, max_attempts), 6 endpoint unreachable, 130 interrupted; every non-zero exit
leaves the run directory resumable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import structlog

from agen.app.gc_policy import session_gc
from agen.app.malloc_policy import fix_malloc_thresholds
from agen.app.preflight import check_endpoints
from agen.app.progress import Progress
from agen.app.summary import render_summary
from agen.config import Price, RunConfig, load_prices, price_for, resolve_beside_config
from agen.cost import CostBook
from agen.engine.pipeline import Pipeline
from agen.errors import ConfigError, EndpointUnreachableError, SimStartError, StorageError
from agen.filters import Call, CandidateFilter
from agen.filters.answer_consistency import AnswerConsistency
from agen.filters.rip import RipFilter
from agen.gen.prompts import check_template, generation_prompt, set_template_dirs
from agen.gen.seeds import load_seeds
from agen.providers import BatchSetup, Providers, check_api_keys
from agen.run.batches import BatchStore
from agen.run.journal import base_task
from agen.run.ledger import PreviousSessions, costs_from_ledger
from agen.run.restore import Restored, restore
from agen.run.rundir import RunDir, open_run_dir
from agen.types import Example
from agen.verify import make_verifier

log = structlog.get_logger("agen.app.runner")

EXIT_OK, EXIT_INPUT, EXIT_PROVIDER, EXIT_STORAGE, EXIT_NO_PROGRESS, EXIT_UNREACHABLE = 0, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Prepared:
    """Everything checked and rebuilt before the first request of a session."""

    cfg: RunConfig
    seeds: list[Example]
    prices: dict[str, Price]
    run_dir: RunDir
    restored: Restored
    costs: CostBook
    previous: PreviousSessions
    batches: BatchStore | None = None  # the batch journal, when any model or stage is in batch mode


@dataclass
class Outcome:
    exit_code: int
    message: str
    snapshot: dict[str, Any]


@contextlib.contextmanager
def _simulator(cfg: RunConfig, config_dir: Path | None) -> Iterator[str | None]:
    """Start the built-in simulated provider in its own process when the config asks for it;
    its `config` is found like the seeds (next to the run's config first)."""
    if cfg.simulator is None:
        yield None
        return
    from agen.sim.process import SimProcess

    path = cfg.simulator.config
    sim_config = str(resolve_beside_config(Path(path), config_dir)) if path else None
    with SimProcess(sim_config, host=cfg.simulator.host, port=cfg.simulator.port) as sim:
        yield sim.base_url


def _base_urls(cfg: RunConfig, sim_url: str | None) -> dict[str, str]:
    urls = {}
    for name, m in cfg.models.items():
        if m.base_url == "sim":
            assert sim_url is not None
            urls[name] = sim_url + ("/v1" if m.provider == "openai" else "")
        else:
            urls[name] = m.base_url
    return urls


def seeds_digest(seeds: list[Example]) -> str:
    """What the run's output depends on in the seed file: every seed's id, text, answer, category."""
    h = hashlib.sha256()
    for s in seeds:
        h.update(orjson.dumps([s.id, s.question, s.answer, s.category]))
    return h.hexdigest()[:16]


def make_filter(cfg: RunConfig, providers: Providers, call: Call, run_dir: RunDir) -> CandidateFilter:
    """Answer-Consistency for verifiable tasks, RIP for open-ended ones."""
    if cfg.task == "verifiable" and cfg.vote is not None:
        return AnswerConsistency(cfg.vote, providers[cfg.vote.model], call, make_verifier(cfg),
                                 cache_layout=cfg.prompts.cache_layout)
    if cfg.task == "open_ended" and cfg.rip is not None:
        return RipFilter(cfg.rip, providers[cfg.rip.model], providers[cfg.rip.judge_model], call,
                         run_dir.root / "rip_thresholds.json", cache_layout=cfg.prompts.cache_layout)
    raise ConfigError(f"task {cfg.task!r} has no filter configured")


def preflight(cfg: RunConfig, config_dir: Path | None = None) -> tuple[list[Example], dict[str, Price]]:
    """Seeds, prices, keys and templates, checked before anything is sent or written."""
    seeds = load_seeds(cfg.seeds, config_dir)
    table = load_prices()
    for name, m in cfg.models.items():
        price_for(name, m, table)  # every model must have a price before anything is spent
    check_api_keys({n: m for n, m in cfg.models.items() if m.base_url != "sim"})
    co = cfg.coordinator
    if co is not None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigError("coordinator: needs the redis package: pip install 'agen[redis]'") from None
        if co.password_env and not os.environ.get(co.password_env):
            raise ConfigError(f"coordinator: environment variable {co.password_env} is not set (it should hold the "
                              f"Redis password)")
    set_template_dirs(config_dir)  # templates named in a config are found next to it first
    q = seeds[0].question if seeds else "sample question"
    for stage in (cfg.propose, cfg.amplify):
        check_template(cfg.template(stage), {"examples"})
        check_template(cfg.template(stage, "example"), {"index", "question"}, {"question": q})
        generation_prompt(cfg.template(stage), cfg.template(stage, "example"), seeds[: stage.shots])
    if cfg.vote is not None:
        check_template(make_verifier(cfg).solve_template, {"question"}, {"question": q})
    if cfg.rip is not None:
        check_template(cfg.rip.respond_template, {"prompt"}, {"prompt": q})
        if cfg.rip.judge_kind == "llm":
            check_template(cfg.rip.judge_template, {"prompt", "response"}, {"prompt": q})
    if cfg.categories is not None:
        check_template(cfg.categories.template, {"prompt"}, {"prompt": q})
    return seeds, table


def run_session(cfg: RunConfig, *, config_dir: Path | None = None, grace_s: float = 30.0,
                live: bool | None = None, probe: bool = True) -> Outcome:
    """Run (or resume) the run in `cfg.output.dir` to its targets.

    `probe`: talk to every endpoint once (app/preflight) before the run directory is opened."""
    fix_malloc_thresholds()  # before the session's big buffers: each one freed goes back to the OS
    try:
        seeds, prices = preflight(cfg, config_dir)
    except ConfigError as exc:
        return Outcome(EXIT_INPUT, str(exc), {})
    try:
        with _simulator(cfg, config_dir) as sim_url:
            base_urls = _base_urls(cfg, sim_url)
            if probe:
                refused = _probe_endpoints(cfg, base_urls)
                if refused is not None:
                    return refused
            return _open_and_run(cfg, config_dir, seeds, prices, base_urls, grace_s, live)
    except SimStartError as exc:
        return Outcome(EXIT_INPUT, str(exc), {})


def _probe_endpoints(cfg: RunConfig, base_urls: dict[str, str]) -> Outcome | None:
    keys = {n: os.environ.get(m.api_key_env) if m.api_key_env else None for n, m in cfg.models.items()}
    problems = asyncio.run(check_endpoints(dict(cfg.models), base_urls, keys))
    if not problems:
        return None
    kinds = {p.kind for p in problems}
    code = EXIT_PROVIDER if "auth" in kinds else EXIT_UNREACHABLE if "unreachable" in kinds else EXIT_INPUT
    lines = "\n  ".join(str(p) for p in problems)
    return Outcome(code, f"preflight: {len(problems)} endpoint(s) cannot serve this run; nothing was sent "
                         f"or written (skip this check with --no-preflight):\n  {lines}", {})


def _open_and_run(cfg: RunConfig, config_dir: Path | None, seeds: list[Example], prices: dict[str, Price],
                  base_urls: dict[str, str], grace_s: float, live: bool | None) -> Outcome:
    run_dir: RunDir | None = None
    try:
        run_dir = open_run_dir(cfg, _run_dir_path(cfg), config_dir=config_dir, seeds_digest=seeds_digest(seeds))
        restored = restore(run_dir)
        costs, previous = costs_from_ledger(run_dir.root, restored.done_ids)
        done = restored.done_ids
        batches = (BatchStore(run_dir.root, run_dir.session, previous.batch_billed,
                              wanted=lambda sub_id: base_task(sub_id) not in done) if cfg.uses_batch() else None)
    except (ConfigError, StorageError) as exc:
        if run_dir is not None:
            run_dir.close()
        if isinstance(exc, StorageError):
            return Outcome(EXIT_STORAGE, f"storage error: {exc}", {})
        return Outcome(EXIT_INPUT, str(exc), {})
    if run_dir.resumed:
        log.info("resuming", run_dir=str(run_dir.root), done=len(restored.done_ids),
                 spent_usd=round(costs.total_usd, 6), billing_unknown=previous.billing_unknown)
    prep = Prepared(cfg, seeds, prices, run_dir, restored, costs, previous, batches)
    try:
        return _run_async(prep, base_urls, grace_s, live)
    finally:
        if batches is not None:
            batches.close()
        run_dir.close()  # releases RUN_DIR/.lock for the next session


def _run_dir_path(cfg: RunConfig) -> Path:
    """`output.dir`, or with `coordinator:` this worker's directory under it (the run root)."""
    out = Path(cfg.output.dir)
    if cfg.coordinator is None:
        return out
    from agen.coord import worker_dir

    return worker_dir(out, cfg.coordinator.worker_id)


async def _join(cfg: RunConfig, run_dir: RunDir) -> tuple[Any, Outcome | None]:
    """The coordination of a `coordinator:` run, joined (None for a run on one machine); or the
    Outcome that stops this session before anything is sent (Redis unreachable: 6, another run's
    name: 2)."""
    if cfg.coordinator is None:
        return None, None
    from agen.coord import CoordinatorUnreachableError, RedisCoordination

    coord = RedisCoordination(cfg.coordinator, run_dir.fingerprint, run_dir.root.parent.parent)
    try:
        await coord.open(run_dir.root)
    except (CoordinatorUnreachableError, ConfigError) as exc:
        await coord.close()
        code = EXIT_UNREACHABLE if isinstance(exc, CoordinatorUnreachableError) else EXIT_INPUT
        return None, Outcome(code, f"{exc}" + (f"; resume with `agen resume {run_dir.root}`" if code == 6 else ""), {})
    log.info("joined", worker=cfg.coordinator.worker_id, run=coord.prefix,
             others_accepted={s: coord.others_accepted(s) for s in ("propose", "amplify")})
    return coord, None


def _run_async(prep: Prepared, base_urls: dict[str, str], grace_s: float, live: bool | None) -> Outcome:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        runner = asyncio.Runner()
    with runner, session_gc():
        return runner.run(_session(prep, base_urls, grace_s, live))


async def _session(prep: Prepared, base_urls: dict[str, str], grace_s: float, live: bool | None) -> Outcome:
    cfg, run_dir, previous = prep.cfg, prep.run_dir, prep.previous
    loop = asyncio.get_running_loop()
    interrupts = 0
    pipeline: Pipeline | None = None

    def on_signal(signame: str) -> None:
        nonlocal interrupts
        interrupts += 1
        if pipeline is None:  # still connecting: the pipeline stops as soon as it exists
            return
        if interrupts == 1:
            pipeline.stop_sending(f"interrupted ({signame}): finishing requests on the wire")
            loop.call_later(grace_s, pipeline.cancel_now)
        else:
            pipeline.request_stop(f"interrupted twice ({signame})")
            pipeline.cancel_now()

    def halt_now(signum: int) -> None:  # in the signal handler itself: flags only
        if pipeline is not None and interrupts == 0:
            pipeline.halt_sending(f"interrupted ({signal.Signals(signum).name})")

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig.name)
            _halt_at_once(sig, halt_now)
    coord, refused = await _join(cfg, run_dir)
    if refused is not None:
        return refused
    batch = BatchSetup(cfg.batch, prep.batches, cfg.mode_for) if prep.batches is not None else None
    async with Providers(cfg.models, prices=prep.prices, base_urls=base_urls, batch=batch,
                         on_call=lambda r: pipeline.on_call(r)) as providers:  # type: ignore[union-attr]
        pipeline = Pipeline(cfg, run_dir, providers, prep.seeds, prep.restored, prep.costs,
                            make_filter=lambda call: make_filter(cfg, providers, call, run_dir),
                            previous=previous, coord=coord)
        if interrupts:
            pipeline.stop_sending("interrupted while starting")
        progress = Progress(pipeline, providers, live=live)
        manifest_task = asyncio.create_task(_manifest_loop(pipeline, run_dir))
        progress.start()
        error: StorageError | None = None
        try:
            await pipeline.run()
        except StorageError as exc:
            error = exc
        finally:
            await progress.aclose()
            manifest_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await manifest_task
        snap = pipeline.snapshot()
        snap["providers"] = providers.statistics()
        snap["endpoints"] = providers.facts()
    snap["previous_sessions"] = {"billing_unknown_requests": previous.billing_unknown,
                                 "redone_usd": round(previous.redone_usd, 8),
                                 "journaled_usd": round(previous.journaled_usd, 8)}
    with contextlib.suppress(StorageError):
        run_dir.write_manifest(snap)
    print(render_summary(snap), file=sys.stdout, flush=True)
    if error is not None:
        return Outcome(EXIT_STORAGE, f"storage error: {error}. Free space or fix the path, then "
                                     f"`agen resume {run_dir.root}`", snap)
    if isinstance(pipeline.fatal, EndpointUnreachableError):
        return Outcome(EXIT_UNREACHABLE, f"stopped: endpoint unreachable: {pipeline.fatal}. Fix base_url or "
                                         f"start the server, then `agen resume {run_dir.root}`", snap)
    if pipeline.fatal is not None:
        code = getattr(pipeline.fatal, "exit_code", EXIT_PROVIDER)  # EndpointUnreachableError: 6
        return Outcome(code, f"stopped: {pipeline.fatal}. Fix the cause, then "
                                      f"`agen resume {run_dir.root}`", snap)
    return _ending(pipeline, snap, run_dir, interrupted=bool(interrupts))


def _halt_at_once(sig: signal.Signals, halt: Callable[[int], None]) -> None:
    """Run `halt` inside the Python-level handler of `sig`, ahead of the loop's own handling.

    The loop's handler (`add_signal_handler`) runs only after the loop reads its wakeup pipe: after
    the rest of the current turn and the next poll, one or two turns that under load take 0.1 s or
    more, during which admitted requests kept leaving. CPython runs a Python-level handler at the
    next bytecode of the main thread, so `halt` (which only sets flags) stops sending at once; the
    loop's handler still does the rest (the wakeup pipe is written by C, whatever the handler)."""
    loop_handler = signal.getsignal(sig)

    def handler(signum: int, frame: Any) -> None:
        halt(signum)
        if callable(loop_handler):
            loop_handler(signum, frame)

    signal.signal(sig, handler)


def _ending(pipeline: Pipeline, snap: dict, run_dir: RunDir, *, interrupted: bool) -> Outcome:
    """Exit code and final line for a session the pipeline ended (no storage or provider error)."""
    resume = f"`agen resume {run_dir.root}`"
    if interrupted:
        return Outcome(EXIT_INTERRUPTED, f"interrupted; resume with {resume}", snap)
    if pipeline.stall is not None:
        return Outcome(EXIT_NO_PROGRESS, f"stopped: {pipeline.stall.message}; then {resume}", snap)
    tally = _tally(snap)
    if pipeline.stop_reason == "budget":
        spent, cap = snap["costs"]["total"]["cost_usd"], pipeline.cfg.budget
        limit = f"${cap.usd:g}" if cap.usd is not None else f"{cap.tokens} tokens"
        if "others_spent_usd" in snap:  # a coordinated run: the budget is the whole run's
            limit += f" of the whole run, ${snap['others_spent_usd']:.4f} by the other workers"
        return Outcome(EXIT_OK, f"stopped: the budget ({limit}) is reached, ${spent:.4f} spent; accepted "
                                f"{tally}. To go on: `agen resume {run_dir.root} --budget-usd N`", snap)
    if not _targets_met(snap):
        short = [s for s in pipeline.exhausted if snap["stages"][s]["accepted"] < snap["stages"][s]["target"]]
        why = (f"{', '.join(short)} tried max_attempts candidates" if short else "the stages ended")
        return Outcome(EXIT_NO_PROGRESS, f"stopped: {why} short of the target; accepted {tally}. Raise "
                                         f"{short[0] if short else 'amplify'}.max_attempts in "
                                         f"{run_dir.root / 'config.yaml'} or make candidates pass more "
                                         f"often, then {resume}", snap)
    if run_dir.resumed and not pipeline.accepted_this_session:
        return Outcome(EXIT_OK, f"already complete: every target was met; nothing was sent. Delete "
                                f"{run_dir.root} or choose another output.dir to start over", snap)
    return Outcome(EXIT_OK, f"done: every target met, accepted {tally}", snap)


def _tally(snap: dict) -> str:
    return ", ".join(f"{n} {s.get('accepted_all', s['accepted'])}/{s['target']}" for n, s in snap["stages"].items())


def _targets_met(snap: dict) -> bool:
    return all(s.get("accepted_all", s["accepted"]) >= s["target"] for s in snap["stages"].values())


async def _manifest_loop(pipeline: Pipeline, run_dir: RunDir, every_s: float = 2.0) -> None:
    """Refresh the manifest hint now and then; the data files stay the truth."""
    while True:
        await asyncio.sleep(every_s)
        snap = pipeline.snapshot()
        snap["updated"] = time.time()
        try:
            await asyncio.to_thread(run_dir.write_manifest, snap)
        except StorageError:
            pass  # the sink reports storage errors; the manifest is only a hint
