"""What a simulated model writes: propose, solve or chat, deterministic per (model, prompt, sample).

Sample `s` of a prompt is generated from the 64-bit seed blake2b(model, prompt, s), so choice `i`
of a request with `seed=s` equals the single choice of a request with `seed=s+i`. Temperature and
top_p are accepted and ignored.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from statistics import NormalDist

from agen.gen.category_parse import CATEGORIES
from agen.sim import choice_world, code_world, latex_world, open_world
from agen.sim.config import SimModel
from agen.sim.world import (
    MAX_STEPS,
    MIN_STEPS,
    explain,
    generate_problem,
    parse_problem,
    plausible_wrong,
    problem_steps,
)

__all__ = ["count_tokens", "generate", "hardness", "is_trap", "prompt_digest", "sample_rng", "sample_seed",
           "solve_p", "trap_draw", "truncate_tokens"]

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_SEED_LINE = re.compile(r"^Seed Question \d+:\s*(.+)$", re.M)
_PROBLEM_LINE = re.compile(r"^Problem:[ \t]*$", re.M)
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")
WRONG_WEIGHTS = (0.60, 0.25, 0.15)  # how wrong answers spread over plausible_wrong()'s values
_NORMAL = NormalDist()
_MASK64 = (1 << 64) - 1


@functools.lru_cache(maxsize=8192)
def count_tokens(text: str) -> int:
    """The sim's tokenizer: words and single punctuation marks. Deterministic and cheap."""
    return len(TOKEN_RE.findall(text))


def truncate_tokens(text: str, max_tokens: int) -> str:
    """The prefix of `text` holding its first `max_tokens` tokens."""
    end = 0
    for i, m in enumerate(TOKEN_RE.finditer(text)):
        if i == max_tokens:
            break
        end = m.end()
    return text[:end]


def prompt_digest(model: str, prompt: str) -> bytes:
    """Hash of (model, prompt text); combined with a sample index to seed that sample."""
    return hashlib.blake2b(f"{model}\x00{prompt}".encode(), digest_size=16).digest()


def sample_seed(digest: bytes, sample: int) -> int:
    """The 64-bit seed of one sample; depends only on the prompt digest and the sample index."""
    h = hashlib.blake2b(digest + sample.to_bytes(8, "little", signed=True), digest_size=8).digest()
    return int.from_bytes(h, "little")


def sample_rng(digest: bytes, sample: int) -> random.Random:
    """The RNG of one sample (see `sample_seed`)."""
    return random.Random(sample_seed(digest, sample))


PATHOLOGICAL_ANSWER = "2^{2^{2^{2^{10}}}}"  # see SimModel.pathological_answer_p
# see SimModel.prose_answer_p: {a} is the answer the solution reached, {k} a small number
PROSE_ANSWERS = (
    "{a} in all, counting the {k} given away",
    "A ${k}0^\\circ$ rotation around the origin in the counter-clock",
    "The answer is {a}",
    "{a} dollars and {k}0 cents",
    "about {a}, or {k} per day for 3 days",
    "{a} items remain after {k} are used",
)


