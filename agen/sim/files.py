"""OpenAI's Files API as the sim serves it: the store a batch's input and result files live in.

    POST   /v1/files               multipart: file, purpose -> a file object
    GET    /v1/files               list (optional `purpose`), newest first
    GET    /v1/files/{id}          the file object
    GET    /v1/files/{id}/content  the bytes
    DELETE /v1/files/{id}          {"id", "object": "file", "deleted": true}

Files live in the sim process's memory (`BatchBook.files`), like its batches (and in `batch_dir`
when the sim config names one).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agen.sim import rest

if TYPE_CHECKING:
    from agen.sim.batches import BatchBook
    from agen.sim.server import SimState

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass(slots=True)
class SimFile:
    id: str
    filename: str
    purpose: str  # batch (uploaded) | batch_output (written by a batch)
    data: bytes
    created_at: int
    seq: int = 0  # creation order within the same second

    def meta(self) -> dict[str, Any]:
        """What `batch_dir` keeps beside the bytes."""
        return {"id": self.id, "filename": self.filename, "purpose": self.purpose, "created_at": self.created_at,
                "seq": self.seq}

    def as_object(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "expires_at": None, "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None}


def new_file(book: BatchBook, filename: str, purpose: str, data: bytes) -> SimFile:
    """Store a file under a fresh `file-…` id (random: a restarted sim must not reuse one)."""
    f = SimFile("file-" + os.urandom(12).hex(), filename, purpose, data, int(time.time()))
    book.add_file(f)
    return f


class FileRoutes:
    def __init__(self, st: SimState) -> None:
        self.st = st

    def _start(self, request: web.Request) -> tuple[str, web.Response | None]:
        return rest.admit(request, "openai", self.st)

    def _get(self, request: web.Request, rid: str) -> SimFile | web.Response:
        fid = request.match_info["file_id"]
        f = self.st.batches.files.get(fid)
        if f is None:
            return rest.error("openai", rid, 404, f"No such File object: {fid}", param="id")
        return f

    async def create(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        if not request.content_type.startswith("multipart/"):
            return rest.error("openai", rid, 400, "Expected a multipart/form-data body with 'file' and 'purpose'.")
        form = await request.post()
        purpose = form.get("purpose")
        upload = form.get("file")
        if not isinstance(purpose, str) or not purpose:
            return rest.error("openai", rid, 400, "Missing required parameter: 'purpose'.", param="purpose")
        if purpose not in PURPOSES:
            return rest.error("openai", rid, 400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'",
                              param="purpose")
        if not isinstance(upload, web.FileField):
            return rest.error("openai", rid, 400, "Missing required parameter: 'file'.", param="file")
        f = new_file(self.st.batches, upload.filename or "upload", purpose, upload.file.read())
        return rest.reply("openai", rid, f.as_object())

    async def list(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        limit = rest.int_param(request, "limit", 10_000, 1, 10_000)
        if limit is None:
            return rest.error("openai", rid, 400, "limit must be an integer between 1 and 10000", param="limit")
        purpose = request.query.get("purpose")
        files = [f for f in reversed(self.st.batches.files.values()) if purpose is None or f.purpose == purpose]
        items, more = rest.page(files, request.query.get("after"), None, limit)
        data = [f.as_object() for f in items]
        return rest.reply("openai", rid, {"object": "list", "data": data, "has_more": more,
                                          "first_id": data[0]["id"] if data else None,
                                          "last_id": data[-1]["id"] if data else None})

    async def retrieve(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        f = self._get(request, rid)
        return f if isinstance(f, web.Response) else rest.reply("openai", rid, f.as_object())

    async def content(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        f = self._get(request, rid)
        if isinstance(f, web.Response):
            return f
        return web.Response(body=f.data, content_type="application/octet-stream", headers={"x-request-id": rid})

    async def delete(self, request: web.Request) -> web.Response:
        rid, denied = self._start(request)
        if denied is not None:
            return denied
        f = self._get(request, rid)
        if isinstance(f, web.Response):
            return f
        self.st.batches.delete_file(f.id)
        return rest.reply("openai", rid, {"id": f.id, "object": "file", "deleted": True})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self.create)
        app.router.add_get("/v1/files", self.list)
        app.router.add_get("/v1/files/{file_id}", self.retrieve)
        app.router.add_get("/v1/files/{file_id}/content", self.content)
        app.router.add_delete("/v1/files/{file_id}", self.delete)
