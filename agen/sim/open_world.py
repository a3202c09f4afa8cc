"""The simulator's open-ended world: prompts with a hidden quality, responses, judges and rewards.

Like `agen.sim.world` for arithmetic, everything hidden is recomputed from the text alone, so
the server needs no memory and tests can score what any client kept:

* A **prompt** is built from a small grammar per category: a task phrase x a topic, then 0–4
  constraint sentences, or (less often from a skilled model) a vague phrasing.
  `prompt_quality(text)` = a hash-derived base (the unobservable part of quality) + a bonus per
  constraint sentence present + a bonus for a specific task phrase − a penalty for a vague
  phrasing, clamped to [0, 1].
* A **response** to a prompt of quality q has a target quality r = 0.1 + 0.85 q + skill shift +
  noise, the noise wider for bad prompts (RIP's premise: bad prompts get erratic answers). It is
  written as points, `round(r x n)` of them concrete ("strong" openers) and the rest filler;
  more points for higher r, so good responses are longer. `response_quality(text)` reads the
  points back: strong share x sqrt(min(1, points / 5)).
* A **judge** scores round(1 + 9 x response_quality + N(0, judge_noise)) in 1..10, and sometimes
  (judge_malformed_p) writes no usable score line. A **reward model** gives
  8 x (response_quality − 0.5) + N(0, reward_noise), the noise seeded by the text (deterministic,
  as a real reward model is).
* **Categories** are read from the grammar's task phrases and topics, then from keywords.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re

from agen.sim.config import SimModel

__all__ = ["CATEGORY_NAMES", "classify_text", "generate_open_prompt", "judge_text", "prompt_quality", "respond",
           "response_quality", "reward_value"]

CATEGORY_NAMES: dict[str, str] = {
    "writing_storytelling": "Writing & Storytelling",
    "technical_programming": "Technical & Programming",
    "creative_design": "Creative & Design",
    "data_analysis": "Data & Analysis",
    "education_research": "Education & Research",
    "communication_support": "Communication & Support",
    "business_marketing": "Business & Marketing",
    "miscellaneous": "Miscellaneous",
}

# category -> (task phrases, topics); every task phrase and topic is unique across categories.
GRAMMAR: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "writing_storytelling": (
        ("Write a short story about", "Compose a poem about", "Write a personal essay about",
         "Write the opening scene of a novel about"),
        ("a lighthouse keeper who finds a message in a bottle", "the last day of summer in a small town",
         "a robot learning to paint", "two rivals stuck in an elevator", "a letter that arrives forty years late",
         "a grandmother's secret recipe book"),
    ),
    "technical_programming": (
        ("Write a Python function that", "Write a JavaScript function that", "Explain how to write a program that",
         "Design an efficient algorithm that"),
        ("finds the longest palindromic substring of a string", "merges overlapping time intervals",
         "detects a cycle in a directed graph", "returns the three most frequent words in a text",
         "validates an email address without a library", "rotates a square matrix by 90 degrees"),
    ),
    "creative_design": (
        ("Brainstorm ten names for", "Design a logo concept for", "Invent a board game inspired by",
         "Come up with a themed menu for"),
        ("a café that doubles as a plant nursery", "a festival celebrating old maps", "a space-themed birthday party",
         "a zero-waste picnic", "a museum of forgotten inventions", "a night market for local artists"),
    ),
    "data_analysis": (
        ("Analyze the trend in", "Compute summary statistics for", "Build a comparison table from",
         "Identify the outliers in"),
        ("these monthly website visits: Jan 1200, Feb 950, Mar 1430, Apr 1310, May 1620",
         "these quarterly sales in thousands of dollars: Q1 120, Q2 95, Q3 143, Q4 131",
         "these test scores: Ana 78, Ben 91, Caro 85, Dev 62, Eli 88, Fay 97",
         "these commute times in minutes: 34, 41, 29, 55, 38, 47, 120",
         "these daily temperatures in Celsius: 18, 21, 19, 25, 31, 17, 20"),
    ),
    "education_research": (
        ("Explain to a high-school student", "Summarize the key ideas behind", "Write a study guide on",
         "Describe the scientific evidence for"),
        ("how vaccines train the immune system", "the causes of the French Revolution", "how photosynthesis works",
         "why the sky is blue", "how compound interest grows savings", "plate tectonics and earthquakes"),
    ),
    "communication_support": (
        ("Write a polite email to", "Draft a reply to", "Write a supportive message to",
         "Suggest how to respond to"),
        ("a landlord who has not fixed a broken heater for two weeks", "a colleague who keeps interrupting in meetings",
         "a customer whose order arrived damaged", "a friend who forgot your birthday",
         "a manager asking you to work this weekend", "a neighbor whose dog barks all night"),
    ),
    "business_marketing": (
        ("Write a marketing plan for", "Draft a sales pitch for", "Outline a pricing strategy for",
         "Write product copy for"),
        ("a subscription box of local coffee", "a budgeting app for students", "a mobile bike-repair service",
         "a line of reusable beeswax wraps", "a co-working space for parents", "a language-exchange platform"),
    ),
    "miscellaneous": (
        ("Plan a weekend itinerary for", "Give practical tips for", "Make a packing list for",
         "Create a checklist for"),
        ("a rainy weekend in Lisbon", "a first camping trip", "moving to a new city", "a family reunion",
         "a week without a smartphone", "hosting a board-game night"),
    ),
}
CONSTRAINTS = (
    "Keep it under 200 words.", "Write it for an audience of high-school students.",
    "Use a numbered list for the main points.", "Include two concrete examples.",
    "End with a one-sentence summary.", "Avoid technical jargon.", "Use a friendly but professional tone.",
    "Mention one common mistake to avoid.", "Give each section a short heading.",
    "Justify every recommendation in one sentence.",
)
VAGUE = ("Tell me something about {topic}.", "Write stuff about {topic}.", "Can you help with {topic} or whatever?",
         "Say anything you like about {topic}.")
VAGUE_MARKERS = ("Tell me something about", "Write stuff about", "or whatever?", "Say anything you like about")

_TASK_OF: dict[str, str] = {t: c for c, (tasks, _) in GRAMMAR.items() for t in tasks}
_TOPIC_OF: dict[str, str] = {t: c for c, (_, topics) in GRAMMAR.items() for t in topics}
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "writing_storytelling": ("story", "poem", "haiku", "essay", "novel", "write", "sentence", "title", "rewrite",
                             "paragraph", "letter", "tweet", "fiction", "character", "narrative"),
    "technical_programming": ("code", "python", "function", "program", "algorithm", "sql", "javascript", "debug",
                              "software", "bug", "regex", "compute", "math", "equation", "calculate"),
    "creative_design": ("brainstorm", "design", "logo", "invent", "idea", "ideas", "names", "game", "games", "recipe",
                        "menu", "creative", "slogan", "art", "party"),
    "data_analysis": ("data", "table", "statistics", "analyze", "analysis", "compare", "classify", "extract",
                      "sort", "chart", "numbers", "average", "trend", "pairs", "list"),
    "education_research": ("explain", "history", "science", "scientific", "student", "teach", "learn", "concept",
                           "study", "summarize", "idiom", "definition", "why", "research", "evidence"),
    "communication_support": ("email", "reply", "message", "advice", "friend", "colleague", "customer",
                              "interview", "respond", "apology", "situation", "conversation", "feel"),
    "business_marketing": ("marketing", "business", "product", "sales", "pitch", "pricing", "company", "brand",
                           "startup", "job", "career", "budget", "advertisement", "customers", "strategy"),
}
_WORD = re.compile(r"[a-z]+")


def _h(text: str) -> float:
    """A uniform draw in [0, 1) determined by the text."""
    d = hashlib.blake2b(text.encode(), digest_size=8, person=b"agen-open").digest()
    return int.from_bytes(d, "little") / 2.0**64


def classify_text(text: str) -> str:
    """The category key of a prompt (or of several seed prompts together): grammar phrases, then keywords."""
    votes: dict[str, int] = {}
    for phrase, cat in (*_TASK_OF.items(), *_TOPIC_OF.items()):
        if phrase in text:
            votes[cat] = votes.get(cat, 0) + 10
    words = _WORD.findall(text.lower())
    for cat, kws in _KEYWORDS.items():
        hits = sum(words.count(k) for k in kws)
        if hits:
            votes[cat] = votes.get(cat, 0) + hits
    if not votes:
        return "miscellaneous"
    return max(CATEGORY_NAMES, key=lambda c: votes.get(c, 0))  # ties: the category listed first


@functools.lru_cache(maxsize=32768)
def prompt_quality(text: str) -> float | None:
    """The hidden quality q in [0, 1] of a prompt, recomputed from its text; None for empty text.

    Works for any text (a foreign prompt just gets the hash base and whatever bonuses it
    happens to contain), so the sim can answer prompts it did not write.
    """
    t = text.strip()
    if not t:
        return None
    n_constraints = sum(1 for c in CONSTRAINTS if c in t)
    specific = any(t.startswith(task) for task in _TASK_OF)
    vague = any(m in t for m in VAGUE_MARKERS)
    q = 0.12 + 0.28 * _h(t) + 0.14 * min(n_constraints, 4) + (0.06 if specific else 0.0) - (0.30 if vague else 0.0)
    return min(1.0, max(0.0, q))


def generate_open_prompt(rng: random.Random, category: str, skill: float) -> str:
    """A new prompt in `category` (a CATEGORY_NAMES key); a higher skill writes fewer vague prompts
    and more constraints."""
    tasks, topics = GRAMMAR.get(category, GRAMMAR["miscellaneous"])
    topic = rng.choice(topics)
    if rng.random() < 0.05 + 0.35 * (1.0 - skill):
        return rng.choice(VAGUE).format(topic=topic)
    p = 0.15 + 0.5 * skill
    n = sum(rng.random() < p for _ in range(4))
    return " ".join([f"{rng.choice(tasks)} {topic}.", *rng.sample(CONSTRAINTS, n)])


# ---------------------------------------------------------------- responses

STRONG = ("Concretely,", "For example,", "Specifically,", "Step by step,", "In practice,", "A useful check:")
_STRONG_BODY = (
    "the {kw} part should be handled first, because it fixes a clear and checkable goal for everything after it.",
    "take {kw} and work through one realistic case from start to finish, noting each decision and why it was made.",
    "the request asks about {kw}, so each point below ties back to it with a precise, verifiable detail.",
    "compare two options for {kw}, state the trade-off in one sentence, and pick the one that fits the constraints.",
    "a common mistake with {kw} is skipping the edge cases, so list them and show how each one is covered.",
)
WEAK = ("It depends on many factors.", "There are various things to consider.", "This is a complex topic.",
        "Everyone has a different opinion.", "It is generally a good idea to think about it.")
_POINT = re.compile(r"^- (.*)$", re.M)


def _keywords(prompt: str) -> list[str]:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", prompt)]
    return words or ["the request"]


def respond(prompt: str, seed: int, cfg: SimModel) -> str:
    """One response to `prompt` (sample `seed`): its quality tracks the prompt's hidden quality."""
    rng = random.Random(seed)
    q = prompt_quality(prompt)
    q = 0.5 if q is None else q
    sigma = 0.05 + 0.30 * (1.0 - q)
    r = 0.1 + 0.85 * q + 0.3 * (cfg.open_skill - 0.6) + rng.gauss(0.0, sigma)
    r = min(1.0, max(0.0, r))
    n = max(1, 2 + round(7 * r) + rng.choice((-1, 0, 0, 1)))
    strong = min(n, round(r * n))
    kinds = [True] * strong + [False] * (n - strong)
    rng.shuffle(kinds)
    kws = _keywords(prompt)
    lines = [f"Here is my response to your request ({len(kws)} key terms noted)."]
    for is_strong in kinds:
        if is_strong:
            body = rng.choice(_STRONG_BODY).format(kw=rng.choice(kws).lower())
            lines.append(f"- {rng.choice(STRONG)} {body}")
        else:
            lines.append(f"- {rng.choice(WEAK)}")
    return "\n".join(lines)


