"""The simulator's closed world: arithmetic word problems whose truth is recomputed from the text.

A problem is a start quantity and a chain of 2–5 operations, each written with one of several
phrasings, ending in a question. Every phrasing is a template such as
``"{Subj} buys {k} more {items}."``; the same template is compiled into an anchored regex, so
`true_answer` parses any text built from the grammar (whoever wrote it) and recomputes the answer,
and returns None for anything else (a real GSM8K question, a mangled proposal).

Numbers are chosen so every division is exact and no quantity goes negative: answers are integers.
`plausible_wrong` gives the mistakes a sloppy solver makes on a problem (a step skipped, a step
inverted, an off-by-one), computed deterministically from the text, so wrong votes cluster.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable

__all__ = ["MAX_STEPS", "MIN_STEPS", "Problem", "generate_problem", "parse_problem", "plausible_wrong",
           "problem_steps", "true_answer"]

MIN_STEPS, MAX_STEPS = 2, 5  # operations per problem: a problem's hidden difficulty

# ---------------------------------------------------------------- vocabulary

NAMES = (
    ("Maya", "she"), ("Liam", "he"), ("Sofia", "she"), ("Noah", "he"), ("Amara", "she"), ("Ethan", "he"),
    ("Priya", "she"), ("Mateo", "he"), ("Hana", "she"), ("Oliver", "he"), ("Zara", "she"), ("Kofi", "he"),
    ("Ingrid", "she"), ("Diego", "he"), ("Leila", "she"), ("Tomas", "he"), ("Chloe", "she"), ("Ravi", "he"),
    ("Nadia", "she"), ("Felix", "he"), ("Yuki", "she"), ("Omar", "he"), ("Elena", "she"), ("Jonah", "he"),
    ("Freya", "she"), ("Arjun", "he"), ("Lucia", "she"), ("Samuel", "he"), ("Imani", "she"), ("Hugo", "he"),
    ("Greta", "she"), ("Malik", "he"), ("Rosa", "she"), ("Caleb", "he"), ("Aisha", "she"), ("Bruno", "he"),
    ("Keiko", "she"), ("Tariq", "he"), ("Vera", "she"), ("Emil", "he"), ("Nora", "she"), ("Dmitri", "he"),
    ("Paloma", "she"), ("Henrik", "he"), ("Ayla", "she"), ("Jasper", "he"), ("Mina", "she"), ("Rafael", "he"),
)
ITEMS = (
    ("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("cupcake", "cupcakes"),
    ("pencil", "pencils"), ("seashell", "seashells"), ("trading card", "trading cards"),
    ("comic book", "comic books"), ("glass bead", "glass beads"), ("tomato plant", "tomato plants"),
    ("cookie", "cookies"), ("balloon", "balloons"), ("toy car", "toy cars"), ("postcard", "postcards"),
    ("muffin", "muffins"), ("candle", "candles"), ("notebook", "notebooks"), ("lemon", "lemons"),
    ("paper crane", "paper cranes"), ("board game", "board games"), ("bottle cap", "bottle caps"),
    ("flower pot", "flower pots"), ("jar of honey", "jars of honey"), ("bar of soap", "bars of soap"),
    ("loaf of bread", "loaves of bread"), ("keychain", "keychains"), ("puzzle", "puzzles"),
    ("rubber duck", "rubber ducks"), ("paintbrush", "paintbrushes"), ("sandwich", "sandwiches"),
    ("peach", "peaches"), ("bracelet", "bracelets"), ("coloring book", "coloring books"),
    ("pine cone", "pine cones"), ("stamp", "stamps"), ("tennis ball", "tennis balls"),
    ("scarf", "scarves"), ("donut", "donuts"), ("carrot", "carrots"), ("mug", "mugs"),
    ("origami frog", "origami frogs"), ("potted cactus", "potted cacti"), ("egg", "eggs"),
    ("crayon", "crayons"), ("kite", "kites"), ("pumpkin", "pumpkins"), ("sock", "socks"),
    ("dumpling", "dumplings"), ("button", "buttons"), ("library book", "library books"),
)
SETTINGS = (
    "farmers market", "school fair", "bakery", "toy store", "summer camp", "garden center", "flea market",
    "art studio", "community center", "bookshop", "harbor", "county fair", "science club", "craft fair",
    "corner shop", "orchard", "train station", "library sale", "beach stall", "night market",
)
CONTAINERS = ("backpack", "closet", "shoebox", "basket", "drawer", "garage", "shed", "tote bag", "cupboard", "crate")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PLACES = ("under the couch", "in the attic", "behind the shed", "in an old coat", "at the park",
          "in the car", "near the fence", "on the bus", "in a drawer", "by the river")
FRIENDS = ("a neighbor", "a cousin", "a classmate", "a coworker", "an old friend", "a teammate", "a shopkeeper",
           "a teacher", "the coach", "a grandparent", "a younger brother", "an older sister", "a pen pal")
GROUPS = ("friends", "classmates", "cousins", "baskets", "shelves", "teams", "tables", "neighbors")
CHARITIES = ("food bank", "school library", "animal shelter", "hospital", "local charity", "church")
ADJS = ("sunny", "busy", "rainy", "quiet", "windy", "chilly", "bright", "cloudy", "warm")
WEATHER = ("mild", "perfect", "a bit cold", "surprisingly warm", "gray", "lovely")
TIMES_VERB = {"doubles": 2, "triples": 3, "quadruples": 4}
TIMES_ADV = {"twice": 2, "three times": 3, "four times": 4}
FRACS = {"half": 2, "a third": 3, "a quarter": 4, "a fifth": 5}
FRACS_CAP = {"Half": 2, "A third": 3, "A quarter": 4, "A fifth": 5}

# ---------------------------------------------------------------- templates

_TEXT = r"[A-Za-z][A-Za-z' -]*?"
_SLOT_RE = {
    "k": r"(?P<k>\d+)", "a": r"(?P<a>\d+)", "b": r"(?P<b>\d+)", "p": r"(?P<p>\d+)", "d": r"(?P<d>\d+)",
    "times": "(?P<times>" + "|".join(TIMES_VERB) + ")", "timesn": "(?P<timesn>" + "|".join(TIMES_ADV) + ")",
    "frac": "(?P<frac>" + "|".join(FRACS) + ")", "Frac": "(?P<Frac>" + "|".join(FRACS_CAP) + ")",
    "Name": r"[A-Z][a-z]+", "name": r"[A-Z][a-z]+", "Subj": r"[A-Z][a-z]+", "subj": r"(?:[A-Z][a-z]+|he|she)",
    "pos": r"(?:his|her)", "obj": r"(?:him|her)", "day": r"[A-Z][a-z]+",
}
_FIELD = re.compile(r"\{(\w+)\}")

# op kind -> state transition x -> x'. Params come from the numeric/word slots.
OPS: dict[str, Callable[[int, dict[str, int]], int]] = {
    "start": lambda x, v: v["k"],
    "add": lambda x, v: x + v["k"],
    "add_groups": lambda x, v: x + v["a"] * v["b"],
    "sub": lambda x, v: x - v["k"],
    "mul": lambda x, v: x * v["k"],
    "share": lambda x, v: x // v["k"],
    "frac": lambda x, v: x - x // v["k"],
    "pct": lambda x, v: x - x * v["d"] // 100,
    "price": lambda x, v: x * v["p"],
    "discount": lambda x, v: x * v["p"] * (100 - v["d"]) // 100,
    "filler": lambda x, v: x,
    "ask": lambda x, v: x,
    "ask_money": lambda x, v: x,
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "start": (
        "{Name} has {k} {items}.",
        "{Name} collects {items} and already owns {k} of them.",
        "At the {setting}, {name} starts the morning with {k} {items}.",
        "On {day}, {name} brings {k} {items} to the {setting}.",
        "There are {k} {items} in {name}'s {container}.",
        "{Name} keeps {k} {items} in {pos} {container}.",
        "{Name} runs a small stand at the {setting} and begins the day with {k} {items}.",
    ),
    "filler": (
        "It is a {adj} {day} at the {setting}.",
        "{Subj} has been looking forward to this all week.",
        "The weather is {weather}, so everyone is in a good mood.",
        "Business at the {setting} is steady today.",
    ),
    "add": (
        "{Subj} buys {k} more {items}.",
        "Then {subj} receives {k} more {items} from {friend}.",
        "{Friend} gives {obj} another {k} {items}.",
        "Later that day, {subj} finds {k} extra {items} {place}.",
        "{Subj} picks up {k} more {items} on the way home.",
        "A delivery arrives with {k} additional {items}.",
    ),
    "add_groups": (
        "{Subj} buys {a} boxes of {items} with {b} in each box.",
        "Next, {subj} gets {a} packs that hold {b} {items} each.",
        "{Friend} hands {obj} {a} bags containing {b} {items} apiece.",
        "{Subj} orders {a} crates, and every crate holds {b} {items}.",
    ),
    "sub": (
        "{Subj} gives {k} {items} to {friend}.",
        "{Subj} sells {k} of the {items} before lunch.",
        "Unfortunately, {k} of the {items} get lost.",
        "{Subj} uses {k} {items} for a school project.",
        "After that, {k} {items} are damaged and thrown away.",
        "{Friend} borrows {k} of them and never returns them.",
    ),
    "mul": (
        "{Subj} {times} the number of {items}.",
        "By the end of the week, {subj} has {timesn} as many {items} as before.",
        "Thanks to a big sale, {subj} ends up with {k} times as many {items} as before.",
        "The collection grows until it is {k} times its earlier size.",
    ),
    "share": (
        "{Subj} splits the {items} equally among {k} {groups} and keeps only one share.",
        "{Subj} divides them into {k} equal piles and keeps just one pile.",
        "{Subj} packs the {items} equally into {k} boxes and takes only one box home.",
    ),
    "frac": (
        "{Subj} gives away {frac} of the {items}.",
        "{Frac} of the {items} are sold during the morning.",
        "{Subj} donates {frac} of them to the {charity}.",
    ),
    "pct": (
        "{Subj} sells {d}% of the {items}.",
        "During the afternoon, {d} percent of the {items} are used up.",
        "{Subj} loses {d}% of them on the trip home.",
    ),
    "price": (
        "{Subj} sells all of the {items} for ${p} each.",
        "Every {item} can be sold for ${p}, and {subj} sells them all.",
        "{Subj} charges ${p} per {item} and sells every one of them.",
    ),
    "discount": (
        "{Subj} sells all of the {items} at ${p} each but gives a {d}% discount on every sale.",
        "The usual price is ${p} per {item}, but {subj} offers {d}% off and sells them all.",
    ),
    "ask": (
        "How many {items} does {subj} have now?",
        "How many {items} are left at the end?",
        "How many {items} does {subj} end up with?",
        "How many {items} remain?",
        "What is the final number of {items}?",
    ),
    "ask_money": (
        "How much money, in dollars, does {subj} make?",
        "How many dollars does {subj} earn in total?",
        "What is the total amount of money {subj} receives, in dollars?",
    ),
}


def _compile(template: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _FIELD.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(_SLOT_RE.get(m.group(1), f"(?:{_TEXT})"))
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


# (kind, compiled, literal keyword for a cheap prefilter); questions are tried only last.
_PARSERS: list[tuple[str, re.Pattern[str], str]] = []
for _kind, _tpls in TEMPLATES.items():
    for _t in _tpls:
        _lits = [s for s in _FIELD.split(_t)[::2] if s.strip()]
        _PARSERS.append((_kind, _compile(_t), max(_lits, key=len).strip() if _lits else ""))
_START_PARSERS = [p for p in _PARSERS if p[0] == "start"]
_STEP_PARSERS = [p for p in _PARSERS if p[0] != "start"]
_SENT_SPLIT = re.compile(r"(?<=[.?!])\s+")


@dataclass(frozen=True, slots=True)
class Problem:
    """A parsed problem: its start quantity and operations (kind, params) in order."""

    start: int
    ops: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]

    @property
    def steps(self) -> int:
        return len(self.ops)

    def evaluate(self, skip: int = -1, invert: int = -1) -> int:
        """The answer; `skip`/`invert` apply a solver's mistake to one op (by index)."""
        x = self.start
        for i, (kind, params) in enumerate(self.ops):
            if i == skip:
                continue
            v = dict(params)
            if i == invert:
                kind = _INVERSE.get(kind, kind)
            x = OPS[kind](x, v)
        return x


