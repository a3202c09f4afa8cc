"""The simulated provider's configuration: per-model latency, limits, quality and faults.

Loaded from YAML (default `configs/sim_models.yaml`) or built inline from a dict in tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agen.config import CONFIGS_DIR
from agen.errors import ConfigError

DEFAULT_SIM_CONFIG = CONFIGS_DIR / "sim_models.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Strict):
    """Time to answer in ms: median * exp(sigma * N(0, 1)) + per_output_token_ms * longest choice.

    All zero means answer at once (benchmarks)."""

    median: float = Field(default=0.0, ge=0)
    sigma: float = Field(default=0.0, ge=0)
    per_output_token_ms: float = Field(default=0.0, ge=0)


class Outage(_Strict):
    """A window in which *every* request of the model gets `status` (a bursty 5xx, not a per-request
    draw): from `after_s` to `after_s + for_s` seconds after the model's first request (since the
    sim started or was reset), so start-up time does not eat the window."""

    after_s: float = Field(default=0.0, ge=0)
    for_s: float = Field(gt=0)
    status: int = Field(default=503, ge=500, le=599)


class Faults(_Strict):
    """Random failures, drawn per request (scripted responses skip them), and outage windows."""

    error_5xx_p: float = Field(default=0.0, ge=0, le=1)
    error_429_p: float = Field(default=0.0, ge=0, le=1)
    throttle_s: float = Field(default=1.0, gt=0)  # the wait a random 429 asks for (retry-after, retry-after-ms)
    hang_p: float = Field(default=0.0, ge=0, le=1)
    hang_s: float = Field(default=30.0, ge=0)
    malformed_p: float = Field(default=0.0, ge=0, le=1)
    quota_after: int | None = Field(default=None, ge=0)  # calls allowed before quota errors start
    outage: Outage | None = None  # every request answered with a 5xx for a while
    capacity: int | None = Field(default=None, ge=1)  # requests answered at once; beyond: "overloaded" at once


class Quirks(_Strict):
    """How this endpoint departs from what agen's client might assume (issue 9): each option breaks
    one assumption, so the client's adaptation is tested against a server that does not agree with it."""

    ignore_n: bool = False  # accept `n`, answer one choice (llama.cpp's server)
    ignore_seed: bool = False  # accept `seed`, sample as if it were absent
    charges: Literal["max_tokens", "usage"] = "max_tokens"  # TPM: prompt + n*max_tokens at admission, or
    #   prompt + real completion after the answer (admission only needs the prompt to fit)
    window: Literal["steady", "fixed"] = "steady"  # token bucket refilling limit/60 per s, or a counter
    #   reset to zero at every multiple of window_s
    window_s: float = Field(default=60.0, gt=0)
    headers: Literal["openai", "litellm", "none"] = "openai"  # litellm: limit + remaining (may go negative),
    #   no reset header, 429s say only `llm_provider-retry-after`, rejected requests count too


class HttpOptions(_Strict):
    """How the server speaks HTTP/1.1. Each option breaks one assumption a lean client might make:
    that a kept-alive connection stays open (`keepalive_s`: uvicorn, which serves vLLM, closes an
    idle one after 5 s), that the server keeps it at all (`close_p`), that a body comes with a
    length (`chunked`), that it comes uncompressed (`gzip`, when the request accepts it). With
    `advertise_keepalive` every answer says when its connection will be closed (`Keep-Alive:
    timeout=N`, as Node and Apache do; uvicorn and aiohttp say nothing)."""

    keepalive_s: float = Field(default=75.0, gt=0)  # an idle connection is closed after this long
    advertise_keepalive: bool = False  # send `keep-alive: timeout=<keepalive_s>`
    close_p: float = Field(default=0.0, ge=0, le=1)  # chance a response says `connection: close` and closes
    chunked: bool = False  # bodies in chunks, no content-length
    gzip: bool = False  # bodies gzip-encoded if the request's accept-encoding names gzip


