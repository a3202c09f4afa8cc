"""Small HTTP helpers shared by the sim's resource routes (files, batches on both wires)."""

from __future__ import annotations

from typing import Any

import math
import time

import orjson
from aiohttp import web

from agen.sim import limits, wire

JSON = "application/json"


def reply(fmt: wire.Wire, rid: str, body: Any, status: int = 200) -> web.Response:
    """A JSON response carrying the wire's request-id header."""
    header = "x-request-id" if fmt == "openai" else "request-id"
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, headers={header: rid})


def error(fmt: wire.Wire, rid: str, status: int, message: str, type_: str | None = None,
          param: str | None = None, code: str | None = None) -> web.Response:
    """An error in the wire's shape; `type_` defaults to invalid_request_error / the status's Anthropic type."""
    if fmt == "openai":
        body = wire.openai_error(message, type_ or "invalid_request_error", code, param)
    else:
        body = wire.anthropic_error(message, type_ or wire._ANTHROPIC_BY_STATUS.get(status, "api_error"), rid)
    return reply(fmt, rid, body, status)


def check_access(request: web.Request, fmt: wire.Wire, key: str | None, rid: str) -> web.Response | None:
    """The error a real endpoint gives a request without the right key (or, Anthropic, without
    `anthropic-version`); None when the request may go on."""
    if key is not None:
        if fmt == "openai":
            auth = request.headers.get("Authorization", "")
            given = auth[7:] if auth.startswith("Bearer ") else ""
        else:
            given = request.headers.get("x-api-key", "")
        if given != key:
            msg = ("You didn't provide an API key." if fmt == "openai" and not given else
                   "Incorrect API key provided." if fmt == "openai" else "invalid x-api-key")
            status, body = wire.error(fmt, "auth", msg, rid)
            return reply(fmt, rid, body, status)
    if fmt == "anthropic" and "anthropic-version" not in request.headers:
        return error(fmt, rid, 400, "anthropic-version: header is required")
    return None


def throttled(fmt: wire.Wire, rid: str, bucket: limits.TokenBucket | None) -> web.Response | None:
    """The 429 of a batch/files route past `batch_api_rpm` (retry-after says when), or None."""
    if bucket is None:
        return None
    wait = bucket.wait_for(1, time.monotonic())
    if wait == 0:
        bucket.take(1)
        return None
    if fmt == "openai":
        msg = (f"Rate limit reached for requests per min (RPM) on batch endpoints: Limit {int(bucket.limit)}. "
               f"Please try again in {limits.duration(wait)}.")
        resp = error(fmt, rid, 429, msg, type_="requests", code="rate_limit_exceeded")
    else:
        resp = error(fmt, rid, 429, "This request would exceed your organization's rate limit. Please try again "
                     "later.", type_="rate_limit_error")
    resp.headers["retry-after"] = str(max(1, math.ceil(wait)))
    return resp


def admit(request: web.Request, fmt: wire.Wire, st: Any) -> tuple[str, web.Response | None]:
    """A batch/files request's id, and the refusal it gets (a bad key, past `batch_api_rpm`) or None."""
    rid = "req_" + st.next_id()
    return rid, (check_access(request, fmt, st.cfg.require_api_key, rid)
                 or throttled(fmt, rid, st.batches.api_bucket))


async def json_body(request: web.Request, fmt: wire.Wire, rid: str) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the 400 a provider answers to anything else."""
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error(fmt, rid, 400, "We could not parse the JSON body of your request.")
    if not isinstance(data, dict):
        return error(fmt, rid, 400, "The request body must be a JSON object.")
    return data


def page(items: list[Any], after: str | None, before: str | None, limit: int) -> tuple[list[Any], bool]:
    """A newest-first list cut like both providers' cursor pages: items after (older than) `after`,
    or before (newer than) `before`; at most `limit`. Items have an `id`; returns (page, has_more)."""
    ids = [i.id for i in items]
    if after is not None:
        items = items[ids.index(after) + 1:] if after in ids else []
    elif before is not None:
        items = items[:ids.index(before)] if before in ids else []
        return items[-limit:], len(items) > limit
    return items[:limit], len(items) > limit


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int | None:
    """A query integer within [lo, hi]; None if it is not one."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        return None
    return v if lo <= v <= hi else None
