"""`stream: true` answered as the real APIs do: server-sent events built from the finished body.

The sim computes the whole answer first (it is simulated anyway), then replays it as the event
sequence each API documents, so the official SDKs' streaming calls work against `agen sim`:

* OpenAI: `chat.completion.chunk` objects (a role delta, content deltas, a final chunk with
  `finish_reason`, a usage-only chunk when `stream_options.include_usage`), then `data: [DONE]`.
* Anthropic: `message_start`, `content_block_start`, `ping`, `content_block_delta`s,
  `content_block_stop`, `message_delta` (stop reason, output tokens), `message_stop`.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from agen.sim.wire import Wire

CHUNK_CHARS = 64  # characters of text per delta event


def _pieces(text: str) -> list[str]:
    return [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def openai_events(body: dict[str, Any], include_usage: bool) -> list[bytes]:
    head = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"],
            "system_fingerprint": body.get("system_fingerprint")}
    out: list[bytes] = []

    def emit(choices: list[dict[str, Any]], **extra: Any) -> None:
        out.append(b"data: " + orjson.dumps({**head, "choices": choices, **extra}) + b"\n\n")

    for c in body["choices"]:
        i = c["index"]
        emit([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
        for piece in _pieces(c["message"]["content"]):
            emit([{"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
        emit([{"index": i, "delta": {}, "logprobs": None, "finish_reason": c["finish_reason"]}])
    if include_usage:
        emit([], usage=body["usage"])
    out.append(b"data: [DONE]\n\n")
    return out


def anthropic_events(body: dict[str, Any]) -> list[bytes]:
    usage = body["usage"]
    start = {**body, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}

    def ev(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    out = [ev("message_start", {"type": "message_start", "message": start}),
           ev("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}),
           ev("ping", {"type": "ping"})]
    for piece in _pieces(body["content"][0]["text"]):
        out.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": piece}}))
    out.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
    out.append(ev("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
                                    "usage": {"output_tokens": usage["output_tokens"]}}))
    out.append(ev("message_stop", {"type": "message_stop"}))
    return out


async def stream(request: web.Request, fmt: Wire, body: dict[str, Any], headers: dict[str, str],
                 opts: dict[str, Any]) -> web.StreamResponse:
    """Send a finished 200 body as its API's event stream."""
    resp = web.StreamResponse(status=200, headers={**headers, "content-type": "text/event-stream",
                                                   "cache-control": "no-cache"})
    await resp.prepare(request)
    events = openai_events(body, opts["include_usage"]) if fmt == "openai" else anthropic_events(body)
    for e in events:
        await resp.write(e)
    await resp.write_eof()
    return resp
