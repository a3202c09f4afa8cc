"""Each verifiable domain's quick start, end to end over HTTP to the simulated provider: it accepts
examples, its records carry the domain, and the vote raises the share of correct ones."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from agen.app.export import export_rows
from agen.app.runner import EXIT_OK, run_session
from agen.config import parse_config
from agen.sim.choice_world import correct_letters
from agen.sim.code_world import parse_code_problem
from agen.verify.code_format import split_tests
from conftest import ROOT, records, sim_config_file


def _quickstart(name: str, tmp_path: Path, **sections) -> list[dict]:
    raw = yaml.safe_load((ROOT / "configs" / name).read_text())
    raw["seeds"]["path"] = str(ROOT / raw["seeds"]["path"])
    raw["output"]["dir"] = str(tmp_path / "run")
    raw["simulator"] = {"config": str(sim_config_file(tmp_path, latency_ms=2))}
    for key, value in sections.items():
        raw[key].update(value)
    out = run_session(parse_config(raw), live=False)
    assert out.exit_code == EXIT_OK, out.message
    return records(tmp_path / "run")


def test_choice_quickstart_accepts_correct_questions(tmp_path):
    recs = _quickstart("quickstart_choice.yaml", tmp_path)
    assert all(r["domain"] == "choice" for r in export_rows(tmp_path / "run", "rl"))
    voted = [r for r in recs if r["reason"].startswith("vote:")]
    accepted = [r for r in recs if r["status"] == "accepted"]
    assert len(accepted) >= 40 and all(r["domain"] == "choice" for r in recs)
    assert all(r["answer"] in "ABCD" for r in accepted)  # normalised to a letter

    def correct(r: dict) -> bool:  # exactly one correct option, and it is the stated one
        return correct_letters(r["question"]) == [r["answer"]]

    before = sum(map(correct, voted)) / len(voted)
    after = sum(map(correct, accepted)) / len(accepted)
    print(f"choice precision before vote {before:.3f} ({len(voted)}), after {after:.3f} ({len(accepted)})")
    assert after >= 0.9 and after - before >= 0.1


def _tests_match_statement(r: dict) -> bool:
    """Whether every test's expected value is what the statement asks for (the sim's truth)."""
    prob = parse_code_problem(r["question"])
    if prob is None:
        return False
    func = prob.family.impl(**prob.consts)
    for line in split_tests(r["question"])[1]:
        call, expected = ast.parse(line).body[0].test.left, ast.parse(line).body[0].test.comparators[0]
        args = [ast.literal_eval(a) for a in call.args]
        if func(*args) != ast.literal_eval(expected):
            return False
    return True


def test_code_quickstart_accepts_problems_whose_tests_are_right(tmp_path):
    escape = Path("/tmp/agen-sim-escape.txt")
    recs = _quickstart("quickstart_code.yaml", tmp_path)
    voted = [r for r in recs if r["reason"].startswith("vote:")]
    accepted = [r for r in recs if r["status"] == "accepted"]
    assert len(accepted) >= 10 and all(r["domain"] == "code" for r in recs)
    assert all(r["tests"] and r["tests"] == list(split_tests(r["question"])[1]) for r in accepted)
    assert all(v is None or v == "pass" or v.startswith("fail:") for r in voted for v in r["vote"]["votes"])
    before = sum(map(_tests_match_statement, voted)) / len(voted)
    after = sum(map(_tests_match_statement, accepted)) / len(accepted)
    print(f"code precision before vote {before:.3f} ({len(voted)}), after {after:.3f} ({len(accepted)})")
    assert after >= before and after >= 0.9
    assert not escape.exists()  # hostile samples the sim writes stayed inside their sandboxes
    rows = list(export_rows(tmp_path / "run", "rl"))
    assert len(rows) == len(accepted) and all(r["domain"] == "code" and r["tests"] for r in rows)
    by_id = {r["id"]: r for r in accepted}
    assert all(row["tests"] == by_id[row["id"]]["tests"] for row in rows)
    sft = list(export_rows(tmp_path / "run", "sft"))
    assert sft and all("def " in r["response"] for r in sft)  # a solution, not a boxed value


def test_math_records_carry_the_domain(tmp_path):
    recs = _quickstart("quickstart.yaml", tmp_path, propose={"target": 3}, amplify={"target": 0})
    assert recs and all(r["domain"] == "math" for r in recs)


def test_math_quickstart_on_latex_answers(tmp_path):
    """MATH-style seeds make the sim propose LaTeX-answer problems; solvers write equivalent answers
    in different forms (`\\sqrt{72}` for `6\\sqrt{2}`, `7/12`, `x = 2, 5`), so agreement must be symbolic."""
    from agen.gen.answers import equivalent
    from agen.sim.latex_world import true_answer

    recs = _quickstart("quickstart_math.yaml", tmp_path)
    voted = [r for r in recs if r["reason"].startswith("vote:")]
    accepted = [r for r in recs if r["status"] == "accepted"]
    assert len(accepted) >= 40 and all(r["domain"] == "math" for r in recs)
    # the LaTeX world, not arithmetic (a prompt whose two MATH seeds have no LaTeX at all gets the latter)
    voted = [r for r in voted if true_answer(r["question"]) is not None]
    accepted = [r for r in accepted if true_answer(r["question"]) is not None]
    assert len(accepted) >= 30
    spelled = {v for r in accepted for v in r["vote"]["votes"] if v} - {r["answer"] for r in accepted}
    assert spelled  # agreeing votes written differently from the candidate's answer

    def correct(r: dict) -> bool:
        return equivalent(r["answer"], true_answer(r["question"]) or "nan")

    before = sum(map(correct, voted)) / len(voted)
    after = sum(map(correct, accepted)) / len(accepted)
    print(f"math (LaTeX) precision before vote {before:.3f} ({len(voted)}), after {after:.3f} ({len(accepted)})")
    assert after >= 0.95 and after > before


def test_math_run_where_solvers_box_sentences(tmp_path):
    """Solvers that box a sentence with numbers in it (`prose_answer_p`: "A $70^\\circ$ rotation
    around the origin in the counter-clock", "12 in all, counting the 3 given away") break the
    assumption that a boxed answer is a number or a formula. One such answer once took answer_key
    47 s of backtracking on the event loop; the run must finish, keep the sentences as votes, and
    never stall its loop for seconds (a hang guard, not a speed target)."""
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw["seeds"]["path"] = str(ROOT / raw["seeds"]["path"])
    raw["output"]["dir"] = str(tmp_path / "run")
    raw["propose"]["target"], raw["amplify"]["target"] = 4, 30
    raw["simulator"] = {"config": str(sim_config_file(tmp_path, latency_ms=2, prose_answer_p=0.3))}
    out = run_session(parse_config(raw), live=False)
    assert out.exit_code == EXIT_OK, out.message
    recs = records(tmp_path / "run")
    votes = [v for r in recs if r.get("vote") for v in r["vote"]["votes"] if v]
    prose = [v for v in votes if " " in v and any(c.isdigit() for c in v)]
    assert len(prose) >= 0.1 * len(votes) > 0  # the sentences reached the vote as answers
    assert sum(r["status"] == "accepted" for r in recs) >= 30
    assert out.snapshot["loop_lag"]["max_ms"] < 5000
