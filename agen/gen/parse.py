"""Parse model outputs: a proposer's question + boxed answer, a solver's final answer.

Parsing is strict on purpose: a generation that does not follow the template exactly is
rejected with a short, stable reason (counted in the run's stats) rather than guessed at, because
a mis-split question/answer pair costs a full vote and can poison the dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Candidate",
    "ParseFailure",
    "extract_boxed",
    "gsm8k_reference",
    "parse_generation",
    "parse_open_generation",
    "solution_answer",
    "split_generation",
    "strip_think",
]

_THINK_TAG = re.compile(r"<(/?)think\s*>", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")

_Q_BEGIN = re.compile(r"\[\s*New\s+Question\s+Begin\s*\]", re.IGNORECASE)
_Q_END = re.compile(r"\[\s*New\s+Question\s+End\s*\]", re.IGNORECASE)
_A_BEGIN = re.compile(r"\[\s*Final\s+Answer\s+to\s+New\s+Question\s+Begin\s*\]", re.IGNORECASE)
_A_END = re.compile(r"\[\s*Final\s+Answer\s+to\s+New\s+Question\s+End\s*\]", re.IGNORECASE)

_P_BEGIN = re.compile(r"\[\s*New\s+Prompt\s+Begin\s*\]", re.IGNORECASE)
_P_END = re.compile(r"\[\s*New\s+Prompt\s+End\s*\]", re.IGNORECASE)

_GSM8K_NUMBER = re.compile(r"####\s*(-?\s*[\d,]*\.?\d+)")
# The template's own placeholders, echoed back by a model that did not do the task.
_PLACEHOLDERS = frozenset({"your_generated_question", "{your_generated_question}"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """A proposed question and the proposer's own (boxed) answer, before any filter.

    Open-ended candidates have no answer: RIP judges the prompt by its responses instead.
    """

    question: str
    answer: str | None


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """Why a generation was rejected: a short snake_case reason, stable for stats keys."""

    reason: str


def _strip_think(text: str) -> tuple[str, bool]:
    """Return (text without reasoning, whether a `<think>` was left open)."""
    if "<" not in text:  # no tag can match: the common case, without a case-insensitive scan
        return text.strip(), False
    kept: list[str] = []
    depth = 0
    pos = 0
    for m in _THINK_TAG.finditer(text):
        if depth == 0:
            kept.append(text[pos : m.start()])
        if m.group(1):  # </think>
            if depth > 0:
                depth -= 1
            else:
                # A close with no open: the chat template opened <think> in the prompt, so
                # everything before it was reasoning.
                kept.clear()
        else:
            depth += 1
        pos = m.end()
    if depth == 0:
        kept.append(text[pos:])
    return "".join(kept).strip(), depth > 0


def strip_think(text: str) -> str:
    """Remove `<think>…</think>` reasoning so markers quoted while thinking are not parsed.

    A `</think>` with no opening tag drops everything before it (the template opened it). A
    `<think>` that never closes means the model ran out of tokens while thinking: everything
    from it on is dropped, which usually leaves no answer.
    """
    return _strip_think(text)[0]


def _last_box(text: str) -> re.Match[str] | None:
    """The last `_BOXED` match, found from the end (matches start with a backslash and hold no
    other, so they never overlap: the last match is the last place the pattern matches)."""
    end = len(text)
    while True:
        at = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if at < 0:
            return None
        m = _BOXED.match(text, at)
        if m is not None:
            return m
        end = at


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` / `\\fbox{…}`, braces balanced; None if absent/unbalanced.

    The last box is the final answer by convention. Escaped braces (`\\{`, `\\}`) do not count
    toward nesting, so `\\boxed{\\{1,2\\}}` gives `\\{1,2\\}`. An unbalanced last box is
    (almost always) a truncated output, so it yields None rather than an earlier box.
    """
    last = _last_box(text)
    if last is None:
        return None
    start = last.end()
    depth = 1
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
        i += 1
    return None


def _brackets(text: str) -> list[int]:
    """Where `text` has a `[`: every marker starts with one and holds no other, so matching each
    marker pattern at these places finds what scanning for it finds (a proposer's output has a
    handful of them: ~4x cheaper than a case-insensitive scan of the whole text per pattern)."""
    at: list[int] = []
    i = text.find("[")
    while i >= 0:
        at.append(i)
        i = text.find("[", i + 1)
    return at


