"""`verify: choice` — multiple-choice questions: options in the question, the answer one option.

Options are lines `A) text`, `(A) text`, `A. text` or `A: text` (or inline `(A) … (B) …`),
lettered from A without gaps. A sample's answer (its last `\\boxed{}`, else a final
`Answer: …` line) is normalised to an option letter: `B`, `(B)`, `B)`, `b`, `Option B`,
`B) <B's text>` and B's text itself all give `B`; a letter whose text names another option, or
text that is no option, gives a vote of its own that agrees with nothing. The vote needs a true
majority of samples (see `Verifier.min_share_floor`): solvers split evenly between two options,
or spread over several, reject the question, and a tie always rejects. A won vote is still
rejected as a `split` when the runner-up option has at least half the candidate's votes: a
question with two defensible options splits its solvers roughly evenly, and one of the two
reaching a bare majority by chance is no evidence it is the only right one. (The split is judged
on the samples drawn, so with early stopping it can differ from what all K would show.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agen.gen.answers import answer_key, is_numeric_key
from agen.gen.parse import Candidate, ParseFailure, extract_boxed, parse_generation, solution_answer, strip_think
from agen.verify.base import AnswerClassesLike, KeyClasses, Verifier

__all__ = ["ChoiceVerifier", "normalize_choice", "parse_options"]

_LINE_OPTION = re.compile(r"^[ \t]*\(?([A-J])[\).:][ \t]+(\S.*?)[ \t]*$", re.M)
_INLINE_OPTION = re.compile(r"\(([A-J])\)[ \t]*")
_LETTER = re.compile(r"^\(?\s*([A-Ja-j])\s*[\).:]?$")
_LETTER_AND_TEXT = re.compile(r"^\(?([A-Ja-j])[\).:]\s*(\S.*)$", re.S)
_PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*", re.I)
_ANSWER_LINE = re.compile(r"^\s*(?:final\s+)?answer\s*(?:is)?\s*[:\-]\s*(.+?)\s*$", re.I | re.M)
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
INVALID = "?"  # prefix of a vote that names no option


def parse_options(question: str) -> dict[str, str] | None:
    """The question's options, letter → text, or None unless they run A, B, C, … without gaps."""
    found = _LINE_OPTION.findall(question)
    if len(found) < 2:
        parts = _INLINE_OPTION.split(question)
        found = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
    if len(found) < 2:
        return None
    letters = [letter for letter, _ in found]
    if letters != [chr(ord("A") + i) for i in range(len(letters))]:
        return None
    return {letter: text for letter, text in found}


def _canon(text: str) -> object:
    """Option text compared loosely: case, spacing, `$`, `\\text{}` and a final period ignored;
    plain numbers compared by value (`0.5` is `1/2`)."""
    s = _TEXT_CMD.sub(lambda m: m.group(1), text).replace("$", "").strip().rstrip(".").strip()
    key = answer_key(s)
    if is_numeric_key(key):
        return key
    return " ".join(s.lower().split())


def _letter_of_text(text: str, options: dict[str, str]) -> str | None:
    c = _canon(text)
    hits = [letter for letter, opt in options.items() if _canon(opt) == c]
    return hits[0] if len(hits) == 1 else None


def _unwrap(s: str) -> str:
    s = s.strip()
    changed = True
    while changed:
        changed = False
        for left, right in (("$", "$"), ("\\(", "\\)"), ("{", "}"), ("**", "**")):
            if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s, changed = s[len(left):-len(right)].strip(), True
        m = _TEXT_CMD.fullmatch(s)
        if m:
            s, changed = m.group(1).strip(), True
        if s.startswith(("\\boxed", "\\fbox")) and s.endswith("}"):
            inner = extract_boxed(s)
            if inner is not None:
                s, changed = inner.strip(), True
    return s


def normalize_choice(answer: str | None, options: dict[str, str]) -> str | None:
    """The option letter an answer names, `?<text>` if it names none, None if it is blank."""
    if answer is None or not answer.strip():
        return None
    s = _PREFIX.sub("", _unwrap(answer)).strip().rstrip(".").strip()
    m = _LETTER.match(s)
    if m and m.group(1).upper() in options:
        return m.group(1).upper()
    m = _LETTER_AND_TEXT.match(s)
    if m and m.group(1).upper() in options:
        letter = m.group(1).upper()
        by_text = _letter_of_text(m.group(2), options)
        if by_text in (None, letter):
            return letter
        return INVALID + " ".join(s.lower().split())  # "B) <C's text>": names two options
    by_text = _letter_of_text(s, options)
    return by_text if by_text is not None else INVALID + " ".join(s.lower().split())


def sample_answer(text: str) -> str | None:
    """A solver's stated answer: its last box, else its last `Answer: …` line."""
    boxed = solution_answer(text)
    if boxed is not None:
        return boxed
    lines = _ANSWER_LINE.findall(strip_think(text))
    return lines[-1] if lines else None


class ChoiceVerifier(Verifier):
    domain = "choice"
    default_solve_template = "choice_solve.txt"
    min_share_floor = 0.5

    def parse(self, text: str) -> Candidate | ParseFailure:
        """The generic markers, then: the options parse and the stated answer is one of them."""
        cand = parse_generation(text)
        if isinstance(cand, ParseFailure):
            return cand
        options = parse_options(cand.question)
        if options is None:
            return ParseFailure("no_options")
        if len({_canon(t) for t in options.values()}) < len(options):
            return ParseFailure("duplicate_options")
        letter = normalize_choice(cand.answer, options)
        if letter is None or letter.startswith(INVALID):
            return ParseFailure("answer_not_an_option")
        return Candidate(question=cand.question, answer=letter)

    async def votes(self, question: str, texts: Sequence[str]) -> list[str | None]:
        options = parse_options(question) or {}
        return [normalize_choice(sample_answer(t), options) for t in texts]

    def classes(self, question: str, answer: str) -> AnswerClassesLike:
        return KeyClasses(normalize_choice(answer, parse_options(question) or {}) or answer)

    def split(self, class_counts: Sequence[int]) -> bool:
        return 2 * max(class_counts[1:], default=0) >= class_counts[0]

    @staticmethod
    def same(question: str, a: str, b: str) -> bool:
        """Whether two answers name the same option of `question` (for tables and tests)."""
        options = parse_options(question) or {}
        na, nb = normalize_choice(a, options), normalize_choice(b, options)
        return na is not None and na == nb and not na.startswith(INVALID)