_INVERSE = {"add": "sub", "sub": "add", "mul": "share", "share": "mul", "add_groups": "sub_groups"}
OPS["sub_groups"] = lambda x, v: x - v["a"] * v["b"]


def _values(m: re.Match[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, val in m.groupdict().items():
        if key == "times":
            out["k"] = TIMES_VERB[val]
        elif key == "timesn":
            out["k"] = TIMES_ADV[val]
        elif key == "frac":
            out["k"] = FRACS[val]
        elif key == "Frac":
            out["k"] = FRACS_CAP[val]
        else:
            out[key] = int(val)
    return out


def _match(sentence: str, parsers: list[tuple[str, re.Pattern[str], str]]) -> tuple[str, dict[str, int]] | None:
    for kind, rx, kw in parsers:
        if kw in sentence:
            m = rx.fullmatch(sentence)
            if m is not None:
                return kind, _values(m)
    return None


@functools.lru_cache(maxsize=16384)
def parse_problem(question: str) -> Problem | None:
    """Parse text built from the grammar into a Problem; None if any sentence is foreign."""
    sentences = _SENT_SPLIT.split(question.strip())
    if len(sentences) < 3:
        return None
    first = _match(sentences[0], _START_PARSERS)
    if first is None:
        return None
    start = first[1]["k"]
    ops: list[tuple[str, tuple[tuple[str, int], ...]]] = []
    asked = False
    for s in sentences[1:]:
        if asked:
            return None  # the question must be the last sentence
        got = _match(s, _STEP_PARSERS)
        if got is None:
            return None
        kind, vals = got
        if kind in ("ask", "ask_money"):
            asked = True
        elif kind != "filler":
            ops.append((kind, tuple(sorted(vals.items()))))
    if not asked or not ops:
        return None
    prob = Problem(start, tuple(ops))
    try:
        value = prob.evaluate()
    except (KeyError, ZeroDivisionError):
        return None
    return prob if value >= 0 else None


def problem_steps(question: str) -> int | None:
    """A grammar problem's hidden difficulty, its number of operations (MIN_STEPS..MAX_STEPS); None
    for text not from the grammar (a human GSM8K question, a mangled proposal)."""
    prob = parse_problem(question.strip())
    return None if prob is None else prob.steps


def true_answer(question: str) -> str | None:
    """The correct answer recomputed from the text, or None if the text is not from the grammar."""
    prob = parse_problem(question.strip())
    return None if prob is None else str(prob.evaluate())


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=16384)
def plausible_wrong(question: str) -> tuple[str, ...]:
    """Three distinct wrong answers a careless solver gives, most likely first (deterministic).

    For grammar problems: one step skipped, one step inverted, an off-by-one. For foreign text:
    three pseudo-random numbers derived from the text.
    """
    prob = parse_problem(question.strip())
    h = _h(question)
    if prob is None:
        base = 10 + h % 490
        return (str(base), str(base + 1 + (h >> 12) % 37), str(max(0, base - 2 - (h >> 20) % 9)))
    truth = prob.evaluate()
    n = prob.steps
    cands = [abs(prob.evaluate(skip=(h >> 3) % n)), abs(prob.evaluate(invert=(h >> 9) % n)),
             truth + (1 if (h >> 15) % 2 else -1), abs(prob.evaluate(skip=n - 1)), truth + 10, truth * 2 + 1]
    out: list[str] = []
    for c in cands:
        s = str(c)
        if c >= 0 and c != truth and s not in out:
            out.append(s)
        if len(out) == 3:
            break
    return tuple(out)


# ---------------------------------------------------------------- generation


def _divisors(x: int, lo: int, hi: int) -> list[int]:
    return [k for k in range(lo, hi + 1) if x % k == 0 and x // k >= 2]


def _choose_op(rng: random.Random, x: int, last: bool) -> tuple[str, dict[str, int]]:
    """A feasible operation for the current quantity (exact divisions, nothing negative)."""
    if last and x >= 1 and rng.random() < 0.3:
        if rng.random() < 0.5:
            return "price", {"p": rng.randint(2, 15)}
        opts = [(p, d) for p in range(2, 21) for d in (10, 20, 25, 40, 50) if x * p * (100 - d) % 100 == 0]
        if opts:
            p, d = rng.choice(opts)
            return "discount", {"p": p, "d": d}
    feasible: list[str] = ["add", "add_groups"]
    if x >= 4:
        feasible += ["sub", "sub"]
    if 1 <= x <= 400:
        feasible.append("mul")
    shares = _divisors(x, 2, 8)
    if shares:
        feasible += ["share", "frac"]
    pcts = [d for d in (10, 20, 25, 40, 50, 60, 75) if x * d % 100 == 0 and x * d // 100 >= 1]
    if pcts:
        feasible.append("pct")
    kind = rng.choice(feasible)
    if kind == "add":
        return kind, {"k": rng.randint(2, 40)}
    if kind == "add_groups":
        return kind, {"a": rng.randint(2, 7), "b": rng.randint(3, 12)}
    if kind == "sub":
        return kind, {"k": rng.randint(1, max(1, x * 2 // 3))}
    if kind == "mul":
        return kind, {"k": rng.randint(2, 4)}
    if kind == "share":
        return kind, {"k": rng.choice(shares)}
    if kind == "frac":
        fr = [k for k in shares if k <= 5]
        if fr:
            return kind, {"k": rng.choice(fr)}
        return "add", {"k": rng.randint(2, 40)}
    return "pct", {"d": rng.choice(pcts)}


def _start_value(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.4:
        return rng.randint(6, 90)
    if r < 0.7:
        return 12 * rng.randint(1, 15)
    return 10 * rng.randint(2, 30)


def _render(template: str, kind: str, vals: dict[str, int], ctx: dict[str, str], rng: random.Random) -> str:
    slots = dict(ctx)
    slots.update({k: str(v) for k, v in vals.items()})
    k = vals.get("k", 0)
    if "{times}" in template:
        slots["times"] = next(w for w, v in TIMES_VERB.items() if v == k)
    if "{timesn}" in template:
        slots["timesn"] = next(w for w, v in TIMES_ADV.items() if v == k)
    if "{frac}" in template:
        slots["frac"] = next(w for w, v in FRACS.items() if v == k)
    if "{Frac}" in template:
        slots["Frac"] = next(w for w, v in FRACS_CAP.items() if v == k)
    pron = ctx["pron"]
    use_name = rng.random() < 0.35
    slots["Subj"] = ctx["name"] if use_name else pron.capitalize()
    slots["subj"] = ctx["name"] if use_name else pron
    friend = rng.choice(FRIENDS)
    slots["friend"] = friend
    slots["Friend"] = friend[0].upper() + friend[1:]
    slots["place"] = rng.choice(PLACES)
    slots["groups"] = rng.choice(GROUPS)
    slots["charity"] = rng.choice(CHARITIES)
    slots["adj"] = rng.choice(ADJS)
    slots["weather"] = rng.choice(WEATHER)
    return template.format(**slots)


def generate_problem(rng: random.Random, steps: int) -> tuple[str, str]:
    """A new grammar problem with `steps` operations (clamped to MIN_STEPS..MAX_STEPS) and its integer answer."""
    steps = max(MIN_STEPS, min(MAX_STEPS, steps))
    name, pron = rng.choice(NAMES)
    item, items = rng.choice(ITEMS)
    ctx = {"name": name, "Name": name, "pron": pron, "pos": "his" if pron == "he" else "her",
           "obj": "him" if pron == "he" else "her", "item": item, "items": items,
           "setting": rng.choice(SETTINGS), "container": rng.choice(CONTAINERS), "day": rng.choice(DAYS)}
    x = _start_value(rng)
    sentences = [_render(rng.choice(TEMPLATES["start"]), "start", {"k": x}, ctx, rng)]
    if rng.random() < 0.3:
        sentences.append(_render(rng.choice(TEMPLATES["filler"]), "filler", {}, ctx, rng))
    money = False
    for i in range(steps):
        kind, vals = _choose_op(rng, x, last=i == steps - 1)
        x = OPS[kind](x, vals)
        money = kind in ("price", "discount")
        sentences.append(_render(rng.choice(TEMPLATES[kind]), kind, vals, ctx, rng))
    ask = "ask_money" if money else "ask"
    sentences.append(_render(rng.choice(TEMPLATES[ask]), ask, {}, ctx, rng))
    return " ".join(sentences), str(x)


_STEP_TEXT = {
    "add": "Adding {k} more: {x} + {k} = {y}.",
    "add_groups": "{a} groups of {b} add {a} * {b}, so {x} + {a} * {b} = {y}.",
    "sub": "Taking away {k}: {x} - {k} = {y}.",
    "mul": "Multiplying by {k}: {x} * {k} = {y}.",
    "share": "One of {k} equal shares: {x} / {k} = {y}.",
    "frac": "Removing 1/{k} of them: {x} - {x} / {k} = {y}.",
    "pct": "Removing {d}%: {x} - {x} * {d} / 100 = {y}.",
    "price": "At ${p} each: {x} * {p} = {y} dollars.",
    "discount": "At ${p} each with {d}% off: {x} * {p} * (100 - {d}) / 100 = {y} dollars.",
}


def explain(question: str, answer: str) -> list[str]:
    """Short step-by-step lines for a solution ending in `answer` (cheap, template-based)."""
    prob = parse_problem(question.strip())
    if prob is None:
        return ["Let me work through the quantities in the problem one at a time.",
                "Combining them gives the result."]
    lines = [f"We start with {prob.start}."]
    x = prob.start
    for kind, params in prob.ops:
        v = dict(params)
        y = OPS[kind](x, v)
        lines.append(_STEP_TEXT[kind].format(x=x, y=y, **v))
        x = y
    if str(x) != answer:
        lines.append(f"Double-checking the steps, I get {answer}.")
    return lines