class BatchOptions(_Strict):
    """How the batch APIs (`agen.sim.batches`) treat a batch, globally (`SimConfig.batch`) or for the
    batches of one model (`SimModel.batch`, by the model of a batch's first request).

    Real batches take minutes to hours; tests want fractions of a second, so `delay_s` is the whole
    time from create to end (a tenth validating, eight tenths answering lines, a tenth finalizing).
    Each option breaks one assumption a batch client might make: that a batch finishes
    (`expire_p`), that every line of a finished batch succeeded (`line_error_p`), that an accepted
    batch runs (`fail_p`), that there is room for one more (`max_enqueued_tokens`).
    """

    delay_s: float = Field(default=0.5, ge=0)
    jitter_s: float = Field(default=0.0, ge=0)  # plus uniform(0, jitter_s)
    expire_p: float = Field(default=0.0, ge=0, le=1)  # chance a batch expires before all lines are answered
    expire_done_share: float = Field(default=0.5, ge=0, le=1)  # share of an expiring batch's lines answered (0: none)
    line_error_p: float = Field(default=0.0, ge=0, le=1)  # chance a line is answered with a 500 (OpenAI) / api_error
    fail_p: float = Field(default=0.0, ge=0, le=1)  # OpenAI: chance a valid batch still ends `failed` at validation
    max_enqueued_tokens: int | None = Field(default=None, ge=1)  # prompt tokens of unfinished batches per model
    max_requests: int | None = Field(default=None, ge=1)  # lines per batch; None: 50,000 (OpenAI), 100,000 (Anthropic)


class SimModel(_Strict):
    """One simulated model.

    How it proposes a math problem (agen.sim.model.propose) — a modelling assumption, not a result:
    a problem's hidden difficulty is its number of steps (agen.sim.world.problem_steps, 2..5).
    The model first reads the difficulty of the examples shown in the prompt:

    * in-world examples (text the grammar parses, e.g. accepted proposals shown to amplify):
      every model reads their step count exactly;
    * out-of-world examples (human GSM8K seeds): a model with `default_steps: null` estimates
      their difficulty from their length (sentences - 1, give or take one: a capable model
      understands any problem); a model with `default_steps: N` cannot, and writes at its own
      comfort level N instead.

    It then writes at that difficulty + `ambition` (capped at the grammar's 2..5); ~20% of the
    time one step more or less. So a strong model with ambition > 0 pushes past its examples, and
    a cheap imitator (ambition 0) copies the difficulty of the in-world examples it is shown and
    falls back to easy problems from human seeds. Its stated answer is wrong with probability
    `propose_wrong_p + propose_wrong_per_step * (steps - 3)` (clamped to 0..1): a weak model gets
    hard problems of its own wrong more often. Solving is right with p = solve_correct_p ** (steps / 3).

    The world's further assumptions about answers, all off by default (so the shipped world is
    kinder than the real one: `benchmarks/filter_precision.py` shows what each one does):

    * `trap_share`: a share of problems *trap* this model — each problem has one hidden uniform
      draw from its text, and it traps every model whose `trap_share` exceeds it, so traps are
      shared (nested) across models. On a trap, the stated answer of a proposal and each solver
      sample are, with probability `trap_p`, the same wrong answer (`plausible_wrong(q)[0]`):
      correlated errors that no number of votes can outvote.
    * `difficulty_spread`: each problem also has a hidden hardness z ~ N(0, 1) from its text; a
      solver's chance shifts to sigmoid(logit(p) - difficulty_spread * z), the same z for every
      model, so some problems are hard for all solvers and pass rates spread out.
    * `no_box_p`: a solution states its answer in words and omits `\\boxed{}` (no vote).
    * `open_quality_link` (open-ended): how much a response's quality tracks its prompt's hidden
      quality — 1 is RIP's premise (bad prompts get worse, more erratic answers), 0 makes
      responses independent of the prompt, so RIP's metrics carry no signal about prompt quality.
    """

    latency_ms: Latency = Latency()
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    buckets_start: Literal["full", "empty"] = "full"  # empty (at start and at POST /sim/reset): a long
    #   run's steady state (a full bucket, a minute's worth, flatters any client, even N on one key)
    propose_wrong_p: float = Field(default=0.1, ge=0, le=1)  # wrong stated answer, at 3 steps
    propose_wrong_per_step: float = Field(default=0.0, ge=0, le=1)  # added per step above 3 (less below)
    ambition: int = Field(default=0, ge=0, le=3)  # steps beyond the examples' difficulty when proposing
    default_steps: int | None = Field(default=None, ge=2, le=5)  # difficulty used when it cannot read foreign examples
    format_broken_p: float = Field(default=0.05, ge=0, le=1)
    solve_correct_p: float = Field(default=0.8, ge=0, le=1)
    # Share of solutions whose final answer is a power tower (2^{2^{2^{2^{10}}}}) that math-verify
    # needs seconds to compare: breaks the assumption that comparing two answers is cheap.
    pathological_answer_p: float = Field(default=0.0, ge=0, le=1)
    # Share of solutions that box a sentence with numbers in it ("A $90^\circ$ rotation around the
    # origin", "12 apples, counting the 3 she gave away"), as MATH-style solvers do: breaks the
    # assumption that a boxed answer is a number or a formula (answer keys, equivalence, the loop).
    prose_answer_p: float = Field(default=0.0, ge=0, le=1)
    # the world's assumptions about answers (see the docstring; agen.sim.model, agen.sim.open_world)
    trap_share: float = Field(default=0.0, ge=0, le=1)  # share of problems that trap this model
    trap_p: float = Field(default=0.8, ge=0, le=1)  # on a trap: chance an answer is the shared wrong one
    difficulty_spread: float = Field(default=0.0, ge=0, le=5)  # logit-scale spread of hidden hardness
    no_box_p: float = Field(default=0.0, ge=0, le=1)  # a solution with its answer outside any box
    open_quality_link: float = Field(default=1.0, ge=0, le=1)  # response quality's tie to prompt quality
    # open-ended behaviour (agen.sim.open_world)
    open_skill: float = Field(default=0.6, ge=0, le=1)  # better prompts when proposing, better responses
    judge_noise: float = Field(default=0.8, ge=0)  # std of a judge's score, in points of the 1-10 scale
    judge_malformed_p: float = Field(default=0.03, ge=0, le=1)  # judge replies with no usable score line
    reward_noise: float = Field(default=0.3, ge=0)  # std of the reward model's scalar (/pooling)
    context_window: int = Field(default=32768, ge=1)
    # prompt cache (agen.sim.prompt_cache); None: the SimConfig-wide value
    prompt_cache: bool = True  # false: no prefix caching at all (vLLM without --enable-prefix-caching)
    cache_min_tokens: int | None = Field(default=None, ge=1)  # shortest cacheable prefix (Claude Haiku 3.5: 2048)
    cache_ttl_s: float | None = Field(default=None, gt=0)  # an entry lives this long after its last use
    cache_capacity: int | None = Field(default=None, ge=1)  # prefixes kept (least recently used go first)
    default_max_tokens: int = Field(default=4096, ge=1)  # OpenAI requests that omit max_tokens
    faults: Faults = Faults()
    quirks: Quirks = Quirks()
    batch: BatchOptions | None = None  # this model's batches (None: SimConfig.batch)


