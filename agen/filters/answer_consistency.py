"""Answer-Consistency: K sampled solutions vote; keep the candidate if the majority agrees with it.

Samples are asked for in batches sized by `Tally.needed_before_decision()`, in one request with
`n` where the endpoint allows it; sample j always uses seed `base + j`, so the samples (and the
decision) do not depend on how they were batched, and early stopping decides exactly as the
full K-sample vote would on the same samples. Answers that need math-verify are compared in
worker processes (`filters/equivalence_pool.py`), never on the event loop.

The record keeps what training needs besides the verdict: the shortest agreeing solutions (up to
`MAX_SOLUTIONS`, each cut after its final box and at most `MAX_SOLUTION_CHARS`) and the pass rate —
agreeing over drawn samples, with K, how many gave an answer and how many were truncated. With
early stopping the pass rate is over the samples drawn before the decision, not over K.
"""

from __future__ import annotations

from typing import Any, Protocol

from agen.config import VoteConfig
from agen.filters import Call, FilterTask, TargetMet, Verdict, gather_settled
from agen.filters.equivalence_pool import EquivalencePool, VoteFeed
from agen.gen.prompts import layout_messages
from agen.gen.solutions import keep_solutions
from agen.gen.vote import Tally, count_decided, untruncated
from agen.seeding import stable_int
from agen.types import ChatRequest
from agen.verify import InlineFeed, Verifier
from agen.verify.math import MathVerifier


class Solver(Protocol):
    """What the vote needs of the model that solves (a `ModelClient`, or a benchmark's stub: a
    Protocol, so the compiled build checks no class at run time)."""

    @property
    def supports_n(self) -> bool: ...


class AnswerConsistency:
    def __init__(self, cfg: VoteConfig, client: Solver, call: Call, verifier: Verifier | None = None,
                 cache_layout: bool = True) -> None:
        self.cfg = cfg
        self.cache_layout = cache_layout  # prompts.cache_layout: the solve template's static part first
        self.client = client
        self.call = call
        self.model = cfg.model
        # The domain (agen.verify): what a sample says, which votes agree. Default: math.
        self.verifier = verifier if verifier is not None else MathVerifier(cfg.template)
        self.equivalence = EquivalencePool()  # no process starts until an answer needs one

    def min_in_flight(self, stage: str) -> int:
        return 0  # every vote decides on its own samples

    def finish_pilot(self, stage: str | None = None) -> None:
        pass

    def abort_pilot(self) -> None:
        pass

    async def aclose(self) -> None:
        await self.equivalence.aclose()

    async def judge(self, task: FilterTask) -> Verdict:
        vc, vf = self.cfg, self.verifier
        rejected = await vf.check_candidate(task.question, task.answer)
        if rejected is not None:  # e.g. code whose own reference solution fails: no vote is paid for
            return Verdict(False, f"vote:{rejected}", {"vote": {
                "model": vc.model, "k": vc.k, "samples": 0, "agree": 0, "majority_answer": None,
                "majority_share": 0.0, "early_stopped": True, "votes": [], "pass_rate": 0.0,
                "answered": 0, "truncated": 0, "solutions": []}})
        tally = Tally(task.answer or "", vc.k, vf.min_share(vc.min_share),
                      classes=vf.classes(task.question, task.answer or ""))
        # math answers may need math-verify: off the loop; other domains' votes are a dict lookup
        feed = (VoteFeed(tally, task.answer or "", self.equivalence) if vf.pooled_equivalence
                else InlineFeed(tally))
        messages = layout_messages(vf.solve_template, self.cache_layout, question=task.question)
        base_seed = stable_int(f"{task.key}/vote")
        offset = answered = 0
        agreeing: list[str] = []
        stage = f"{task.stage}.vote"
        while (decision := feed.tally.decision()) is None:
            if task.enough():
                samples = len(feed.tally.votes)  # the record's shape, so reports and exports read it
                raise TargetMet({"vote": {
                    "model": vc.model, "k": vc.k, "samples": samples, "agree": len(agreeing),
                    "majority_answer": None, "majority_share": 0.0, "early_stopped": True,
                    "votes": list(feed.tally.votes), "pass_rate": round(len(agreeing) / samples, 4) if samples else 0.0,
                    "answered": answered, "truncated": feed.tally.truncated, "solutions": keep_solutions(agreeing)}})
            want = feed.tally.needed_before_decision() if vc.early_stop else vc.k - offset
            want = max(1, min(want, vc.k - offset))
            reqs = self._requests(messages, base_seed, offset, want, stage, task.id)
            outs = await gather_settled(*(self.call(self.client, r) for r in reqs))
            texts = untruncated(outs, feed.tally)
            votes = await vf.votes(task.question, texts)
            # a key decides nearly every sample: counted in one compiled call, no coroutine for them
            counted, first_pending = count_decided(feed.inline, texts, votes, agreeing)
            answered += counted
            for text, vote in zip(texts[first_pending:], votes[first_pending:], strict=True):
                if await feed.add(vote):
                    agreeing.append(text)
                answered += vote is not None
            offset += want
        samples = decision.samples
        accepted, reason = decision.accepted, decision.reason
        if accepted and vf.split(feed.tally.class_counts):  # choice: two options both drew many votes
            accepted, reason = False, "split"
        detail: dict[str, Any] = {"vote": {
            "model": vc.model, "k": vc.k, "samples": samples, "agree": decision.agree,
            "majority_answer": decision.majority_answer, "majority_share": round(decision.majority_share, 4),
            "early_stopped": samples + feed.tally.truncated < vc.k, "votes": list(feed.tally.votes),
            "pass_rate": round(decision.agree / samples, 4) if samples else 0.0,
            "answered": answered, "truncated": feed.tally.truncated,
            "solutions": keep_solutions(agreeing)}}
        if feed.undecidable:  # compared past the time limit: counted for no class
            detail["vote"]["undecidable"] = feed.undecidable
        return Verdict(accepted, f"vote:{reason}", detail)

    def _requests(self, messages: tuple[dict[str, str], ...], base_seed: int, offset: int, want: int, stage: str,
                  task_id: str) -> list[ChatRequest]:
        """One request with n=want where the endpoint supports it, else `want` concurrent n=1 calls."""
        vc = self.cfg
        if self.client.supports_n:
            return [ChatRequest(messages, vc.max_tokens, n=want, temperature=vc.temperature,
                                seed=base_seed + offset, stage=stage, task_id=f"{task_id}/v{offset}")]
        return [ChatRequest(messages, vc.max_tokens, n=1, temperature=vc.temperature,
                            seed=base_seed + offset + j, stage=stage, task_id=f"{task_id}/v{offset + j}")
                for j in range(want)]
