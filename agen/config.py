"""Run configuration: the YAML schema, its validation, and errors that name the path and the fix.

Validation happens before anything runs, so a wrong key or value costs no request.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agen import yaml_text
from agen.errors import ConfigError



def _data_root() -> Path:
    """The folder holding configs/ (prices, templates, sim models, built-in configs) and data/ (seeds):
    inside the installed package for a wheel (setup.py bundles them as agen/_bundled), else the checkout."""
    here = Path(__file__).resolve().parent
    return here / "_bundled" if (here / "_bundled" / "configs").is_dir() else here.parent


DATA_ROOT = _data_root()
CONFIGS_DIR = DATA_ROOT / "configs"
BUILTIN_CONFIGS = ("quickstart", "open_ended", "quickstart_math", "quickstart_choice",
                   "quickstart_code")  # `agen run quickstart` from any directory


def builtin_config(name: str) -> Path | None:
    """The shipped config a bare name stands for (`quickstart` -> configs/quickstart.yaml), if any."""
    path = CONFIGS_DIR / f"{name}.yaml"
    return path if name in BUILTIN_CONFIGS and path.is_file() else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rates(_Strict):
    """USD per million tokens. `cache_write` defaults to `input` when a provider does not say."""

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)
    cache_write: float | None = Field(default=None, ge=0)


BATCH_SHARE = 0.5  # OpenAI's Batch API and Anthropic's Message Batches bill half of every online rate


class Price(Rates):
    """A model's online rates and what its provider's batch API bills: `batch` rates when given, else
    `batch_share` of every online rate (the table's `batch_share` fills it for the shipped models)."""

    batch_share: float = Field(default=BATCH_SHARE, ge=0, le=1)
    batch: Rates | None = None

    def rates(self, batch: bool = False) -> Rates:
        """The rates a call is billed at: online, or through the provider's batch API."""
        if not batch:
            return self
        if self.batch is not None:
            return self.batch
        k = self.batch_share
        return Rates(input=self.input * k, output=self.output * k,
                     cached_input=None if self.cached_input is None else self.cached_input * k,
                     cache_write=None if self.cache_write is None else self.cache_write * k)


_SECRET_HEADER_PARTS = ("key", "token", "secret", "auth", "cookie")  # authorization, x-api-key, x-auth-token, ...
_CREDENTIAL_NAMES = {"key", "apikey", "api_key", "token", "access_token", "refresh_token", "id_token", "auth_token",
                     "bearer", "secret", "client_secret", "password", "passwd", "auth", "authorization", "sig",
                     "signature", "cookie", "credential", "credentials", "x_api_key", "x_goog_api_key"}


def _credential_name(name: str) -> bool:
    """A parameter name that usually carries a secret (max_tokens, top_k or prompt_cache_key do not)."""
    n = name.lower().replace("-", "_")
    return (n in _CREDENTIAL_NAMES or n.endswith(("_api_key", "apikey", "_secret", "_password", "_token"))
            or (n.endswith("_key") and any(w in n for w in ("secret", "private", "access", "auth"))))


# Shapes of common provider keys: OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-), OpenRouter
# (sk-or-), Groq (gsk_), xAI, Hugging Face, Google, Perplexity, Replicate, GitHub, AWS, NVIDIA, Fireworks.
_KEY_SHAPE = re.compile(r"(?<![A-Za-z0-9])(sk-(?:ant-|proj-|svcacct-|or-)?|gsk_|xai-|hf_|AIza|pplx-|r8_|ghp_|"
                        r"github_pat_|nvapi-|fw_)[A-Za-z0-9_\-]{16,}|(?<![A-Z0-9])(AKIA)[0-9A-Z]{16}(?![A-Z0-9])")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # UPPER_SNAKE: a mixed-case token is more likely a pasted key
_NOT_SECRET = ("api_key_env", "password_env")  # the name of the variable, not its value


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(dotted path, text) of every string inside a dumped config, dict keys included."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            yield sub, str(k)
            yield from _strings(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def key_shaped(text: str) -> str | None:
    """The prefix of an API-key-shaped token in `text` (never the key itself), or None."""
    m = _KEY_SHAPE.search(text)
    return None if m is None else (m.group(1) or m.group(2))


def check_secrets_by_value(cfg: RunConfig, environ: Mapping[str, str]) -> None:
    """Refuse a config holding the value of any api_key_env variable, wherever it stands."""
    values = {m.api_key_env: environ.get(m.api_key_env, "") for m in cfg.models.values() if m.api_key_env}
    values.update({q.password_env: environ.get(q.password_env, "") for m in cfg.models.values()
                   if (q := m.shared_quota) is not None and q.password_env})
    if cfg.coordinator is not None and cfg.coordinator.password_env:
        values[cfg.coordinator.password_env] = environ.get(cfg.coordinator.password_env, "")
    values = {k: v for k, v in values.items() if len(v) >= 8}
    if not values:
        return
    for path, text in _strings(cfg.model_dump(mode="json"), ""):
        if path.endswith(_NOT_SECRET):
            continue
        for env, value in values.items():
            if value in text:
                raise ConfigError(f"{path}: holds the value of ${env} (an API key); the config is snapshotted "
                                  f"into the run directory: leave the key in the environment and name the "
                                  f"variable in api_key_env")


def _credential_paths(value: Any, path: str) -> list[str]:
    """Dotted paths of credential-like names anywhere inside a nested extra_params value."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}"
            if _credential_name(str(k)) and not isinstance(v, dict) and v not in (None, "", [], False):
                found.append(sub)
            else:
                found += _credential_paths(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _credential_paths(v, f"{path}[{i}]")
    return found


def check_redis_url(url_text: str, password_env: str | None) -> None:
    """A Redis URL the config may hold (it is snapshotted): no password in it, a known scheme, and
    password_env a variable NAME."""
    try:
        url = urlsplit(url_text)
        password = url.password
    except ValueError:
        raise ValueError("url is not a valid URL") from None
    if url.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"url must start with redis://, rediss:// or unix:// (got {url.scheme or 'no'} scheme)")
    if password is not None or (url.scheme != "unix" and "@" in url.netloc and url.username):
        raise ValueError("url carries credentials (user:password@host); it is written to the run directory's "
                         "config snapshot: put the password in an environment variable named in password_env")
    if any(_credential_name(k) for k, _ in parse_qsl(url.query, keep_blank_values=True)):
        raise ValueError("url has a credential in its query; use password_env")
    env = password_env
    if env is not None and (key_shaped(env) or not _ENV_NAME.fullmatch(env)):
        raise ValueError("password_env must be the NAME of an environment variable, not the password")


class SharedQuotaConfig(_Strict):
    """A model's RPM/TPM held in Redis and shared by every process naming the same quota `name`."""

    url: str  # redis://host:port/db or rediss://...; no password here (it is snapshotted): password_env
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")
    password_env: str | None = None  # name of the environment variable holding the Redis password
    max_connections: int = Field(default=4, ge=1, le=1024)
    timeout_s: float = Field(default=5.0, gt=0)  # longer than this without an answer: stop the run (resumable)

    @model_validator(mode="after")
    def _url_is_redis_without_password(self) -> SharedQuotaConfig:
        check_redis_url(self.url, self.password_env)
        return self


class CoordinatorConfig(_Strict):
    """One logical run split over many worker processes through Redis (`agen/coord`): claims of
    task indices, the global accepted counts, the shared proposal pool and exact-duplicate set."""

    url: str  # redis://host:port/db or rediss://...; no password here (snapshotted): password_env
    worker_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")  # default: fingerprint
    password_env: str | None = None
    lease_s: float = Field(default=30.0, ge=1.0)  # a killed worker's claims return to the pool after this
    timeout_s: float = Field(default=5.0, gt=0)  # Redis silent this long: the worker stops (exit 6)

    @model_validator(mode="after")
    def _url_is_redis_without_password(self) -> CoordinatorConfig:
        check_redis_url(self.url, self.password_env)
        return self


Mode = Literal["online", "batch"]


class BatchConfig(_Strict):
    """How requests sent in batch mode are grouped, submitted and awaited (providers/batch_collector.py).

    Batch APIs bill about half the online price but answer within a completion window (up to
    24 h), so a batch is worth filling: it is submitted once `max_size` requests wait, or
    `max_wait_s` after its first request arrived, whichever comes first."""

    max_size: int = Field(default=1000, ge=1, le=50_000)  # requests per batch (OpenAI allows 50,000)
    max_wait_s: float = Field(default=30.0, gt=0)  # a batch is submitted at most this long after its first request
    poll_s: float = Field(default=10.0, gt=0)  # first poll of a submitted batch; then backoff ...
    poll_max_s: float = Field(default=300.0, gt=0)  # ... doubling up to this cap
    on_failed_lines: Literal["online", "batch"] = "batch"  # retry an errored/expired line online or in a new batch
    line_retries: int = Field(default=2, ge=0)  # a line failing more often than this fails its task
    completion_window: Literal["24h"] = "24h"  # OpenAI's only window (Anthropic's is fixed at 24 h)


class ModelConfig(_Strict):
    """One model endpoint, and therefore one lane: its limits are shared by every stage using it."""

    provider: Literal["openai", "anthropic"] = "openai"
    mode: Mode = "online"  # batch: requests go through the provider's batch API (half price, hours of latency)
    kind: Literal["chat", "reward"] = "chat"  # reward: a reward-model endpoint (vLLM Pooling API)
    model: str  # the wire id sent to the endpoint
    base_url: str = "sim"  # "sim" means the built-in simulated provider of this run
    api_key_env: str | None = None  # name of the environment variable holding the key
    max_concurrency: int = Field(default=64, ge=1, le=100_000)
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    price: Price | None = None  # overrides configs/prices.yaml
    # What the endpoint does, if you know (else learned from its responses; see "Endpoints in the wild"):
    supports_n: bool | None = None  # OpenAI-compatible `n` honoured; Anthropic never does
    charges: Literal["max_tokens", "usage"] | None = None  # TPM: max_tokens reserved up front, or real usage
    window: Literal["steady", "fixed"] | None = None  # limits refill steadily, or reset at fixed clock windows
    unreachable_after_s: float = Field(default=30.0, gt=0)  # every attempt failing at transport level this long:
    unreachable_after_attempts: int | None = Field(default=None, ge=1)  # (or this many in a row) stop the run
    failing_after_s: float = Field(default=30.0, gt=0)  # every answer a 5xx this long: stop the run (resumable)
    max_retries: int = Field(default=8, ge=0)
    bad_response_retries: int = Field(default=2, ge=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)  # idle time between bytes
    # The chat/reward POSTs' HTTP client: agen's lean HTTP/1.1 pool (providers/http1), or aiohttp's
    # (the batch and file APIs always use aiohttp); a safety valve for a server the lean one misreads
    http_client: Literal["agen", "aiohttp"] = "agen"
    extra_params: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    shared_quota: SharedQuotaConfig | None = None  # rpm/tpm held in Redis, shared with other processes
    # Anthropic: the shortest prefix its prompt cache takes (agen marks a static system prompt with
    # cache_control only from this long); default by model name (providers/prompt_cache)
    cache_min_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _headers_fit_http(self) -> ModelConfig:
        """Said at load, not as a failed request: a line break would end the header (or inject one)."""
        for name, value in self.headers.items():
            if any(c in name or c in value for c in "\r\n\0"):
                raise ValueError(f"headers.{name}: a header name or value cannot hold a line break or NUL")
        return self

    @model_validator(mode="after")
    def _no_secrets_in_config(self) -> ModelConfig:
        """Keys live in the environment: a config is snapshotted into the run directory."""
        for name in self.headers:
            if any(part in name.lower() for part in _SECRET_HEADER_PARTS):
                raise ValueError(f"headers.{name} would write a credential into the run directory's "
                                 f"config snapshot; put the key in an environment variable and name it "
                                 f"in api_key_env")
        found = _credential_paths(self.extra_params, "extra_params")
        if found:
            raise ValueError(f"{', '.join(found)} looks like a credential (the config is snapshotted into the "
                             f"run directory); use api_key_env")
        return self

    @model_validator(mode="after")
    def _batch_is_for_chat(self) -> ModelConfig:
        if self.kind == "reward" and self.mode == "batch":
            raise ValueError("mode: batch is for chat models; a reward endpoint has no batch API (use mode: online)")
        return self

    @model_validator(mode="after")
    def _api_key_env_is_a_name(self) -> ModelConfig:
        """A key pasted as api_key_env is refused without being echoed."""
        env = self.api_key_env
        if env is not None and (key_shaped(env) or not _ENV_NAME.fullmatch(env)):
            raise ValueError("api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                             "and this looks like a key was pasted there: put the key in the environment "
                             "and write the variable's name here")
        return self

    @model_validator(mode="after")
    def _no_credentials_in_base_url(self) -> ModelConfig:
        """A key in the URL (user:key@host, ?key=...) would be written to the config snapshot too."""
        if self.base_url == "sim":
            return self
        try:
            url = urlsplit(self.base_url)
            has_userinfo = url.username is not None or url.password is not None or "@" in url.netloc
            url.port  # noqa: B018  # raises ValueError for a port out of range (http://host:99999)
        except ValueError:
            raise ValueError("base_url is not a valid URL (is its port between 1 and 65535?)") from None
        if url.scheme in ("http", "https") and not url.hostname:  # a wrong scheme: preflight names it
            raise ValueError("base_url has no host, e.g. http://127.0.0.1:8000/v1")
        if has_userinfo:
            raise ValueError("base_url carries credentials (user:password@host); it is written to the run "
                             "directory's config snapshot: put the key in an environment variable named in "
                             "api_key_env")
        names = sorted({k for k, _ in parse_qsl(url.query, keep_blank_values=True) if _credential_name(k)})
        if names:
            raise ValueError(f"base_url query parameter {', '.join(repr(n) for n in names)} looks like a "
                             f"credential; it is written to the run directory's config snapshot: use api_key_env")
        return self


class SeedsConfig(_Strict):
    path: str
    question_field: str = "question"
    answer_field: str | None = "answer"
    answer_format: Literal["gsm8k", "boxed", "plain"] = "gsm8k"
    category_field: str | None = None
    limit: int | None = Field(default=None, ge=1)


class StageConfig(_Strict):
    """A generation stage (propose or amplify). Templates default by task kind."""

    model: str
    workers: int = Field(default=16, ge=1)
    target: int = Field(default=10, ge=0)  # accepted examples wanted from this stage
    shots: int = Field(default=2, ge=1, le=8)  # examples shown in each prompt
    seed_mix: float = Field(default=0.0, ge=0, le=1)  # amplify: share of shots drawn from seeds
    # amplify: accepted proposals to wait for before amplifying (or until propose is done), so
    # the first prompts do not all show the first few proposals; at least `shots` either way
    min_pool: int = Field(default=10, ge=1)
    max_tokens: int = Field(default=1024, ge=16)
    temperature: float = Field(default=0.8, ge=0, le=2)
    template: str | None = None  # default: {task}_generate.txt
    example_template: str | None = None  # default: {task}_example.txt
    max_attempts: int | None = Field(default=None, ge=1)  # cap on candidates tried; default 20 * target + 100
    mode: Mode | None = None  # this stage's generation requests online or in batch; default: the model's mode

    def attempts_cap(self) -> int:
        """The finite cap on candidates this stage may try (over every session of the run)."""
        return self.max_attempts or 20 * self.target + 100


class VoteConfig(_Strict):
    """Answer-Consistency: K solutions, majority must equal the candidate's answer."""

    model: str
    k: int = Field(default=16, ge=1, le=256)
    min_share: float = Field(default=0.5, gt=0, le=1)
    early_stop: bool = True
    max_tokens: int = Field(default=512, ge=16)
    temperature: float = Field(default=0.7, ge=0, le=2)
    template: str | None = None  # default: the domain's (`verify`) solve template
    concurrency: int = Field(default=64, ge=1)  # candidates being voted at once
    mode: Mode | None = None  # vote samples online or in batch (waves); default: the model's mode


class SandboxConfig(_Strict):
    """Limits of one run of generated code (`verify: code`); see agen/verify/sandbox.py."""

    cpu_s: float = Field(default=2.0, gt=0, le=60)  # CPU seconds (RLIMIT_CPU)
    wall_s: float = Field(default=5.0, gt=0, le=300)  # then the process group is killed
    memory_mb: int = Field(default=512, ge=64, le=16384)  # address space (RLIMIT_AS)
    parallel: int | None = Field(default=None, ge=1)  # sandboxes at once; default: CPU count


class Threshold(_Strict):
    """A fixed value, or a percentile of the pilot pool (frozen once calibrated)."""

    percentile: float | None = Field(default=None, ge=0, le=100)
    value: float | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Threshold:
        if (self.percentile is None) == (self.value is None):
            raise ValueError("give exactly one of 'percentile' or 'value'")
        return self


class RipThresholdsConfig(_Strict):
    min_reward: Threshold = Threshold(percentile=50)  # tau1: lowest reward must reach this
    min_len: Threshold = Threshold(percentile=50)  # tau2: the lowest-reward response's length
    max_gap: Threshold = Threshold(percentile=50)  # tau3: highest minus lowest reward


class RipConfig(_Strict):
    """RIP (arXiv 2501.18578): K responses per prompt, scored; keep prompts whose worst is good."""

    model: str  # the policy model that answers the candidate prompt
    k: int = Field(default=8, ge=2, le=64)
    judge_model: str
    judge_kind: Literal["llm", "reward"] = "llm"  # LLM judge via chat, or a reward-model endpoint
    respond_template: str = "open_respond.txt"
    judge_template: str = "open_judge.txt"
    max_tokens: int = Field(default=768, ge=16)
    judge_max_tokens: int = Field(default=512, ge=16)
    temperature: float = Field(default=1.0, ge=0, le=2)
    min_scored: float = Field(default=0.75, gt=0, le=1)  # share of K that must get a valid score
    thresholds: RipThresholdsConfig = RipThresholdsConfig()
    pilot: int = Field(default=32, ge=1)  # candidates scored before percentile thresholds freeze
    concurrency: int = Field(default=32, ge=1)
    mode: Mode | None = None  # responses and judge scores online or in batch; default: each model's mode

    @model_validator(mode="after")
    def _pilot_fits(self) -> RipConfig:
        if self.pilot > self.concurrency:
            raise ValueError(f"pilot ({self.pilot}) must not exceed concurrency ({self.concurrency}): the "
                             f"pilot's candidates wait together, each holding a filter worker, until "
                             f"the thresholds freeze")
        return self


class CategoriesConfig(_Strict):
    """Seeds without a category get one from a cheap classification call, cached in the run."""

    model: str
    template: str = "classify_category.txt"
    max_tokens: int = Field(default=64, ge=8)


class DedupConfig(_Strict):
    near_threshold: float = Field(default=0.7, gt=0, le=1)  # ROUGE-L F1, Self-Instruct's rule


class WatchdogConfig(_Strict):
    """When a stage stops making progress the run stops (exit 5), naming the cause (engine/watchdog.py)."""

    enabled: bool = True
    window: int = Field(default=40, ge=5)  # the last N finished candidates of a stage ...
    share: float = Field(default=0.95, gt=0.5, le=1)  # ... this share rejected for one reason family


class PromptsConfig(_Strict):
    """How prompts are laid out (output-defining: the messages a model sees change)."""

    # static template text first, as a system message shared by every request of a stage, and the
    # variable part (examples, question) last, so providers' prompt caches can serve the prefix
    cache_layout: bool = True


class OutputConfig(_Strict):
    dir: str = "runs/quickstart"
    shard_max_records: int = Field(default=10_000, ge=1)
    shard_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)


class BudgetConfig(_Strict):
    usd: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, gt=0)