class SimConfig(_Strict):
    """The whole simulator: shared settings and the models it serves (unknown names get 404)."""

    require_api_key: str | None = None
    seed: int = 0  # seeds the fault/latency RNG (content is seeded per request, see agen.sim.model)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)  # larger bodies get 413
    cache_min_tokens: int = Field(default=1024, ge=1)  # prompt cache defaults for every model
    cache_ttl_s: float = Field(default=300.0, gt=0)
    cache_capacity: int = Field(default=50_000, ge=1)
    batch: BatchOptions = BatchOptions()  # the batch APIs' timing and faults (a model may override)
    http: HttpOptions = HttpOptions()  # how it speaks HTTP/1.1 (keep-alive, chunking, compression)
    batch_dir: str | None = None  # keep batches and files here across sim restarts (None: in memory only)
    batch_api_rpm: float | None = Field(default=None, gt=0)  # requests a minute to the files/batch routes
    #   together (429 past it, as providers limit their batch endpoints): polling is not free
    models: dict[str, SimModel] = Field(default_factory=dict)


def parse_sim_config(raw: Any, source: str = "sim config") -> SimConfig:
    """Validate a dict (YAML document or inline test config) into a SimConfig."""
    if isinstance(raw, SimConfig):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return SimConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid sim config:\n  " + "\n  ".join(lines)) from None


def load_sim_config(path: str | Path | None = None) -> SimConfig:
    """Read a sim YAML; None means the shipped `configs/sim_models.yaml`."""
    p = Path(path) if path is not None else DEFAULT_SIM_CONFIG
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such sim config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_sim_config(raw, str(p))
