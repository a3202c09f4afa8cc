"""The two wire formats: build a request body from a ChatRequest, parse a 200 body (pure functions).

OpenAI-compatible `/chat/completions` and Anthropic `/v1/messages`. Usage is mapped to
`agen.types.Usage`'s one convention: `input_tokens` counts all prompt tokens, so Anthropic's
cache reads and cache writes (reported outside `input_tokens`) are added in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agen.errors import WireError
from agen.providers.prompt_cache import DEFAULT_MIN_TOKENS, cacheable
from agen.types import ChatRequest, Usage

ANTHROPIC_VERSION = "2023-06-01"


@dataclass(slots=True)  # not frozen: see agen.types
class Parsed:
    texts: tuple[str, ...]
    finish_reasons: tuple[str | None, ...]
    usage: Usage
    request_id: str | None


def openai_body(req: ChatRequest, model: str, extra_params: dict[str, Any], n: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": list(req.messages), "max_tokens": req.max_tokens}
    if n != 1:
        body["n"] = n
    return _sampling(body, req, extra_params, seed=True)


def anthropic_body(req: ChatRequest, model: str, extra_params: dict[str, Any],
                   cache_min_tokens: int = DEFAULT_MIN_TOKENS) -> dict[str, Any]:
    """System messages become the top-level `system`; Anthropic has no `n` and no `seed`.

    A system prompt long enough for the model's prompt cache is sent as one text block marked
    `cache_control: {type: ephemeral}` (the cache-aware layout puts the static prefix there)."""
    system = [m["content"] for m in req.messages if m.get("role") == "system"]
    body: dict[str, Any] = {
        "model": model,
        "messages": [m for m in req.messages if m.get("role") != "system"],
        "max_tokens": req.max_tokens,
    }
    if system:
        text = "\n\n".join(system)
        body["system"] = ([{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]
                          if cacheable(text, cache_min_tokens) else text)
    return _sampling(body, req, extra_params, seed=False)


def _sampling(body: dict[str, Any], req: ChatRequest, extra_params: dict[str, Any], *, seed: bool) -> dict[str, Any]:
    """Adds the sampling fields the request sets (`seed` only where the API has one), then the
    model's `extra_params`, then the request's `extra`: a later source overrides an earlier one."""
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if seed and req.seed is not None:
        body["seed"] = req.seed
    body.update(extra_params)
    body.update(req.extra)
    return body


def _n(d: Any, key: str) -> int:
    if d.__class__ is not dict:
        return 0
    v = d.get(key)
    if v.__class__ is int:
        return v  # type: ignore[no-any-return]
    return int(v) if isinstance(v, float) else 0


def openai_usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    return Usage(
        input_tokens=_n(u, "prompt_tokens"),
        cached_input_tokens=_n(u.get("prompt_tokens_details"), "cached_tokens"),
        output_tokens=_n(u, "completion_tokens"),
        reasoning_tokens=_n(u.get("completion_tokens_details"), "reasoning_tokens"),
    )


def anthropic_usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    read, write = _n(u, "cache_read_input_tokens"), _n(u, "cache_creation_input_tokens")
    return Usage(
        input_tokens=_n(u, "input_tokens") + read + write,
        cached_input_tokens=read,
        cache_write_tokens=write,
        output_tokens=_n(u, "output_tokens"),
    )


def _error_in_body(doc: dict[str, Any]) -> tuple[str, str | None] | None:
    err = doc.get("error")
    if not err:
        return None
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        return str(err.get("message") or "error object in a 200 body"), (str(code) if code else None)
    return str(err), None


def parse_openai(doc: Any) -> Parsed:
    if not isinstance(doc, dict):
        raise WireError("200 body is not a JSON object")
    usage = openai_usage(doc.get("usage"))
    err = _error_in_body(doc)
    if err is not None:
        raise WireError(f"error inside a 200 body: {err[0]}", usage, err[1])
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices:
        raise WireError("200 body has no choices", usage)
    texts, reasons = [], []
    if len(choices) > 1:
        choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    for c in choices:
        msg = c.get("message") if isinstance(c, dict) else None
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, str):
            raise WireError("a choice has no message content", usage)
        texts.append(content)
        reasons.append(c.get("finish_reason"))
    if usage is None:
        raise WireError("200 body has no usage", None)
    rid = doc.get("id")
    return Parsed(tuple(texts), tuple(reasons), usage, rid if isinstance(rid, str) else None)


def parse_anthropic(doc: Any) -> Parsed:
    if not isinstance(doc, dict):
        raise WireError("200 body is not a JSON object")
    usage = anthropic_usage(doc.get("usage"))
    if doc.get("type") == "error" or doc.get("error"):
        err = _error_in_body(doc) or ("error inside a 200 body", None)
        raise WireError(f"error inside a 200 body: {err[0]}", usage, err[1])
    content = doc.get("content")
    if not isinstance(content, list):
        raise WireError("200 body has no content", usage)
    parts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    texts = [p for p in parts if isinstance(p, str)]
    if not texts or len(texts) != len(parts):
        raise WireError("200 body has no text block", usage)
    if usage is None:
        raise WireError("200 body has no usage", None)
    rid = doc.get("id")
    return Parsed(("".join(texts),), (doc.get("stop_reason"),), usage, rid if isinstance(rid, str) else None)


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """Prompt tokens, roughly: chars/4 plus 4 per message (measured good enough, see the README)."""
    chars = sum(len(m.get("content", "")) for m in req.messages)
    return chars // 4 + 4 * len(req.messages)


def estimate_tokens(req: ChatRequest, n: int) -> int:
    """What a `max_tokens`-charging server counts against TPM: prompt + n x max_tokens."""
    return estimate_prompt_tokens(req) + n * req.max_tokens