def response_quality(response: str) -> float:
    """The hidden quality in [0, 1] of a response, read back from its points (0 if it has none)."""
    points = _POINT.findall(response)
    if not points:
        return 0.0
    strong = sum(1 for p in points if p.startswith(STRONG))
    return strong / len(points) * math.sqrt(min(1.0, len(points) / 5))


def judge_text(prompt: str, response: str, rng: random.Random, cfg: SimModel) -> str:
    """A judge's reasoning and final `Score: N` line; sometimes (judge_malformed_p) unusable."""
    rq = response_quality(response)
    score = int(min(10, max(1, round(1 + 9 * rq + rng.gauss(0.0, cfg.judge_noise)))))
    points = _POINT.findall(response)
    strong = sum(1 for p in points if p.startswith(STRONG))
    reasoning = (f"The response makes {len(points)} points, {strong} of them concrete and specific to the request. "
                 f"Helpfulness, correctness and depth follow from that; clarity is acceptable; "
                 f"instruction-following is {'good' if rq > 0.6 else 'partial'}.")
    if rng.random() < cfg.judge_malformed_p:
        kind = rng.randrange(3)
        if kind == 0:
            return reasoning + f"\nOverall I would rate it around {score} out of ten."
        if kind == 1:
            return reasoning + "\nScore: N/A"
        other = score - 2 if score > 2 else score + 2  # two final scores that disagree
        return reasoning + f"\nScore: {score}\nOn reflection, a stricter reading gives:\nScore: {other}"
    return f"{reasoning}\nScore: {score}"


def reward_value(model: str, prompt: str, response: str, cfg: SimModel) -> float:
    """A reward model's scalar for (prompt, response): deterministic in the text, like a real one."""
    rng = random.Random(f"{model}\x00{prompt}\x00{response}")
    return round(8.0 * (response_quality(response) - 0.5) + rng.gauss(0.0, cfg.reward_noise), 4)