def prose_answer(answer: str, seed: int) -> str:
    """`answer` as a sentence around it (SimModel.prose_answer_p); which one, from the seed."""
    h = (seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return PROSE_ANSWERS[(h >> 50) % len(PROSE_ANSWERS)].format(a=answer, k=2 + (h >> 40) % 7)


def _pick_wrong(u: float, question: str) -> str:
    wrong = plausible_wrong(question)
    r = u
    acc = 0.0
    for value, w in zip(wrong, WRONG_WEIGHTS):
        acc += w
        if r < acc:
            return value
    return wrong[-1]


def _uniform(text: str, person: bytes) -> float:
    d = hashlib.blake2b(text.encode(), digest_size=8, person=person).digest()
    return int.from_bytes(d, "little") / 2.0**64


@functools.lru_cache(maxsize=32768)
def trap_draw(question: str) -> float:
    """The problem's hidden trap draw in [0, 1): it traps every model with trap_share above it."""
    return _uniform(question.strip(), b"agen-trap")


@functools.lru_cache(maxsize=32768)
def hardness(question: str) -> float:
    """The problem's hidden hardness z ~ N(0, 1), the same for every model."""
    return _NORMAL.inv_cdf(min(max(_uniform(question.strip(), b"agen-hard"), 1e-12), 1 - 1e-12))


def is_trap(question: str, cfg: SimModel) -> bool:
    return cfg.trap_share > 0 and trap_draw(question) < cfg.trap_share


def solve_p(question: str, steps: int, cfg: SimModel) -> float:
    """A solver's chance of the right answer: solve_correct_p ** (steps / 3), shifted by hardness."""
    p = cfg.solve_correct_p ** (steps / 3)
    if cfg.difficulty_spread and 0.0 < p < 1.0:
        logit = math.log(p / (1.0 - p)) - cfg.difficulty_spread * hardness(question)
        p = 1.0 / (1.0 + math.exp(-logit))
    return p


def _more_uniforms(seed: int) -> tuple[float, float]:
    """Two more draws from a sample seed (splitmix64), for traps and missing boxes."""
    z = (seed + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z & 0xFFFFFFFF) / 4294967296.0, (z >> 32) / 4294967296.0


def solve(question: str, seed: int, cfg: SimModel) -> str:
    """A short solution ending in \\boxed{...}: right with `solve_p`; on a trap problem, the shared
    wrong answer with probability trap_p; sometimes (no_box_p) with its answer in words only.

    The uniform draws come straight from the 64-bit sample seed (no RNG object: this is the hot
    path of voting), and the text is cached per (question, answer).
    """
    u1 = (seed & 0xFFFFFFFF) / 4294967296.0
    u2 = (seed >> 32) / 4294967296.0
    u3, u4 = _more_uniforms(seed) if (cfg.trap_share or cfg.no_box_p) else (1.0, 1.0)
    if cfg.pathological_answer_p and ((seed * 0x9E3779B97F4A7C15) >> 40 & 0xFFFFFF) / 16777216.0 < cfg.pathological_answer_p:
        return solution_text(question, PATHOLOGICAL_ANSWER)
    prob = parse_problem(question)
    if prob is None:
        answer = _pick_wrong(u2, question)
    elif u3 < cfg.trap_p and is_trap(question, cfg):
        answer = plausible_wrong(question)[0]
    else:
        answer = str(prob.evaluate()) if u1 < solve_p(question, prob.steps, cfg) else _pick_wrong(u2, question)
    if u4 < cfg.no_box_p:
        return unboxed_solution_text(question, answer)
    if cfg.prose_answer_p and ((seed * 0xD6E8FEB86659FD93) >> 40 & 0xFFFFFF) / 16777216.0 < cfg.prose_answer_p:
        answer = prose_answer(answer, seed)
    return solution_text(question, answer)


@functools.lru_cache(maxsize=8192)
def unboxed_solution_text(question: str, answer: str) -> str:
    """The same solution with its answer stated in words, no box (a sloppy or chatty solver)."""
    lines = explain(question, answer)
    return "Let's solve this step by step.\n" + "\n".join(lines) + f"\nSo the answer is {answer}."


@functools.lru_cache(maxsize=32768)
def solution_text(question: str, answer: str) -> str:
    """The worked solution the sim writes for `question` when it concludes `answer`."""
    lines = explain(question, answer)
    return "Let's solve this step by step.\n" + "\n".join(lines) + f"\nThe answer is\n\\boxed{{{answer}}}"


def _foreign_steps(seeds: list[str], rng: random.Random) -> int:
    """A capable model's reading of text it cannot parse: sentences - 1, give or take one."""
    sentences = sum(len(_SENTENCE_END.findall(s)) or 1 for s in seeds) / len(seeds)
    return round(sentences) - 1 + rng.choice((-1, 0, 0, 1))


def target_steps(prompt: str, rng: random.Random, cfg: SimModel) -> int:
    """How many steps a proposed problem gets: the examples' difficulty as this model reads it, plus
    its ambition (see SimModel's docstring for the assumptions)."""
    seeds = _SEED_LINE.findall(prompt)
    if not seeds:
        return rng.randint(MIN_STEPS, MAX_STEPS)
    known = [n for n in map(problem_steps, seeds) if n is not None]
    if known:  # in-world examples: their difficulty is read exactly (ties of the mean rounded at random)
        mean = sum(known) / len(known)
        base = int(mean) + (rng.random() < mean - int(mean))
        base += rng.choice((-1, 0, 0, 0, 0, 0, 0, 0, 0, 1))
    elif cfg.default_steps is not None:  # foreign examples it cannot read: its comfort level
        base = cfg.default_steps + rng.choice((-1, 0, 0, 0, 0, 0, 0, 0, 0, 1))
    else:
        base = _foreign_steps(seeds, rng)
    return max(MIN_STEPS, min(MAX_STEPS, base + cfg.ambition))


def propose_wrong_p(cfg: SimModel, steps: int) -> float:
    """The chance a proposer states a wrong answer for its own problem of `steps` steps."""
    return min(1.0, max(0.0, cfg.propose_wrong_p + cfg.propose_wrong_per_step * (steps - 3)))


def propose(prompt: str, rng: random.Random, cfg: SimModel) -> str:
    """A short CoT and a new problem in the required markers; sometimes wrong or broken."""
    steps = target_steps(prompt, rng, cfg)
    n_seeds = len(_SEED_LINE.findall(prompt))
    question, answer = generate_problem(rng, steps)
    if is_trap(question, cfg) and rng.random() < cfg.trap_p:
        answer = plausible_wrong(question)[0]  # the mistake its solvers will share
    elif rng.random() < propose_wrong_p(cfg, steps):
        answer = _pick_wrong(rng.random(), question)
    cot = (f"Analysis: the {n_seeds or 'given'} seed questions are multi-step arithmetic word problems; "
           f"each needs a few careful operations on one quantity.\n"
           f"Plan: write a new problem with {steps} operations whose numbers divide exactly.\n"
           f"Solution:\n" + "\n".join(explain(question, answer)) + "\n")
    q_block = f"[New Question Begin]{question}[New Question End]"
    a_block = f"[Final Answer to New Question Begin]\\boxed{{{answer}}}[Final Answer to New Question End]"
    if rng.random() < cfg.format_broken_p:
        kind = rng.randrange(4)
        if kind == 0:
            q_block = f"[New Question Begin]{question}"  # end marker missing
        elif kind == 1:
            a_block = f"[Final Answer to New Question Begin]{answer}[Final Answer to New Question End]"
        elif kind == 2:
            a_block = f"The final answer is {answer}."
        else:
            q_block = f"New question: {question}"
    return cot + q_block + "\n" + a_block


def chat(prompt: str, rng: random.Random) -> str:
    """A short generic reply for anything that is neither a propose nor a solve prompt."""
    words = [w for w in TOKEN_RE.findall(prompt) if w.isalpha()][:8]
    topic = " ".join(words) or "your message"
    n = rng.randint(1, 99)
    return f"This is a simulated reply about: {topic}. (sample note {n})"


def problem_of(last_user: str) -> str | None:
    """The problem text of a solve prompt: everything after a line reading `Problem:`."""
    if "\\boxed" not in last_user:
        return None
    m = _PROBLEM_LINE.search(last_user)
    if m is None:
        return None
    return last_user[m.end():].strip()


# ---------------------------------------------------------------- open-ended requests
# Detected by the markers of configs/templates/open_*.txt and classify_category.txt, checked
# in this order (a judge request quotes a prompt, so it is recognised first).
JUDGE_MARKERS = ("[Response Begin]", "[Response End]", "[User Request Begin]", "[User Request End]")
CLASSIFY_MARKERS = ("[Prompt Begin]", "[Prompt End]", "Category:")
OPEN_PROPOSE_MARKER = "[New Prompt Begin]"
RESPOND_MARKERS = ("[Request Begin]", "[Request End]")
_SEED_PROMPT = re.compile(r"^Seed Prompt \d+:[ \t]*", re.M)


def _between(text: str, begin: str, end: str) -> str | None:
    i = text.find(begin)
    if i < 0:
        return None
    j = text.find(end, i + len(begin))
    return None if j < 0 else text[i + len(begin):j].strip()


def _seed_prompts_text(prompt: str) -> str:
    """Everything the seed prompts say: from the first `Seed Prompt N:` to the template's `Step 1`."""
    m = _SEED_PROMPT.search(prompt)
    if m is None:
        return ""
    end = prompt.find("Step 1:", m.start())
    return _SEED_PROMPT.sub("", prompt[m.start(): end if end >= 0 else len(prompt)])


def propose_open(prompt: str, rng: random.Random, cfg: SimModel) -> str:
    """Steps 1-3 of the open-ended template and one new prompt in the seeds' category."""
    n_seeds = len(_SEED_PROMPT.findall(prompt))
    category = open_world.classify_text(_seed_prompts_text(prompt))
    name = CATEGORIES[category]
    new = open_world.generate_open_prompt(rng, category, cfg.open_skill)
    cot = (f"Step 1: The {n_seeds or 'given'} seed prompts are {name} tasks; each names a concrete task, "
           f"a topic and some constraints on the answer.\n"
           f"Step 2: Plan: keep the task type, choose a fresh topic, add constraints that make the answer checkable.\n"
           f"Step 3: Here is the new prompt.\n")
    block = f"[New Prompt Begin]{new}[New Prompt End]"
    if rng.random() < cfg.format_broken_p:
        kind = rng.randrange(4)
        if kind == 0:
            block = f"[New Prompt Begin]{new}"  # end marker missing
        elif kind == 1:
            block = f"New prompt: {new}"
        elif kind == 2:
            block = f"[New Prompt Begin]{new}[New Prompt End]\n[New Prompt Begin]{new} Be brief.[New Prompt End]"
        else:
            block = "[New Prompt Begin][New Prompt End]"
    return cot + block


def open_request(cfg: SimModel, last_user: str, seed: int) -> str | None:
    """The answer to an open-ended request (judge, classify, propose, respond), or None if it is none."""
    if all(m in last_user for m in JUDGE_MARKERS):
        user = _between(last_user, "[User Request Begin]", "[User Request End]") or ""
        response = _between(last_user, "[Response Begin]", "[Response End]") or ""
        return open_world.judge_text(user, response, random.Random(seed), cfg)
    if all(m in last_user for m in CLASSIFY_MARKERS):
        text = _between(last_user, "[Prompt Begin]", "[Prompt End]") or ""
        return f"Category: {CATEGORIES[open_world.classify_text(text)]}"
    if OPEN_PROPOSE_MARKER in last_user:
        return propose_open(last_user, random.Random(seed), cfg)
    if all(m in last_user for m in RESPOND_MARKERS):
        return open_world.respond(_between(last_user, "[Request Begin]", "[Request End]") or "", seed, cfg)
    return None


def domain_request(cfg: SimModel, last_user: str, seed: int) -> str | None:
    """A propose or solve request of the multiple-choice, code or MATH-style (LaTeX) world."""
    if choice_world.is_propose(last_user):
        return choice_world.propose(random.Random(seed), cfg)
    if choice_world.is_solve(last_user):
        return choice_world.solve(choice_world.question_of(last_user), seed, cfg)
    if code_world.is_propose(last_user):
        return code_world.propose(random.Random(seed), cfg)
    if code_world.is_solve(last_user):
        return code_world.solve(code_world.question_of(last_user), seed, cfg)
    if "[New Question Begin]" in last_user and latex_world.is_latex_prompt(last_user):
        return latex_world.propose(random.Random(seed), cfg)
    problem = problem_of(last_user)
    if problem is not None and "\\" in problem:
        return latex_world.solve(problem, seed, cfg)
    return None


def generate(cfg: SimModel, prompt: str, last_user: str, seed: int) -> str:
    """The text of one sample (`seed` from `sample_seed`), dispatched on what the request asks
    (`last_user`: its system text and last user message, without role markers)."""
    domain = domain_request(cfg, last_user, seed)
    if domain is not None:
        return domain
    if "[New Question Begin]" in last_user:
        return propose(last_user, random.Random(seed), cfg)
    if "[" in last_user:
        text = open_request(cfg, last_user, seed)
        if text is not None:
            return text
    problem = problem_of(last_user)
    if problem is not None:
        return solve(problem, seed, cfg)
    return chat(last_user, random.Random(seed))
