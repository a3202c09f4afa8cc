"""Tests for agen.gen.parse: strict template parsing of proposals and solver answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agen.gen.parse import (
    Candidate,
    ParseFailure,
    extract_boxed,
    gsm8k_reference,
    parse_generation,
    solution_answer,
    strip_think,
)

GOOD = (
    "Let me plan a question.\n"
    "[New Question Begin]\n  A train travels 60 km in 1.5 hours. What is its speed?  \n[New Question End]\n"
    "[Final Answer to New Question Begin]\\boxed{40}[Final Answer to New Question End]"
)


def test_strip_think_removes_closed_blocks() -> None:
    """Closed think blocks vanish, text around them stays."""
    assert strip_think("a<think>x\\boxed{1}</think>b<think>y</think>c") == "abc"


def test_strip_think_leading_close_without_open() -> None:
    """A stray `</think>` (template opened it) drops everything before it."""
    assert strip_think("reasoning \\boxed{1}</think>\nanswer \\boxed{2}") == "answer \\boxed{2}"


def test_strip_think_unclosed_leaves_no_answer() -> None:
    """An unclosed `<think>` (ran out of tokens) drops the rest, so no answer is found."""
    assert strip_think("<think>still thinking \\boxed{3}") == ""
    assert solution_answer("<think>still thinking \\boxed{3}") is None


def test_strip_think_nested_and_case() -> None:
    """Nested and upper-case think tags are handled as one block."""
    assert strip_think("<THINK>a<think>b</think>c</Think>done") == "done"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\fbox{7}", "7"),
        ("\\boxed {  x^{2} }", "x^{2}"),
        ("\\boxed{}", ""),
        ("no box here", None),
        ("\\boxed{\\frac{1}{2}", None),
        ("\\boxed{1} and \\boxed{\\frac{2", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    """Last box wins, nested braces balance, unbalanced or missing gives None."""
    assert extract_boxed(text) == expected


@given(st.text(alphabet="ab{}\\ ", max_size=20))
def test_extract_boxed_roundtrip_balanced(inner: str) -> None:
    """Any balanced content (ignoring escapes) comes back exactly as it was boxed."""
    depth = 0
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(inner[i], 0)
        if depth < 0:
            return
        i += 1
    if depth != 0 or inner.endswith("\\") or i > len(inner):
        return
    assert extract_boxed(f"x \\boxed{{{inner}}} y") == inner.strip()


def test_parse_generation_good() -> None:
    """A well-formed proposal yields its stripped question and boxed answer."""
    assert parse_generation(GOOD) == Candidate(
        "A train travels 60 km in 1.5 hours. What is its speed?", "40"
    )


def test_parse_generation_ignores_markers_inside_think() -> None:
    """Markers drafted inside reasoning are not counted as extra blocks."""
    text = "<think>[New Question Begin]draft[New Question End]</think>" + GOOD
    assert isinstance(parse_generation(text), Candidate)


def test_parse_generation_whitespace_tolerant_markers() -> None:
    """Extra spaces inside and around the markers are accepted."""
    text = "[ New  Question Begin ]Q?[New Question End ]\n\n[Final Answer to New Question Begin ]  \\boxed{ 3 } [ Final Answer to New Question End]"
    assert parse_generation(text) == Candidate("Q?", "3")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nothing", "no_question"),
        ("<think>forever", "unclosed_think"),
        ("[New Question Begin]a[New Question End][New Question Begin]b[New Question End]", "multiple_questions"),
        ("[New Question Begin]a", "unclosed_question"),
        ("[New Question Begin]  \n [New Question End]", "empty_question"),
        ("[New Question Begin]{your_generated_question}[New Question End]", "placeholder_question"),
        ("[New Question Begin]Q[New Question End]", "no_answer_block"),
        ("[New Question Begin]Q[New Question End][Final Answer to New Question Begin]\\boxed{1}", "unclosed_answer"),
        ("[New Question Begin]Q[New Question End][Final Answer to New Question Begin]1[Final Answer to New Question End]", "no_boxed_answer"),
        ("[New Question Begin]Q[New Question End][Final Answer to New Question Begin]\\boxed{ }[Final Answer to New Question End]", "empty_answer"),
        (
            "[New Question Begin]Q[New Question End][Final Answer to New Question Begin]\\boxed{1}[Final Answer to New Question End]"
            "[Final Answer to New Question Begin]\\boxed{2}[Final Answer to New Question End]",
            "multiple_answers",
        ),
        (
            "[New Question Begin]Q [Final Answer to New Question Begin]\\boxed{1}[Final Answer to New Question End][New Question End]",
            "answer_inside_question",
        ),
    ],
)
def test_parse_generation_failures(text: str, reason: str) -> None:
    """Each template violation maps to its stable reason."""
    assert parse_generation(text) == ParseFailure(reason)


def test_solution_answer_uses_last_box_after_think() -> None:
    """A solver's answer is its last box outside the reasoning."""
    assert solution_answer("<think>maybe \\boxed{5}</think>So \\boxed{6}.") == "6"
    assert solution_answer("no box") is None


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("She pays 3*4=<<3*4=12>>12 dollars.\n#### 12", "12"),
        ("... \n#### 1,234", "1234"),
        ("#### -5", "-5"),
        ("#### 2.5", "2.5"),
        ("no marker", None),
    ],
)
def test_gsm8k_reference(field: str, expected: str | None) -> None:
    """GSM8K's answer is the number after ####, commas dropped."""
    assert gsm8k_reference(field) == expected


