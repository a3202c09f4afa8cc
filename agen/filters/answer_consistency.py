"""Answer-Consistency: K sampled solutions vote; keep the candidate if the majority agrees with it.

Samples are asked for in batches sized by `Tally.needed_before_decision()`, in one request with
`n` where the endpoint allows it; sample j always uses seed `base + j`, so the samples (and the
decision) do not depend on how they were batched, and early stopping decides exactly as the
full K-sample vote would on the same samples.
"""

from __future__ import annotations

from typing import Any

from agen.config import VoteConfig
from agen.filters import Call, FilterTask, Verdict, gather_settled
from agen.gen.prompts import solve_prompt
from agen.gen.vote import Tally
from agen.providers.client import ModelClient
from agen.seeding import stable_int
from agen.types import ChatRequest
from agen.verify import Verifier
from agen.verify.math import MathVerifier


class AnswerConsistency:
    def __init__(self, cfg: VoteConfig, client: ModelClient, call: Call, verifier: Verifier | None = None) -> None:
        self.cfg = cfg
        self.client = client
        self.call = call
        self.model = cfg.model
        # The domain (agen.verify): what a sample says, which votes agree. Default: math.
        self.verifier = verifier if verifier is not None else MathVerifier(cfg.template)

    def min_in_flight(self) -> int:
        return 0  # every vote decides on its own samples

    def finish_pilot(self) -> None:
        pass

    def abort_pilot(self) -> None:
        pass

    async def judge(self, task: FilterTask) -> Verdict:
        vc, vf = self.cfg, self.verifier
        rejected = await vf.check_candidate(task.question, task.answer)
        if rejected is not None:  # e.g. code whose own reference solution fails: no vote is paid for
            return Verdict(False, f"vote:{rejected}", {"vote": {
                "model": vc.model, "k": vc.k, "samples": 0, "agree": 0, "majority_answer": None,
                "majority_share": 0.0, "early_stopped": True, "votes": []}})
        tally = Tally(task.answer or "", vc.k, vf.min_share(vc.min_share),
                      classes=vf.classes(task.question, task.answer or ""))
        prompt = solve_prompt(vf.solve_template, task.question)
        base_seed = stable_int(f"{task.key}/vote")
        offset = 0
        stage = f"{task.stage}.vote"
        while (decision := tally.decision()) is None:
            want = tally.needed_before_decision() if vc.early_stop else vc.k - offset
            want = max(1, min(want, vc.k - offset))
            reqs = self._requests(prompt, base_seed, offset, want, stage, task.id)
            outs = await gather_settled(*(self.call(self.client, r) for r in reqs))
            for vote in await vf.votes(task.question, [t for out in outs for t in out.texts]):
                tally.add(vote)
            offset += want
        accepted, reason = decision.accepted, decision.reason
        if accepted and vf.split(tally.class_counts):  # e.g. choice: two options both drew many votes
            accepted, reason = False, "split"
        detail: dict[str, Any] = {"vote": {
            "model": vc.model, "k": vc.k, "samples": decision.samples, "agree": decision.agree,
            "majority_answer": decision.majority_answer, "majority_share": round(decision.majority_share, 4),
            "early_stopped": decision.samples < vc.k, "votes": list(tally.votes)}}
        return Verdict(accepted, f"vote:{reason}", detail)

    def _requests(self, prompt: str, base_seed: int, offset: int, want: int, stage: str,
                  task_id: str) -> list[ChatRequest]:
        """One request with n=want where the endpoint supports it, else `want` concurrent n=1 calls."""
        vc = self.cfg
        messages = ({"role": "user", "content": prompt},)
        if self.client.supports_n:
            return [ChatRequest(messages, vc.max_tokens, n=want, temperature=vc.temperature,
                                seed=base_seed + offset, stage=stage, task_id=f"{task_id}/v{offset}")]
        return [ChatRequest(messages, vc.max_tokens, n=1, temperature=vc.temperature,
                            seed=base_seed + offset + j, stage=stage, task_id=f"{task_id}/v{offset + j}")
                for j in range(want)]
