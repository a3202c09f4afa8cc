"""The simulator's open-ended world: prompts with a hidden quality, responses, judges and rewards.

Like `agen.sim.world` for arithmetic, everything hidden is recomputed from the text alone, so
the server needs no memory and tests can score what any client kept:

* A **prompt** is built from a grammar per category: a task phrase (8 per category) x a topic
  (a head x a tail, 12 x 10-12 per category; for data analysis a labelled series of fresh
  numbers), then, 70% of the time, a sentence saying what it is for (20 purposes, no quality),
  then 0–4 constraint sentences drawn from 14 templates with one filled slot each (4–17 values);
  or (less often from a skilled model) a vague phrasing of the topic. The grammar is large enough
  that a cheap model writing ~100 prompts in one category repeats itself (ROUGE-L >= 0.7 to an
  earlier prompt) only a few percent of the time, as real amplification does.
  `prompt_quality(text)` = a hash-derived base (the unobservable part of quality) + a bonus per
  constraint template present (matched by regex, so any slot value counts) + a bonus for a
  specific task phrase − a penalty for a vague phrasing, clamped to [0, 1].
* A **response** to a prompt of quality q has a target quality r = 0.1 + 0.85 q + skill shift +
  noise, the noise wider for bad prompts (RIP's premise: bad prompts get erratic answers; with
  `open_quality_link` < 1 q is first pulled towards a typical 0.5, and at 0 the response ignores
  the prompt's quality). It is written as points, `round(r x n)` of them concrete ("strong"
  openers) and the rest filler;
  more points for higher r, so good responses are longer. `response_quality(text)` reads the
  points back: strong share x sqrt(min(1, points / 5)).
* A **judge** scores round(1 + 9 x response_quality + N(0, judge_noise)) in 1..10, and sometimes
  (judge_malformed_p) writes no usable score line. A **reward model** gives
  8 x (response_quality − 0.5) + N(0, reward_noise), the noise seeded by the text (deterministic,
  as a real reward model is).
* **Categories** (the eight of `agen.gen.category_parse`, whose display names the classifier
  template lists) are read from the grammar's task phrases and topics, then from keywords.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re

from agen.gen.category_parse import CATEGORIES
from agen.sim.config import SimModel

__all__ = ["CONSTRAINTS", "GRAMMAR", "TOPIC_OF", "classify_text", "count_constraints",
           "generate_open_prompt", "judge_text", "open_topic", "prompt_quality", "render_constraint", "respond",
           "response_quality", "reward_value"]

# category -> (task phrases, topic heads, topic tails). A topic is "head tail" (data_analysis:
# "these {head}: {numbers}", the numbers drawn fresh). Task phrases and tails are unique across
# categories (tested), and so are heads except the generic people of communication_support.
GRAMMAR: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "writing_storytelling": (
        ("Write a short story about", "Compose a poem about", "Write a personal essay about",
         "Write the opening scene of a novel about", "Write a fable about", "Write a screenplay scene about",
         "Write a bedtime story about", "Write a dramatic monologue about"),
        ("a retired lighthouse keeper", "a shy violinist", "a robot gardener", "a stubborn grandmother",
         "a proud rival baker", "a lost mail carrier", "a young astronaut", "a night-shift nurse",
         "a travelling magician", "an old ferry captain", "a teenage chess prodigy", "a retired spy"),
        ("who finds a message in a bottle", "who receives a letter forty years late", "who secretly learns to paint",
         "stuck in an elevator on a holiday eve", "who loses the last copy of a family recipe",
         "who discovers a door that was not there yesterday", "keeping a promise made in childhood",
         "who wakes up speaking a forgotten language", "who inherits a clock that runs backwards",
         "on the last day of summer in a small town", "during a blackout on a night train",
         "who must win a baking contest to save a shop"),
    ),
    "technical_programming": (
        ("Write a Python function that", "Write a JavaScript function that", "Explain how to write a program that",
         "Design an efficient algorithm that", "Write a Rust function that", "Write a Go function that",
         "Write unit tests for a function that", "Write a C++ function that"),
        ("finds the longest palindromic substring of a string", "merges overlapping time intervals",
         "detects a cycle in a directed graph", "returns the three most frequent words in a text",
         "validates an email address", "rotates a square matrix by 90 degrees",
         "computes the edit distance between two strings", "removes duplicate records from a log",
         "finds the median of two sorted arrays", "checks whether brackets are balanced",
         "groups anagrams from a word list", "finds the shortest path in a weighted grid"),
        ("in linear time", "using constant extra memory", "without any third-party library",
         "and handles empty input gracefully", "with type hints and docstrings",
         "for inputs of up to ten million items", "and logs each step for debugging", "using only recursion",
         "in a single pass over the input", "and runs safely from several threads"),
    ),
    "creative_design": (
        ("Brainstorm ten names for", "Design a logo concept for", "Invent a board game inspired by",
         "Come up with a themed menu for", "Sketch a poster idea for", "Propose a color palette for",
         "Design a mascot for", "Plan the decorations for"),
        ("a neighborhood café", "a rooftop festival", "a children's museum", "a pop-up bookstore",
         "a community garden", "a lantern-lit night market", "a weekend science fair", "a boutique hotel",
         "a bike-repair collective", "a vinyl record shop", "an indie podcast", "a charity fun run"),
        ("that doubles as a plant nursery", "celebrating old maps", "with a space-age theme",
         "with a zero-waste picnic theme", "inspired by forgotten inventions", "with a 1980s arcade theme",
         "inspired by deep-sea creatures", "celebrating local folk music", "with a winter solstice theme",
         "inspired by woodblock prints", "with a circus theme", "inspired by desert wildflowers"),
    ),
    "data_analysis": (
        ("Analyze the trend in", "Compute summary statistics for", "Build a comparison table from",
         "Identify the outliers in", "Calculate the percentage changes in", "Write a short data report on",
         "Find the best and worst periods in", "Estimate the next value in"),
        ("monthly website visits", "quarterly sales in thousands of dollars", "weekly test scores",
         "commute times in minutes", "daily temperatures in Celsius", "monthly electricity bills in dollars",
         "daily step counts", "weekly support tickets", "monthly rainfall in millimeters",
         "daily coffee shop orders", "hourly server response times in milliseconds", "yearly bicycle sales"),
        (),
    ),
    "education_research": (
        ("Explain to a high-school student", "Summarize the key ideas behind", "Write a study guide on",
         "Describe the scientific evidence for", "Create a lesson plan about", "Write quiz questions about",
         "Compare competing explanations of", "Outline a research question about"),
        ("how vaccines train the immune system", "the causes of the French Revolution", "how photosynthesis works",
         "why the sky is blue", "how compound interest grows savings", "plate tectonics and earthquakes",
         "how the printing press spread ideas", "the water cycle", "how neurons transmit signals",
         "the fall of the Roman Republic", "how black holes form", "how honeybees communicate"),
        ("with one worked example", "and the open questions that remain", "and how it was first measured",
         "through one famous experiment", "as it was understood a century ago", "and its most common misconception",
         "with a diagram described in words", "and why it matters today", "in three levels of detail",
         "through the story of its discovery"),
    ),
    "communication_support": (
        ("Write a polite email to", "Draft a reply to", "Write a supportive message to",
         "Suggest how to respond to", "Write a short text message to", "Role-play a conversation with",
         "Write an apology to", "Give advice on talking to"),
        ("a landlord", "a colleague", "a customer", "a friend", "a manager", "a neighbor", "a teacher",
         "a sibling", "a client", "a roommate", "a team member", "an old mentor"),
        ("who has not fixed a broken heater for two weeks", "who keeps interrupting in meetings",
         "whose order arrived damaged", "who forgot your birthday", "who asks you to work this weekend",
         "whose dog barks all night", "who missed an important deadline", "who borrowed money months ago",
         "who gave you harsh feedback", "who wants to cancel a long contract", "who is moving abroad next month",
         "who took credit for your idea"),
    ),
    "business_marketing": (
        ("Write a marketing plan for", "Draft a sales pitch for", "Outline a pricing strategy for",
         "Write product copy for", "Write a launch announcement for", "Plan a social media campaign for",
         "Write an investor summary for", "Identify target customers for"),
        ("a subscription box of local coffee", "a budgeting app", "a mobile bike-repair service",
         "a line of reusable beeswax wraps", "a co-working space", "a language-exchange platform",
         "a meal-kit delivery service", "a handmade ceramics shop", "a pet-sitting marketplace",
         "a solar phone charger", "a small accounting firm", "an indoor climbing gym"),
        ("aimed at university students", "aimed at busy parents", "aimed at retirees",
         "in a mid-sized European city", "launching next spring", "with a launch budget of five thousand dollars",
         "competing with two large chains", "aimed at remote workers", "in a rural town",
         "aimed at small restaurants"),
    ),
    "miscellaneous": (
        ("Plan a weekend itinerary for", "Give practical tips for", "Make a packing list for",
         "Create a checklist for", "Plan the spending for", "Suggest a daily routine for",
         "Write house rules for", "Make a shopping list for"),
        ("a rainy weekend in Lisbon", "a first camping trip", "moving to a new city", "a family reunion",
         "a week without a smartphone", "hosting a board-game night", "a road trip through Scotland",
         "a ski holiday", "a garage sale", "a toddler's first flight", "training for a 10k run",
         "a kitchen renovation"),
        ("with two children", "on a tight budget", "for a group of eight", "with a dog", "in the middle of winter",
         "for someone who uses a wheelchair", "with only one day to prepare", "for a vegetarian family",
         "during a heat wave", "with no car"),
    ),
}
_DATA_LABELS = (
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug"), ("Q1", "Q2", "Q3", "Q4"),
    ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), ("Ana", "Ben", "Caro", "Dev", "Eli", "Fay", "Gus"),
    ("week 1", "week 2", "week 3", "week 4", "week 5", "week 6"), ("2018", "2019", "2020", "2021", "2022", "2023"),
)
# Constraint sentences: a template and the values of its one slot. prompt_quality counts how many
# distinct templates a text contains (each compiled to a regex), so it stays computable from the text.
CONSTRAINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Keep it under {} words.", tuple(str(n) for n in range(80, 420, 20))),
    ("Write it for an audience of {}.", ("high-school students", "busy executives", "complete beginners",
                                         "retired engineers", "first-year nursing students", "non-native speakers",
                                         "parents of young children", "skeptical readers", "domain experts",
                                         "ten-year-olds", "new employees", "museum visitors")),
    ("Use a numbered list for the {}.", ("main points", "key steps", "recommendations", "open questions",
                                         "examples", "risks", "trade-offs")),
    ("Include {} concrete examples.", ("two", "three", "four", "five", "six")),
    ("End with a one-sentence {}.", ("summary", "takeaway", "question for the reader", "call to action",
                                     "word of warning", "personal reflection")),
    ("Avoid {} throughout.", ("technical jargon", "clichés", "the passive voice", "exclamation marks",
                              "rhetorical questions", "brand names", "long sentences", "filler words")),
    ("Use a {} tone.", ("friendly but professional", "warm", "formal", "playful", "calm and reassuring",
                        "confident", "neutral", "gently humorous")),
    ("Mention one common mistake that {} make.", ("beginners", "experts", "most people", "first-timers",
                                                  "managers", "students", "small teams")),
    ("Give each {} a short heading.", ("section", "paragraph", "step", "idea", "part")),
    ("Justify every {} in one sentence.", ("recommendation", "claim", "choice", "step", "estimate")),
    ("Format the answer as {}.", ("a two-column layout", "a short FAQ", "a dialogue", "a letter",
                                  "a slide outline", "a timeline", "questions and answers")),
    ("Assume the reader has {} to read it.", ("only two minutes", "five minutes", "half an hour",
                                              "one coffee break")),
    ("Refer to {} at least once.", ("a real statistic", "a historical example", "a well-known study",
                                    "a personal anecdote", "an expert opinion", "a counterexample")),
    ("Split the answer into {} parts.", ("two", "three", "four", "five")),
)
_CONSTRAINT_RE = tuple(re.compile(re.escape(t).replace(re.escape("{}"), r"[\w$%' -]+?")) for t, _ in CONSTRAINTS)
# An optional sentence saying what the answer is for: context, not a constraint (it adds no quality).
PURPOSES = ("a school newsletter", "my team's wiki", "a community radio show", "a birthday surprise", "a weekly blog",
            "a club meeting", "a family group chat", "a library display", "a volunteer orientation",
            "a podcast episode", "a workshop handout", "a neighborhood bulletin board", "a class presentation",
            "an evening course", "a holiday card", "a retirement party", "a grant proposal", "a town hall meeting",
            "a staff training day", "a travel diary")
VAGUE = ("Tell me something about {topic}.", "Write stuff about {topic}.", "Can you help with {topic} or whatever?",
         "Say anything you like about {topic}.", "Just do something with {topic}, I guess.",
         "Thoughts about {topic}, anything goes.")
VAGUE_MARKERS = ("Tell me something about", "Write stuff about", "or whatever?", "Say anything you like about",
                 ", I guess.", "anything goes.")

_TASK_OF: dict[str, str] = {t: c for c, (tasks, _, _) in GRAMMAR.items() for t in tasks}
TOPIC_OF: dict[str, str] = {
    t: c for c, (_, heads, tails) in GRAMMAR.items() for t in (*tails, *(heads if c != "communication_support" else ()))
}
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
    for phrase, cat in (*_TASK_OF.items(), *TOPIC_OF.items()):
        if phrase in text:
            votes[cat] = votes.get(cat, 0) + 10
    words = _WORD.findall(text.lower())
    for cat, kws in _KEYWORDS.items():
        hits = sum(words.count(k) for k in kws)
        if hits:
            votes[cat] = votes.get(cat, 0) + hits
    if not votes:
        return "miscellaneous"
    return max(CATEGORIES, key=lambda c: votes.get(c, 0))  # ties: the category listed first


@functools.lru_cache(maxsize=32768)
def prompt_quality(text: str) -> float | None:
    """The hidden quality q in [0, 1] of a prompt, recomputed from its text; None for empty text.

    Works for any text (a foreign prompt just gets the hash base and whatever bonuses it
    happens to contain), so the sim can answer prompts it did not write.
    """
    t = text.strip()
    if not t:
        return None
    n_constraints = count_constraints(t)
    specific = any(t.startswith(task) for task in _TASK_OF)
    vague = any(m in t for m in VAGUE_MARKERS)
    q = 0.12 + 0.28 * _h(t) + 0.14 * min(n_constraints, 4) + (0.06 if specific else 0.0) - (0.30 if vague else 0.0)
    return min(1.0, max(0.0, q))


def count_constraints(text: str) -> int:
    """How many of the grammar's constraint templates `text` contains (each counted once)."""
    return sum(1 for rx in _CONSTRAINT_RE if rx.search(text))