def test_open_generation_keeps_only_the_step_3_prompt():
    """Open-ended output: only the prompt between the markers is kept; broken formats are named."""
    from agen.gen.parse import parse_open_generation

    text = ("Step 1: both ask for advice.\nStep 2: plan a travel question.\nStep 3:\n"
            "[New Prompt Begin]\nPlan a 3-day trip to Kyoto on a $500 budget.\n[New Prompt End]")
    got = parse_open_generation("<think>hmm</think>" + text)
    assert isinstance(got, Candidate) and got.question == "Plan a 3-day trip to Kyoto on a $500 budget."
    assert got.answer is None
    assert parse_open_generation("no markers").reason == "no_prompt"
    assert parse_open_generation("[New Prompt Begin] x").reason == "unclosed_prompt"
    assert parse_open_generation("[New Prompt Begin]  [New Prompt End]").reason == "empty_prompt"
    assert parse_open_generation("[New Prompt Begin]a[New Prompt End][New Prompt Begin]b[New Prompt End]").reason == "multiple_prompts"


_PIECES = ["\\boxed{", "\\boxed {", "\\boxed", "\\fbox{", "\\fbox", "{", "}", "\\{", "\\}", "x", " ", "<think>",
           "</think>", "<", "\\"]


@given(st.lists(st.sampled_from(_PIECES), max_size=14))
def test_fast_paths_agree_with_the_regex_scans(pieces: list[str]) -> None:
    """The last box found from the end and the no-'<' shortcut give what the full scans give."""
    from agen.gen.parse import _BOXED, _THINK_TAG, _last_box, _strip_think

    text = "".join(pieces)
    matches = list(_BOXED.finditer(text))
    last = _last_box(text)
    assert (last.span() if last else None) == (matches[-1].span() if matches else None)
    if "<" not in text:
        assert not _THINK_TAG.search(text) and _strip_think(text) == (text.strip(), False)


def _scanned_block(text, begin, end, what):  # the scanning version _one_block replaced, as the reference
    begins = begin.finditer(text)
    m = next(begins, None)
    if m is None:
        return ("no_answer_block" if what == "answer" else f"no_{what}"), None
    if next(begins, None) is not None:
        return f"multiple_{what}s", None
    first = end.search(text)
    if first is None:
        return f"unclosed_{what}", None
    if first.start() < m.end():
        return (f"unclosed_{what}" if end.search(text, m.end()) is None else f"multiple_{what}s"), None
    if end.search(text, first.end()) is not None:
        return f"multiple_{what}s", None
    return None, text[m.end() : first.start()]


_MARKER_PIECES = ["[New Question Begin]", "[ new  question begin ]", "[New Question End]", "[NEW QUESTION END]",
                  "[Final Answer to New Question Begin]", "[Final Answer to New Question End]", "[", "]", "[[",
                  "[New Question", " Begin]", "q", " ", "\n", "\\boxed{1}", "[x]"]


@given(st.lists(st.sampled_from(_MARKER_PIECES), max_size=12))
def test_marker_matches_at_brackets_agree_with_the_scans(pieces: list[str]) -> None:
    """Matching the markers only where the text has a `[` finds the block (or the failure) that
    scanning the whole text for each marker finds."""
    from agen.gen.parse import _A_BEGIN, _A_END, _Q_BEGIN, _Q_END, _brackets, _one_block

    text = "".join(pieces)
    for begin, end, what in ((_Q_BEGIN, _Q_END, "question"), (_A_BEGIN, _A_END, "answer")):
        got = _one_block(text, begin, end, what, _brackets(text))
        have = (got.reason, None) if isinstance(got, ParseFailure) else (None, got)
        assert have == _scanned_block(text, begin, end, what), text