def _matches_at(pattern: re.Pattern[str], text: str, brackets: list[int]) -> list[re.Match[str]]:
    found: list[re.Match[str]] = []
    for i in brackets:
        m = pattern.match(text, i)
        if m is not None:
            found.append(m)
    return found


def _one_block(text: str, begin: re.Pattern[str], end: re.Pattern[str], what: str,
               brackets: list[int]) -> str | ParseFailure:
    """The text between the one `begin` marker and the `end` after it (`brackets`: `_brackets(text)`).
    Two matches of one marker never overlap, so the ends after a match are the later ones found."""
    begins = _matches_at(begin, text, brackets)
    if not begins:
        return ParseFailure("no_answer_block" if what == "answer" else f"no_{what}")
    if len(begins) > 1:
        return ParseFailure(f"multiple_{what}s")
    m = begins[0]
    ends = _matches_at(end, text, brackets)
    if not ends:
        return ParseFailure(f"unclosed_{what}")
    first = ends[0]
    if first.start() < m.end():  # an end before the begin: the block needs another after it
        if any(e.start() >= m.end() for e in ends):
            return ParseFailure(f"multiple_{what}s")
        return ParseFailure(f"unclosed_{what}")
    if len(ends) > 1:
        return ParseFailure(f"multiple_{what}s")
    return text[m.end() : first.start()]


def parse_generation(text: str) -> Candidate | ParseFailure:
    """Split a proposer's output into a Candidate, or say why it does not follow the template.

    Reasons: `unclosed_think`, `no_question`, `multiple_questions`, `unclosed_question`,
    `empty_question`, `answer_inside_question`, `placeholder_question`, `no_answer_block`,
    `multiple_answers`, `unclosed_answer`, `no_boxed_answer`, `empty_answer`.
    """
    parts = split_generation(text)
    if isinstance(parts, ParseFailure):
        return parts
    question, block = parts
    answer = extract_boxed(block)
    if answer is None:
        return ParseFailure("no_boxed_answer")
    if not answer or answer.lower() in {"your_final_answer", "{your_final_answer}"}:
        return ParseFailure("empty_answer")
    return Candidate(question=question, answer=answer)


def split_generation(text: str) -> tuple[str, str] | ParseFailure:
    """The question and the raw final-answer block of a proposer's output (every check of
    `parse_generation` but the box), for domains whose answer is not boxed (code)."""
    body, open_think = _strip_think(text)
    brackets = _brackets(body)
    question = _one_block(body, _Q_BEGIN, _Q_END, "question", brackets)
    if isinstance(question, ParseFailure):
        if open_think and question.reason == "no_question":
            return ParseFailure("unclosed_think")
        return question
    question = question.strip()
    if not question:
        return ParseFailure("empty_question")
    if "[" in question and (_A_BEGIN.search(question) or _A_END.search(question)):
        return ParseFailure("answer_inside_question")
    if question.lower() in _PLACEHOLDERS:
        return ParseFailure("placeholder_question")
    block = _one_block(body, _A_BEGIN, _A_END, "answer", brackets)
    if isinstance(block, ParseFailure):
        return block
    return question, block


def parse_open_generation(text: str) -> Candidate | ParseFailure:
    """The one step-3 prompt of an open-ended generation, between `[New Prompt Begin/End]`.

    Reasons: `unclosed_think`, `no_prompt`, `multiple_prompts`, `unclosed_prompt`, `empty_prompt`,
    `placeholder_prompt`.
    """
    body, open_think = _strip_think(text)
    prompt = _one_block(body, _P_BEGIN, _P_END, "prompt", _brackets(body))
    if isinstance(prompt, ParseFailure):
        return ParseFailure("unclosed_think") if open_think and prompt.reason == "no_prompt" else prompt
    prompt = prompt.strip()
    if not prompt:
        return ParseFailure("empty_prompt")
    if prompt.lower().strip("{}") in {"your_generated_prompt", "new_prompt", "your_new_prompt"}:
        return ParseFailure("placeholder_prompt")
    return Candidate(question=prompt, answer=None)


def solution_answer(text: str) -> str | None:
    """A solver's final answer: the last box outside its reasoning; None if it gave none."""
    return extract_boxed(strip_think(text))


def gsm8k_reference(answer_field: str) -> str | None:
    """GSM8K's reference answer: the number after `####`, thousands separators removed."""
    m = _GSM8K_NUMBER.search(answer_field)
    if m is None:
        return None
    return m.group(1).replace(",", "").replace(" ", "")
