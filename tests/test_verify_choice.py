"""`verify: choice`: option parsing, answer normalisation (a table of pairs), the vote's majority rule."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from agen.gen.parse import ParseFailure
from agen.gen.vote import Tally
from agen.verify.choice import ChoiceVerifier, normalize_choice, parse_options

TABLE = Path(__file__).parent / "data" / "verify_pairs_choice.jsonl"


def _table() -> tuple[dict[str, str], list[dict]]:
    rows = [orjson.loads(line) for line in TABLE.read_bytes().splitlines() if line.strip()]
    questions = {r["question_id"]: r["question"] for r in rows if "question_id" in r}
    return questions, [r for r in rows if "q" in r]


QUESTIONS, PAIRS = _table()


def test_table_has_at_least_50_pairs_both_ways():
    assert len(PAIRS) >= 50
    assert sum(p["equal"] for p in PAIRS) >= 20 and sum(not p["equal"] for p in PAIRS) >= 20


@pytest.mark.parametrize("row", PAIRS, ids=lambda r: f"{r['q']}:{r['a']!r}~{r['b']!r}")
def test_pair(row):
    q = QUESTIONS[row["q"]]
    assert ChoiceVerifier.same(q, row["a"], row["b"]) is row["equal"]
    assert ChoiceVerifier.same(q, row["b"], row["a"]) is row["equal"]  # symmetric


def test_options_forms():
    assert parse_options(QUESTIONS["num"]) == {"A": "36", "B": "42", "C": "48", "D": "13"}
    assert parse_options(QUESTIONS["paren"])["C"] == "29"
    assert parse_options(QUESTIONS["inline"]) == {"A": "1/2", "B": "0.3", "C": "3/4", "D": "0.7"}
    assert parse_options("What is 2+2?\nB) 4\nC) 5") is None  # must start at A
    assert parse_options("What is 2+2? It is 4.") is None


def _proposal(question: str, answer: str) -> str:
    return (f"[New Question Begin]{question}[New Question End]\n"
            f"[Final Answer to New Question Begin]\\boxed{{{answer}}}[Final Answer to New Question End]")


def test_parse_normalises_the_stated_answer_and_refuses_bad_questions():
    v = ChoiceVerifier()
    assert v.parse(_proposal(QUESTIONS["num"], "(B)")).answer == "B"
    assert v.parse(_proposal(QUESTIONS["num"], "42")).answer == "B"
    assert v.parse(_proposal("What is 2+2?", "4")) == ParseFailure("no_options")
    assert v.parse(_proposal("Pick:\nA) 4\nB) 4.0\nC) 5", "A")) == ParseFailure("duplicate_options")
    assert v.parse(_proposal(QUESTIONS["num"], "E")) == ParseFailure("answer_not_an_option")
    assert v.parse(_proposal(QUESTIONS["num"], "B) 48")) == ParseFailure("answer_not_an_option")


def test_votes_read_boxes_and_answer_lines():
    v = ChoiceVerifier()
    texts = ["so \\boxed{(B)}", "Answer: B", "I think \\boxed{42}", "\\boxed{C) 48}", "no idea", "\\boxed{E}"]
    assert asyncio.run(v.votes(QUESTIONS["num"], texts)) == ["B", "B", "B", "C", None, "?e"]


def _vote(v: ChoiceVerifier, question: str, answer: str, votes: list[str | None], k: int, min_share: float):
    tally = Tally(answer, k, v.min_share(min_share), classes=v.classes(question, answer))
    for x in votes:
        tally.add(x)
    return tally.decision()


def test_even_split_between_options_rejects():
    v = ChoiceVerifier()
    q = QUESTIONS["num"]
    assert not _vote(v, q, "B", ["B"] * 8 + ["C"] * 8, 16, 0.5).accepted  # even split: a tie
    # a plurality is what guessing among four options gives: a configured min_share below 1/2 is
    # raised to a true majority, so 6 of 16 over 4/3/3 does not pass
    d = _vote(v, q, "B", ["B"] * 6 + ["A"] * 4 + ["C"] * 3 + ["D"] * 3, 16, 0.25)
    assert not d.accepted and d.reason == "below_min_share"
    d = _vote(v, q, "B", ["B"] * 9 + ["A"] * 4 + ["C"] * 3, 16, 0.25)
    assert d.accepted


def test_normalize_handles_no_options():
    assert normalize_choice("B", {}) == "?b"
    assert normalize_choice(None, {"A": "1"}) is None


def test_split_rejects_a_won_vote_with_a_strong_runner_up():
    v = ChoiceVerifier()
    assert v.split((9, 5, 2)) and v.split((8, 4)) and not v.split((11, 3, 2)) and not v.split((8,))


def test_sim_questions_with_two_correct_options_are_mostly_rejected():
    """The sim's flawed proposals (two primes among the options) split its solvers; the vote — the
    same Tally, early stopping, min-share floor and split rule the filter uses — keeps few of them
    and most sound ones. Offline: the sim world's functions, not its server."""
    import random

    from agen.sim import choice_world
    from agen.sim.config import SimModel

    v = ChoiceVerifier()
    proposer, solver = SimModel(propose_wrong_p=0, format_broken_p=0), SimModel(solve_correct_p=0.7)
    kept: dict[int, list[bool]] = {1: [], 2: []}
    for i in range(1500):
        cand = v.parse(choice_world.propose(random.Random(i), proposer))
        texts = [choice_world.solve(cand.question, i * 1000 + s, solver) for s in range(16)]
        tally = Tally(cand.answer, 16, v.min_share(0.5), classes=v.classes(cand.question, cand.answer))
        for vote in asyncio.run(v.votes(cand.question, texts)):
            if tally.decision() is None:
                tally.add(vote)
        ok = tally.decision().accepted and not v.split(tally.class_counts)
        kept[len(choice_world.correct_letters(cand.question))].append(ok)
    flawed, sound = (sum(kept[n]) / len(kept[n]) for n in (2, 1))
    print(f"kept: flawed {flawed:.3f} of {len(kept[2])}, sound {sound:.3f} of {len(kept[1])}")
    assert len(kept[2]) >= 50 and flawed <= 0.2 and sound >= 0.7
