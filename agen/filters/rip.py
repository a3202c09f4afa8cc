"""RIP filter for open-ended prompts: K responses, each scored; keep the prompt if its worst is good.

Percentile thresholds are calibrated **per stage**, each on the metrics of that stage's own first
`pilot` candidates (proposals from the strong model and amplified prompts from the cheap one
score differently, so one stage's percentiles would keep the other's prompts at the wrong rate),
then frozen to `RUN_DIR/rip_thresholds.json` (atomically) with the pilot size and a bootstrap
90% interval for each threshold and for the pilot's keep rate, so a resumed run judges by the
same numbers and a reader sees how settled they are. A stage's pilot candidates wait for that
stage's freeze and are then judged like every other one. A file from before per-stage
calibration (one `thresholds` for the run) still applies to every stage.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from agen.config import RipConfig
from agen.errors import TaskFailedError
from agen.filters import Call, FilterAborted, FilterTask, TargetMet, Verdict, gather_settled
from agen.gen.judge import parse_judge_score
from agen.gen.prompts import layout_messages
from agen.gen.rip_metrics import (
    RipMetrics,
    RipThresholds,
    calibrate,
    compute_metrics,
    keep,
    response_length,
    threshold_uncertainty,
)
from agen.providers.client import ModelClient
from agen.providers.reward import RewardClient
from agen.run.rundir import atomic_write
from agen.seeding import stable_int
from agen.types import ChatRequest, ScoreRequest

log = structlog.get_logger("agen.rip")

ANY_STAGE = "*"  # key of a legacy file's run-wide thresholds


def _thresholds(raw: dict[str, Any]) -> RipThresholds:
    return RipThresholds(**{k: float(v) for k, v in raw.items()})


def _load_frozen(path: Path) -> dict[str, RipThresholds]:
    if not path.exists():
        return {}
    raw = orjson.loads(path.read_bytes())
    if "stages" not in raw:
        return {ANY_STAGE: _thresholds(raw["thresholds"])}
    return {stage: _thresholds(doc["thresholds"]) for stage, doc in raw["stages"].items()}


def _jsonable(x: Any) -> Any:
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    return x if not isinstance(x, float) or math.isfinite(x) else ("inf" if x > 0 else "-inf")


@dataclass
class _Pilot:
    """One stage's calibration: its pilot's metrics until frozen, then the thresholds."""

    metrics: list[RipMetrics] = field(default_factory=list)
    frozen: RipThresholds | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False  # the stage sends no more candidates: freeze once those being judged are in
    judging: int = 0  # candidates of the stage between judge() start and their metrics


class RipFilter:
    def __init__(self, cfg: RipConfig, policy: ModelClient, judge: ModelClient | RewardClient, call: Call,
                 thresholds_path: Path, cache_layout: bool = True) -> None:
        self.cfg = cfg
        self.cache_layout = cache_layout  # prompts.cache_layout: each template's static part first
        self.policy = policy
        self.judge_client = judge
        self.call = call
        self.model = cfg.model
        self.path = thresholds_path
        self._pilots: dict[str, _Pilot] = {}
        self._docs: dict[str, dict[str, Any]] = {}  # frozen stages as written to the file
        self._aborted = False
        frozen = _load_frozen(thresholds_path)
        self._legacy = frozen.pop(ANY_STAGE, None)
        if thresholds_path.exists() and self._legacy is None:
            self._docs = orjson.loads(thresholds_path.read_bytes())["stages"]
        for stage, t in frozen.items():
            self._stage(stage).frozen = t

    def _stage(self, stage: str) -> _Pilot:
        pilot = self._pilots.get(stage)
        if pilot is None:
            pilot = self._pilots[stage] = _Pilot(frozen=self._legacy)
            if pilot.frozen is not None or self._aborted:
                pilot.ready.set()
        return pilot

    def frozen_for(self, stage: str) -> RipThresholds | None:
        """The thresholds `stage` is judged by, once its pilot is frozen."""
        return self._stage(stage).frozen

    # ---- pilot -----------------------------------------------------------------------------------

    def min_in_flight(self, stage: str) -> int:
        """Until a stage's thresholds freeze, its whole pilot must be in flight: its candidates wait."""
        return 0 if self._stage(stage).frozen is not None else self.cfg.pilot

    def _freeze(self, stage: str) -> None:
        pilot = self._stage(stage)
        pilot.frozen = calibrate(pilot.metrics, self.cfg.thresholds)
        spread = threshold_uncertainty(pilot.metrics, self.cfg.thresholds, seed=stable_int(f"rip/{stage}"))
        kept = sum(keep(m, pilot.frozen)[0] for m in pilot.metrics) / len(pilot.metrics)
        self._docs[stage] = {"pilot": len(pilot.metrics), "thresholds": asdict(pilot.frozen),
                             "pilot_keep_rate": round(kept, 4), **spread}
        doc = {"spec": self.cfg.thresholds.model_dump(mode="json"), "stages": self._docs}
        atomic_write(self.path, orjson.dumps(_jsonable(doc), option=orjson.OPT_INDENT_2))
        log.info("rip_thresholds_frozen", stage=stage, pilot=len(pilot.metrics), **asdict(pilot.frozen))
        pilot.metrics = []
        pilot.ready.set()

    def finish_pilot(self, stage: str | None = None) -> None:
        """`stage` (or every stage) sends no more candidates (attempts exhausted): freeze it on the
        pilot it has as soon as the candidates being judged have their metrics. Per stage, because a
        stage's waiting pilot holds filter workers that the other stage's pilot needs. Not after a
        stop: a pilot cut short by Ctrl-C or the budget is redone on resume, never frozen
        half-collected."""
        if self._aborted:
            return
        for name in ([stage] if stage is not None else list(self._pilots)):
            self._stage(name).closed = True
            self._freeze_if_settled(name)

    def _freeze_if_settled(self, stage: str) -> None:
        pilot = self._stage(stage)
        if pilot.closed and pilot.frozen is None and pilot.judging == 0 and pilot.metrics and not self._aborted:
            self._freeze(stage)

    def abort_pilot(self) -> None:
        """The run is stopping: release waiting candidates without judging them."""
        self._aborted = True
        for pilot in self._pilots.values():
            if pilot.frozen is None:
                pilot.ready.set()

    async def aclose(self) -> None:
        pass

    # ---- judging ---------------------------------------------------------------------------------

    async def judge(self, task: FilterTask) -> Verdict:
        pilot = self._stage(task.stage)
        pilot.judging += 1
        try:
            responses, truncated = await self._responses(task)
            if task.enough():  # the judge calls are not worth paying for any more
                raise TargetMet({"rip": {"k": self.cfg.k, "policy_model": self.cfg.model, "responses": responses,
                                         "truncated": truncated}})
            rewards = list(await gather_settled(*(self._score(task, i, r) for i, r in enumerate(responses))))
        finally:
            pilot.judging -= 1
            self._freeze_if_settled(task.stage)  # this was the last one a closed stage's pilot waited for
        detail: dict[str, Any] = {"rip": {"k": self.cfg.k, "policy_model": self.cfg.model,
                                          "judge_model": self.cfg.judge_model, "responses": responses,
                                          "truncated": truncated, "rewards": rewards}}
        scored = sum(r is not None for r in rewards)
        detail["rip"]["judge_failures"] = len(rewards) - scored
        if scored < math.ceil(self.cfg.min_scored * self.cfg.k) or scored == 0:
            return Verdict(False, "rip:judge_failed", detail)
        metrics = compute_metrics(rewards, [response_length(r) for r in responses])
        detail["rip"]["metrics"] = asdict(metrics)
        if pilot.frozen is None:
            pilot.metrics.append(metrics)
            if len(pilot.metrics) >= self.cfg.pilot:
                self._freeze(task.stage)
            self._freeze_if_settled(task.stage)
            await pilot.ready.wait()
            if pilot.frozen is None:
                raise FilterAborted(task.id)  # the run stopped before the pilot was complete
        ok, reason = keep(metrics, pilot.frozen)
        detail["rip"]["thresholds"] = _jsonable(asdict(pilot.frozen))
        return Verdict(ok, reason, detail)

    async def _responses(self, task: FilterTask) -> tuple[list[str], int]:
        """K policy responses (one request with n=K where supported, else K seeded requests) and how
        many of them were cut at max_tokens, counted apart on the record like a vote's."""
        cfg = self.cfg
        messages = layout_messages(cfg.respond_template, self.cache_layout, prompt=task.question)
        base = stable_int(f"{task.key}/respond")
        stage = f"{task.stage}.respond"
        if self.policy.supports_n:
            reqs = [ChatRequest(messages, cfg.max_tokens, n=cfg.k, temperature=cfg.temperature, seed=base,
                                stage=stage, task_id=f"{task.id}/r0")]
        else:
            reqs = [ChatRequest(messages, cfg.max_tokens, n=1, temperature=cfg.temperature, seed=base + j,
                                stage=stage, task_id=f"{task.id}/r{j}") for j in range(cfg.k)]
        outs = await gather_settled(*(self.call(self.policy, r) for r in reqs))
        texts = [t for out in outs for t in out.texts]
        return texts, sum(out.truncated(i) for out in outs for i in range(len(out.texts)))

    async def _score(self, task: FilterTask, i: int, response: str) -> float | None:
        """A reward for one response; None when the judge gave no valid score (a malformed reply,
        or a call that failed for good): counted as a judge failure, not a failed candidate."""
        stage = f"{task.stage}.judge"
        try:
            if isinstance(self.judge_client, RewardClient):
                reward = await self.call(self.judge_client,
                                         ScoreRequest(task.question, response, stage, f"{task.id}/j{i}"))
                return reward.value
            messages = layout_messages(self.cfg.judge_template, self.cache_layout, prompt=task.question,
                                       response=response)
            req = ChatRequest(messages, self.cfg.judge_max_tokens, n=1,
                              temperature=0.0, seed=stable_int(f"{task.key}/judge/{i}"), stage=stage,
                              task_id=f"{task.id}/j{i}")
            out = await self.call(self.judge_client, req)
        except TaskFailedError:
            return None
        return parse_judge_score(out.texts[0])