def render_constraint(rng: random.Random, index: int) -> str:
    """Constraint template `index` with its slot filled at random."""
    template, values = CONSTRAINTS[index]
    return template.format(rng.choice(values))


def open_topic(rng: random.Random, category: str) -> str:
    """A topic of `category`: head + tail, or for data_analysis a labelled series of fresh numbers."""
    _, heads, tails = GRAMMAR.get(category, GRAMMAR["miscellaneous"])
    head = rng.choice(heads)
    if not tails:
        labels = rng.choice(_DATA_LABELS)
        n = rng.randint(min(4, len(labels)), len(labels))
        scale = rng.choice((10, 50, 100, 1000, 5000))
        values = [round(scale * rng.uniform(0.5, 2.0)) for _ in range(n)]
        return f"these {head}: " + ", ".join(f"{lab} {v}" for lab, v in zip(labels, values))
    return f"{head} {rng.choice(tails)}"


def generate_open_prompt(rng: random.Random, category: str, skill: float) -> str:
    """A new prompt in `category` (a key of `agen.gen.category_parse.CATEGORIES`); a higher skill writes
    fewer vague prompts and more constraints."""
    tasks = GRAMMAR.get(category, GRAMMAR["miscellaneous"])[0]
    topic = open_topic(rng, category)
    purpose = [f"It is for {rng.choice(PURPOSES)}."] if rng.random() < 0.7 else []
    if rng.random() < 0.05 + 0.35 * (1.0 - skill):
        return " ".join([rng.choice(VAGUE).format(topic=topic), *purpose])
    p = 0.15 + 0.5 * skill
    n = sum(rng.random() < p for _ in range(4))
    constraints = [render_constraint(rng, i) for i in rng.sample(range(len(CONSTRAINTS)), n)]
    return " ".join([f"{rng.choice(tasks)} {topic}.", *purpose, *constraints])


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
TYPICAL_QUALITY = 0.5  # what a response tracks instead of its prompt's quality when open_quality_link < 1


def _keywords(prompt: str) -> list[str]:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", prompt)]
    return words or ["the request"]


def respond(prompt: str, seed: int, cfg: SimModel) -> str:
    """One response to `prompt` (sample `seed`): its quality tracks the prompt's hidden quality."""
    rng = random.Random(seed)
    q = prompt_quality(prompt)
    q = 0.5 if q is None else q
    q = cfg.open_quality_link * q + (1.0 - cfg.open_quality_link) * TYPICAL_QUALITY  # see SimModel
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
