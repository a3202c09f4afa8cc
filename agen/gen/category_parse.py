"""The eight prompt categories of CoT-Self-Instruct's open-ended path, and parsing a classifier's reply.

Open-ended generation shows two seed prompts *of one category* (arXiv 2507.23751 §3.2), so
each seed needs a category. The shipped Self-Instruct seeds (data/self_instruct_seeds.jsonl,
175 rows) have none: the pipeline classifies each seed with one cheap call rendered from
`configs/templates/classify_category.txt` and parses the reply with `parse_category`.

`guess_category` is a keyword heuristic. It is **not** a substitute for the classification
call; it is only the fallback for a reply that does not parse (so one malformed reply does not
drop a seed), and callers should count how often it was used.
"""

from __future__ import annotations

import hashlib
import re

from agen.gen.parse import strip_think

__all__ = ["CATEGORIES", "CATEGORY_KEYS", "category_cache_key", "display_name", "guess_category",
           "parse_category", "self_instruct_prompt"]

# Stable snake_case key -> the display name the classification template lists.
CATEGORIES: dict[str, str] = {
    "writing_storytelling": "Writing & Storytelling",
    "technical_programming": "Technical & Programming",
    "creative_design": "Creative & Design",
    "data_analysis": "Data & Analysis",
    "education_research": "Education & Research",
    "communication_support": "Communication & Support",
    "business_marketing": "Business & Marketing",
    "miscellaneous": "Miscellaneous",
}
CATEGORY_KEYS: tuple[str, ...] = tuple(CATEGORIES)

_NON_WORD = re.compile(r"[^a-z0-9]+")
_CATEGORY_LINE = re.compile(r"category\s*[:：]\s*(.+)", re.IGNORECASE)


def _norm(text: str) -> str:
    """Lower case, '&' and '/' read as 'and', punctuation and markdown dropped, single spaces."""
    t = text.lower().replace("&", " and ").replace("/", " and ").replace("+", " and ")
    return " ".join(_NON_WORD.sub(" ", t).split())


_BY_NORM: dict[str, str] = {}
for _key, _name in CATEGORIES.items():
    _BY_NORM[_norm(_name)] = _key
    _BY_NORM[_norm(_key.replace("_", " "))] = _key  # "writing storytelling"
    _BY_NORM[_norm(_key.replace("_", " and "))] = _key  # "writing and storytelling"
_BY_NORM["misc"] = "miscellaneous"
_BY_NORM["other"] = "miscellaneous"
# First words are unique across the eight names, so "Writing" alone is unambiguous.
_BY_FIRST: dict[str, str] = {_norm(name).split()[0]: key for key, name in CATEGORIES.items()}


def display_name(key: str) -> str:
    """The display name of a category key ("data_analysis" -> "Data & Analysis")."""
    return CATEGORIES[key]


def _match(value: str) -> str | None:
    v = _norm(value)
    if not v:
        return None
    if v in _BY_NORM:
        return _BY_NORM[v]
    for norm, key in _BY_NORM.items():  # "writing and storytelling category", "data and analysis tasks"
        if v.startswith(norm + " "):
            return key
    first = v.split()[0]
    return _BY_FIRST.get(first)


def parse_category(text: str) -> str | None:
    """The category key in a classifier's reply, or None if it names none.

    Accepted: the last `Category: <name>` line after `<think>` is stripped (any case, `&` or
    `and`, surrounding `**`, quotes, brackets or a trailing period), or a reply that is just
    a name or key. A name is matched exactly, as a prefix ("Data & Analysis tasks"), or by its
    first word ("Writing"), which is unique among the eight.
    """
    body = strip_think(text)
    lines = [m.group(1) for m in _CATEGORY_LINE.finditer(body)]
    if lines:
        return _match(lines[-1].splitlines()[0])
    stripped = body.strip()
    if stripped and "\n" not in stripped and len(stripped) <= 60:
        return _match(stripped)
    return None


# Fallback keywords: whole words (or word prefixes ending in '*') that suggest a category.
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "writing_storytelling": ("story", "stories", "poem*", "haiku", "essay*", "narrat*", "rewrite", "paraphrase",
                             "sentence*", "paragraph*", "fiction", "character*", "novel", "lyrics", "limerick",
                             "title", "headline", "tweet", "write", "letter", "proofread*", "grammar"),
    "technical_programming": ("code", "coding", "program*", "python", "java*", "sql", "function*", "algorithm*",
                              "debug*", "software", "api", "regex", "compile*", "bug", "script", "html", "css",
                              "database", "linux", "math*", "equation*", "calculat*", "compute"),
    "creative_design": ("brainstorm*", "creative", "design*", "logo", "slogan*", "name*", "invent*", "idea*",
                        "recipe*", "game*", "art", "drawing", "color*", "colour*", "costume", "decorat*",
                        "imagine", "riddle*", "joke*"),
    "data_analysis": ("data", "dataset", "table*", "chart*", "statistic*", "analy*", "compare", "comparison",
                      "classify", "extract", "sort", "rank*", "count", "average", "numbers", "list", "pairs",
                      "categor*", "spreadsheet", "survey"),
    "education_research": ("explain*", "teach*", "learn*", "student*", "history", "historical", "science",
                           "scientific", "research*", "concept*", "theory", "definition", "define", "idiom*",
                           "summar*", "lesson*", "study", "quiz", "fact*", "why", "biology", "physics"),
    "communication_support": ("email*", "reply", "respond", "response", "advice", "help", "customer*",
                              "support", "apolog*", "conversation*", "interview*", "friend*", "feel*",
                              "relationship*", "complain*", "message", "dialogue", "situation"),
    "business_marketing": ("business*", "market*", "product*", "sales", "sell*", "brand*", "advertis*", "ad",
                           "company", "companies", "startup*", "customer", "strategy", "budget", "finance*",
                           "invest*", "price*", "career*", "resume", "job", "pitch", "revenue"),
}
_WORD = re.compile(r"[a-z]+")


def guess_category(text: str) -> str:
    """A keyword guess at a prompt's category; "miscellaneous" when no keyword hits.

    Fallback only (see the module docstring). Ties go to the category listed first.
    """
    words = _WORD.findall(text.lower())
    best, best_hits = "miscellaneous", 0
    for key, kws in _KEYWORDS.items():
        hits = 0
        for kw in kws:
            if kw.endswith("*"):
                stem = kw[:-1]
                hits += sum(1 for w in words if w.startswith(stem))
            else:
                hits += words.count(kw)
        if hits > best_hits:
            best, best_hits = key, hits
    return best


def category_cache_key(prompt: str, template_text: str, model: str) -> str:
    """Cache key of one classification: the prompt, the template and the wire model.

    The run directory caches classifications under this key, so changing the template or
    the classifier invalidates them, and a resumed run pays for no seed twice.
    """
    h = hashlib.blake2b(digest_size=12)
    for part in (model, template_text, prompt):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def self_instruct_prompt(instruction: str, instances: list[dict[str, str]] | None = None) -> str:
    """A Self-Instruct seed as one prompt: the instruction, then its first instance's input, if any.

    125 of the 175 seeds need their input ("Generate a haiku using the following word:" is
    unanswerable without the word). data/self_instruct_prompts.jsonl is this, precomputed.
    """
    text = instruction.strip()
    inp = ""
    if instances:
        first = instances[0]
        inp = (first.get("input") or "").strip() if isinstance(first, dict) else ""
    return f"{text}\n\n{inp}" if inp else text
