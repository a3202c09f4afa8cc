"""RIP filter for open-ended prompts: K responses, each scored; keep the prompt if its worst is good.

Percentile thresholds are calibrated once, on the metrics of the first `pilot` candidates, then
frozen to `RUN_DIR/rip_thresholds.json` (atomically), so a resumed run judges by the same
numbers. Pilot candidates wait for the freeze and are then judged like every other one.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import structlog

from agen.config import RipConfig
from agen.errors import TaskFailedError
from agen.filters import Call, FilterAborted, FilterTask, Verdict, gather_settled
from agen.gen.judge import parse_judge_score
from agen.gen.prompts import render
from agen.gen.rip_metrics import (
    RipMetrics,
    RipThresholds,
    calibrate,
    compute_metrics,
    keep,
    response_length,
)
from agen.providers.client import ModelClient
from agen.providers.reward import RewardClient
from agen.run.rundir import atomic_write
from agen.seeding import stable_int
from agen.types import ChatRequest, ScoreRequest

log = structlog.get_logger("agen.rip")


def _load_frozen(path: Path) -> RipThresholds | None:
    if not path.exists():
        return None
    raw = orjson.loads(path.read_bytes())
    return RipThresholds(**{k: float(v) for k, v in raw["thresholds"].items()})


def _jsonable(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


class RipFilter:
    def __init__(self, cfg: RipConfig, policy: ModelClient, judge: ModelClient | RewardClient, call: Call,
                 thresholds_path: Path) -> None:
        self.cfg = cfg
        self.policy = policy
        self.judge_client = judge
        self.call = call
        self.model = cfg.model
        self.path = thresholds_path
        self.frozen = _load_frozen(thresholds_path)
        self._pilot: list[RipMetrics] = []
        self._ready = asyncio.Event()
        self._aborted = False
        if self.frozen is not None:
            self._ready.set()

    # ---- pilot -----------------------------------------------------------------------------------

    def min_in_flight(self) -> int:
        """Until the thresholds freeze, the whole pilot must be in flight: its candidates wait for it."""
        return 0 if self.frozen is not None else self.cfg.pilot

    def _freeze(self) -> None:
        self.frozen = calibrate(self._pilot, self.cfg.thresholds)
        doc = {"pilot": len(self._pilot), "spec": self.cfg.thresholds.model_dump(mode="json"),
               "thresholds": {k: _jsonable(v) for k, v in asdict(self.frozen).items()}}
        atomic_write(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        log.info("rip_thresholds_frozen", pilot=len(self._pilot), **asdict(self.frozen))
        self._ready.set()

    def finish_pilot(self) -> None:
        """No more candidates will come (attempts exhausted): freeze on the pilot we have.
        Not after a stop: a pilot cut short by Ctrl-C or the budget is redone on resume, never
        frozen half-collected."""
        if self._aborted:
            return
        if self.frozen is None and self._pilot:
            self._freeze()
        self._ready.set()

    def abort_pilot(self) -> None:
        """The run is stopping: release waiting candidates without judging them."""
        if self.frozen is None:
            self._aborted = True
            self._ready.set()

    async def aclose(self) -> None:
        pass

    # ---- judging ---------------------------------------------------------------------------------

    async def judge(self, task: FilterTask) -> Verdict:
        responses = await self._responses(task)
        rewards = list(await gather_settled(*(self._score(task, i, r) for i, r in enumerate(responses))))
        detail: dict[str, Any] = {"rip": {"k": self.cfg.k, "policy_model": self.cfg.model,
                                          "judge_model": self.cfg.judge_model, "responses": responses,
                                          "rewards": rewards}}
        scored = sum(r is not None for r in rewards)
        detail["rip"]["judge_failures"] = len(rewards) - scored
        if scored < math.ceil(self.cfg.min_scored * self.cfg.k) or scored == 0:
            return Verdict(False, "rip:judge_failed", detail)
        metrics = compute_metrics(rewards, [response_length(r) for r in responses])
        detail["rip"]["metrics"] = asdict(metrics)
        if self.frozen is None:
            self._pilot.append(metrics)
            if len(self._pilot) >= self.cfg.pilot:
                self._freeze()
            await self._ready.wait()
            if self.frozen is None:
                raise FilterAborted(task.id)  # the run stopped before the pilot was complete
        ok, reason = keep(metrics, self.frozen)
        detail["rip"]["thresholds"] = {k: _jsonable(v) for k, v in asdict(self.frozen).items()}
        return Verdict(ok, reason, detail)

    async def _responses(self, task: FilterTask) -> list[str]:
        """K policy responses: one request with n=K where supported, else K seeded requests."""
        cfg = self.cfg
        prompt = render(cfg.respond_template, prompt=task.question)
        messages = ({"role": "user", "content": prompt},)
        base = stable_int(f"{task.key}/respond")
        stage = f"{task.stage}.respond"
        if self.policy.supports_n:
            reqs = [ChatRequest(messages, cfg.max_tokens, n=cfg.k, temperature=cfg.temperature, seed=base,
                                stage=stage, task_id=f"{task.id}/r0")]
        else:
            reqs = [ChatRequest(messages, cfg.max_tokens, n=1, temperature=cfg.temperature, seed=base + j,
                                stage=stage, task_id=f"{task.id}/r{j}") for j in range(cfg.k)]
        outs = await gather_settled(*(self.call(self.policy, r) for r in reqs))
        return [t for out in outs for t in out.texts]

    async def _score(self, task: FilterTask, i: int, response: str) -> float | None:
        """A reward for one response; None when the judge gave no valid score (a malformed reply,
        or a call that failed for good): counted as a judge failure, not a failed candidate."""
        stage = f"{task.stage}.judge"
        try:
            if isinstance(self.judge_client, RewardClient):
                reward = await self.call(self.judge_client,
                                         ScoreRequest(task.question, response, stage, f"{task.id}/j{i}"))
                return reward.value
            text = render(self.cfg.judge_template, prompt=task.question, response=response)
            req = ChatRequest(({"role": "user", "content": text},), self.cfg.judge_max_tokens, n=1,
                              temperature=0.0, seed=stable_int(f"{task.key}/judge/{i}"), stage=stage,
                              task_id=f"{task.id}/j{i}")
            out = await self.call(self.judge_client, req)
        except TaskFailedError:
            return None
        return parse_judge_score(out.texts[0])
