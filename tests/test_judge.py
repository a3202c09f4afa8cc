"""The LLM judge's score parser: accepted formats, and every way it refuses to guess."""

from __future__ import annotations

import pytest

from agen.gen.judge import parse_judge_score


@pytest.mark.parametrize("text, want", [
    ("The response is good.\nScore: 7", 7.0),
    ("reasoning\nscore: 7/10", 7.0),
    ("reasoning\n**Score:** 7", 7.0),
    ("reasoning\n**Score: 9**", 9.0),
    ("reasoning\nFinal score: 4.", 4.0),
    ("reasoning\nOverall rating = 8", 8.0),
    ("reasoning\n## Score: 10", 10.0),
    ("reasoning\n- Score: 2", 2.0),
    ("reasoning\nRating: 7.5", 7.5),
    ("Helpfulness: 8/10\nClarity: 6/10\nScore: 7", 7.0),
    ("Looks fine.\n7/10", 7.0),
    ("Score: 6\nmore words\nScore: 6", 6.0),
    ("<think>Score: 2 maybe?</think>Solid answer.\nScore: 8", 8.0),
])
def test_accepted_formats(text: str, want: float) -> None:
    """Each documented score format gives its number."""
    assert parse_judge_score(text) == want


@pytest.mark.parametrize("text", [
    "",
    "The response is good, I would give it a high mark.",
    "Score: N",
    "Score: 0",
    "Score: 11",
    "Score: -3",
    "Score: 6\nOn reflection:\nScore: 8",
    "Helpfulness: 8/10\nClarity: 6/10",
    "7/10 on helpfulness, but overall weak.",
    "Score:\n7",
    "Score: 7 because it is decent",
    "<think>still thinking... Score: 7",
    "I'd say a score of 7",
])
def test_refused(text: str) -> None:
    """Missing, out-of-range, conflicting, non-final or inline scores give None, never a guess."""
    assert parse_judge_score(text) is None


def test_custom_range() -> None:
    """lo/hi bound the accepted range (e.g. a 1–5 rubric)."""
    assert parse_judge_score("Score: 5", lo=1, hi=5) == 5.0
    assert parse_judge_score("Score: 6", lo=1, hi=5) is None