class SimulatorConfig(_Strict):
    """Start the built-in simulated provider for this run (models with base_url: sim use it)."""

    config: str | None = None  # a sim YAML; None means configs/sim_models.yaml
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: pick a free port


class RunConfig(_Strict):
    task: Literal["verifiable", "open_ended"] = "verifiable"
    verify: Literal["math", "choice", "code"] = "math"  # verifiable tasks: how answers are checked
    seed: int = 0
    seeds: SeedsConfig
    models: dict[str, ModelConfig]
    propose: StageConfig
    amplify: StageConfig
    vote: VoteConfig | None = None  # verifiable tasks
    rip: RipConfig | None = None  # open-ended tasks
    categories: CategoriesConfig | None = None  # open-ended: classify seeds lacking a category
    dedup: DedupConfig = DedupConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    prompts: PromptsConfig = PromptsConfig()
    output: OutputConfig = OutputConfig()
    budget: BudgetConfig = BudgetConfig()
    simulator: SimulatorConfig | None = None
    coordinator: CoordinatorConfig | None = None  # many workers, one run (agen/coord)
    sandbox: SandboxConfig = SandboxConfig()  # verify: code
    batch: BatchConfig = BatchConfig()  # models or stages in `mode: batch`
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _no_key_shaped_values(self) -> RunConfig:
        """Anything shaped like a provider key, anywhere (headers, extra_params at any depth, base_url
        path or query, ...), is refused: the config is snapshotted into the run directory."""
        for path, text in _strings(self.model_dump(mode="json"), ""):
            prefix = None if path.endswith(_NOT_SECRET) else key_shaped(text)
            if prefix:
                raise ValueError(f"{path} holds what looks like an API key ({prefix}…); the config is "
                                 f"snapshotted into the run directory: put the key in an environment "
                                 f"variable and name it in api_key_env")
        return self

    @model_validator(mode="after")
    def _models_exist(self) -> RunConfig:
        if self.task == "verifiable" and self.vote is None:
            raise ValueError("task 'verifiable' needs a 'vote:' section (answer-consistency filter)")
        if self.task == "open_ended" and self.rip is None:
            raise ValueError("task 'open_ended' needs a 'rip:' section (RIP filter)")
        if self.task == "verifiable" and self.rip is not None:
            raise ValueError("'rip:' is the open-ended filter; task 'verifiable' uses 'vote:' (remove 'rip:' or "
                             "set task: open_ended)")
        if self.task == "open_ended" and self.vote is not None:
            raise ValueError("'vote:' is the verifiable filter; task 'open_ended' uses 'rip:' (remove 'vote:')")
        if self.task == "open_ended" and self.verify != "math":
            raise ValueError(f"verify: {self.verify!r} chooses how verifiable answers are checked; task "
                             f"'open_ended' has none (remove 'verify:' or set task: verifiable)")
        refs = [("propose.model", self.propose.model), ("amplify.model", self.amplify.model)]
        if self.vote is not None:
            refs.append(("vote.model", self.vote.model))
        if self.rip is not None:
            refs += [("rip.model", self.rip.model), ("rip.judge_model", self.rip.judge_model)]
        if self.categories is not None:
            refs.append(("categories.model", self.categories.model))
        for where, name in refs:
            if name not in self.models:
                known = ", ".join(sorted(self.models)) or "(none)"
                raise ValueError(f"{where}: no model named {name!r}; models defined: {known}")
            wants_reward = where == "rip.judge_model" and self.rip is not None and self.rip.judge_kind == "reward"
            if (self.models[name].kind == "reward") != wants_reward:
                need = "reward" if wants_reward else "chat"
                raise ValueError(f"{where}: model {name!r} has kind {self.models[name].kind!r}, needs kind {need!r}")
        if self.simulator is None:
            for name, m in self.models.items():
                if m.base_url == "sim":
                    raise ValueError(f"models.{name}.base_url is 'sim' but the config has no "
                                     f"'simulator:' section; add one or give a real base_url")
        return self

    def mode_for(self, stage: str, model: str) -> str:
        """`online` or `batch` for a request of `stage` (`amplify`, `propose.vote`, `amplify.judge`, ...)
        to `model`: the stage's or filter's own `mode` if set, else the model's."""
        head, _, part = stage.partition(".")
        own: str | None = None
        if part == "vote" and self.vote is not None:
            own = self.vote.mode
        elif part in ("respond", "judge") and self.rip is not None:
            own = self.rip.mode
        elif not part and head in ("propose", "amplify"):
            own = self.propose.mode if head == "propose" else self.amplify.mode
        m = self.models.get(model)
        return own or (m.mode if m is not None else "online")

    def uses_batch(self) -> bool:
        """Whether any model or stage sends in batch mode."""
        stages = [self.propose.mode, self.amplify.mode, self.vote.mode if self.vote else None,
                  self.rip.mode if self.rip else None]
        return "batch" in stages or any(m.mode == "batch" for m in self.models.values())

    def template(self, stage: StageConfig, part: str = "generate") -> str:
        """The generation (or example) template of a stage, defaulting by task kind."""
        chosen = stage.template if part == "generate" else stage.example_template
        if chosen:
            return chosen
        if self.task == "open_ended":
            return f"open_{part}.txt"
        return f"{self.verify}_generate.txt" if part == "generate" and self.verify != "math" else f"verifiable_{part}.txt"

    def solve_template(self) -> str:
        """The vote's solve template, defaulting by domain (`verify`)."""
        if self.vote is not None and self.vote.template:
            return self.vote.template
        return "verifiable_solve.txt" if self.verify == "math" else f"{self.verify}_solve.txt"

    def fingerprint(self) -> str:
        """Hash of the fields that change what the run writes (see `OUTPUT_FIELDS`)."""
        return hashlib.sha256(orjson.dumps(output_defining(self), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# Fields that do not change the output: they may differ when a run is resumed.
RESUMABLE_FIELDS = {
    "models.*.max_concurrency", "models.*.rpm", "models.*.tpm", "models.*.max_retries",
    "models.*.bad_response_retries", "models.*.connect_timeout_s", "models.*.read_timeout_s",
    "models.*.headers", "models.*.api_key_env", "models.*.shared_quota", "models.*.base_url", "models.*.price",
    "models.*.cache_min_tokens", "models.*.http_client",
    "propose.workers", "amplify.workers", "vote.concurrency", "rip.concurrency", "propose.target", "amplify.target",
    "propose.max_attempts", "amplify.max_attempts", "budget", "output.dir", "simulator", "watchdog",
    "sandbox.parallel", "models.*.mode", "propose.mode", "amplify.mode", "vote.mode", "rip.mode", "batch",
    "log_level", "coordinator",
}


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


_RESUMABLE_PARTS = [pattern.split(".") for pattern in RESUMABLE_FIELDS]


def _resumable(path: str) -> bool:
    parts = path.split(".")
    return any(len(parts) >= len(pp) and all(p == "*" or p == q for p, q in zip(pp, parts))
               for pp in _RESUMABLE_PARTS)


def output_defining(cfg: RunConfig) -> dict[str, Any]:
    """The flattened config without the fields that may change on resume.

    `verify: math` (the default) and the sandbox limits of a run that runs no code are left out,
    so the fingerprint of a run started before those keys existed is unchanged."""
    flat = _flatten(cfg.model_dump(mode="json"))
    if flat.get("verify") == "math":
        del flat["verify"]
    if cfg.verify != "code":
        flat = {k: v for k, v in flat.items() if not k.startswith("sandbox.")}
    return {k: v for k, v in flat.items() if not _resumable(k)}


def changed_output_fields(old: RunConfig, new: RunConfig) -> list[str]:
    """Paths of output-defining fields that differ between two configs (for resume refusal)."""
    a, b = output_defining(old), output_defining(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _describe(err: dict[str, Any], raw: Any, source: str) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        parent = raw
        for p in err["loc"][:-1]:
            parent = parent.get(p, {}) if isinstance(parent, dict) else {}
        model = _model_at(err["loc"][:-1])
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"{source}: {loc}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{source}: {loc}: required key is missing"
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or _maybe_secret(got, raw) else f" (got {got!r})"
    return f"{source}: {loc or '(top level)'}: {err['msg']}{shown}"


def _maybe_secret(value: Any, raw: Any) -> bool:
    """Never echo what could be a key: long strings, key-shaped ones, or the value of an
    environment variable a model names in api_key_env."""
    if not isinstance(value, str):
        return False
    if len(value) >= 16 or key_shaped(value):
        return True
    models = raw.get("models") if isinstance(raw, dict) else None
    envs = [m.get("api_key_env") for m in models.values() if isinstance(m, dict)] if isinstance(models, dict) else []
    return any(isinstance(e, str) and os.environ.get(e) == value for e in envs)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = RunConfig
    i = 0
    while model is not None and i < len(loc):
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return None
        ann = field.annotation
        if str(loc[i]) == "models":
            model, i = ModelConfig, i + 2
            continue
        args = getattr(ann, "__args__", ())
        cands = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = cands[0] if cands else None
        i += 1
    return model


def parse_config(raw: Any, source: str = "config") -> RunConfig:
    """Validate a loaded YAML document; raise ConfigError listing every problem with its path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, raw, source) for e in exc.errors()]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None
    try:
        check_secrets_by_value(cfg, os.environ)
    except ConfigError as exc:
        raise ConfigError(f"invalid config:\n  {source}: {exc}") from None
    return cfg


def resolve_beside_config(path: Path, config_dir: Path | None) -> Path:
    """A relative path a config names (seeds, simulator.config): from the config's folder, then
    the working directory, then agen's own — the order templates are found in, so a starter's
    own files win over same-named ones in cwd."""
    if path.is_absolute():
        return path
    for root in (config_dir, Path.cwd(), CONFIGS_DIR.parent):
        if root is not None and (root / path).is_file():
            return root / path
    return path


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML run config; `overrides` are dotted paths set after reading."""
    p = Path(path)
    try:
        raw = yaml_text.load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: not a config file (a folder)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (not UTF-8)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(raw, dotted, value, str(p))
    return parse_config(raw, str(p))


def k_key(config: Any) -> str:
    """What a `--k` / `k=` shortcut sets: the filter's sample count, `rip.k` for an open-ended task.
    `config` is a RunConfig, a raw mapping or a YAML path (unreadable: `vote.k`, and loading the
    config then says what is wrong with it)."""
    if isinstance(config, (str, Path)):
        try:
            config = yaml_text.load(Path(config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            config = None
    task = config.get("task") if isinstance(config, dict) else getattr(config, "task", None)
    return "rip.k" if task == "open_ended" else "vote.k"


def set_dotted(raw: Any, dotted: str, value: Any, source: str) -> None:
    """Set `a.b.c` in a config's raw mapping; a section left empty in the YAML (`budget:`, i.e.
    null) is a section with nothing set, not an error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config is not a mapping of sections")
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            raise ConfigError(f"{source}: cannot set {dotted}: {key} is not a section")
        node = node[key]
    node[last] = value


def load_prices(path: Path | None = None) -> dict[str, Price]:
    """The dated price table shipped in configs/prices.yaml, keyed by wire model id (batch rates included)."""
    p = path or CONFIGS_DIR / "prices.yaml"
    try:
        raw = yaml_text.load(p.read_text(encoding="utf-8"))
        share = raw.get("batch_share", BATCH_SHARE)
        return {name: Price.model_validate({"batch_share": share, **v}) for name, v in raw["models"].items()}
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the price table: {exc.strerror}") from None
    except (yaml.YAMLError, ValidationError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{p}: not a valid price table ({type(exc).__name__})") from None


def price_for(name: str, cfg: ModelConfig, table: dict[str, Price]) -> Price:
    """The run config's price wins; then the table; unknown models cost 0 and are flagged."""
    if cfg.price is not None:
        return cfg.price
    if cfg.model in table:
        return table[cfg.model]
    raise ConfigError(f"models.{name}: no price for model {cfg.model!r} in {CONFIGS_DIR / 'prices.yaml'}; "
                      f"add `price: {{input: ..., output: ...}}` (USD per million tokens) to the model")
