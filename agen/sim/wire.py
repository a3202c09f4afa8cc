"""Error bodies exactly as OpenAI and Anthropic send them, keyed by a wire-neutral error kind."""

from __future__ import annotations

from typing import Any, Literal

Wire = Literal["openai", "anthropic"]

# kind -> (openai status, openai type, openai code, anthropic status, anthropic type)
KINDS: dict[str, tuple[int, str, str | None, int, str]] = {
    "bad_request": (400, "invalid_request_error", None, 400, "invalid_request_error"),
    "context_length": (400, "invalid_request_error", "context_length_exceeded", 400, "invalid_request_error"),
    "auth": (401, "invalid_request_error", "invalid_api_key", 401, "authentication_error"),
    "permission": (403, "invalid_request_error", "unsupported_country_region_territory", 403, "permission_error"),
    "not_found": (404, "invalid_request_error", "model_not_found", 404, "not_found_error"),
    "too_large": (413, "invalid_request_error", "request_too_large", 413, "request_too_large"),
    "rate_requests": (429, "requests", "rate_limit_exceeded", 429, "rate_limit_error"),
    "rate_tokens": (429, "tokens", "rate_limit_exceeded", 429, "rate_limit_error"),
    "quota": (429, "insufficient_quota", "insufficient_quota", 400, "invalid_request_error"),
    "server": (500, "server_error", None, 500, "api_error"),
    "overloaded": (503, "server_error", None, 529, "overloaded_error"),
}

QUOTA_OPENAI = ("You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.")
QUOTA_ANTHROPIC = ("Your credit balance is too low to access the Anthropic API. "
                   "Please go to Plans & Billing to upgrade or purchase credits.")

# Defaults for scripted errors that give only a status.
_OPENAI_BY_STATUS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None), 404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None), 413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None), 429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}
_DEFAULT_MESSAGE: dict[int, str] = {
    400: "Invalid request.", 401: "Invalid API key.", 403: "Permission denied.", 404: "Not found.",
    413: "Request exceeds the maximum allowed number of bytes.", 429: "Rate limit reached.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.", 503: "The server is overloaded or not ready yet.", 529: "Overloaded",
}


def openai_error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error(message: str, type_: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}


def error(wire: Wire, kind: str, message: str, request_id: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) of a known error kind in one wire format."""
    o_status, o_type, o_code, a_status, a_type = KINDS[kind]
    if wire == "openai":
        return o_status, openai_error(message, o_type, o_code, param)
    return a_status, anthropic_error(message, a_type, request_id)


def scripted_error(wire: Wire, status: int, request_id: str, code: str | None = None,
                   type_: str | None = None, message: str | None = None) -> dict[str, Any]:
    """Body for a scripted error status; unspecified fields follow the provider's usual shape."""
    msg = message or _DEFAULT_MESSAGE.get(status, f"Error {status}.")
    if wire == "openai":
        d_type, d_code = _OPENAI_BY_STATUS.get(status, ("server_error", None))
        return openai_error(msg, type_ or d_type, code if code is not None else d_code)
    return anthropic_error(msg, type_ or _ANTHROPIC_BY_STATUS.get(status, "api_error"), request_id)
