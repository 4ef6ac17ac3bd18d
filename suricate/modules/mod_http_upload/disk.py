"""The `disk` backend: files kept in a folder and served by Suricate's own HTTP listener
(`[[listen.http.handlers.mod_http_upload]]`), so the embedded default offers upload with no
store to set up.

A slot's PUT URL carries its own proof (no slot table): `?v=<expires>.<size>.<mac>`, the MAC
(HMAC-SHA-256 with a key file next to the configuration) binding the file's path, size,
content type and expiry. The endpoint accepts the PUT only while the proof holds, with exactly
that Content-Length and the Content-Type asked for in the slot request (a slot asked for
without one takes the PUT's, XEP-0363 §6), and streams the body to a temporary file in chunks,
renamed into place once complete: a file is never held whole in memory, and a short or long
body leaves nothing behind.

A file's path is `<folder>/<token>/<name>`: the token is the slot's random hex and the name one
path component checked by `safe_name` (no separator, no `..`, no NUL), so a request cannot reach
outside the folder whatever it contains.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from suricate.net.http.message import Request, Response

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("suricate.mod_http_upload")

CHUNK = 65536
_TOKEN = re.compile(r"^[0-9a-f]{2,256}$")
TYPE_FILE = ".content-type"  # the content type the file was put with, next to it
ANY_TYPE = ""  # what a slot asked for without a content type is signed with
DEFAULT_TYPE = "application/octet-stream"  # XEP-0363 §6: a PUT without a Content-Type
# Browsers (Converse.js) PUT and GET from the web client's origin.
CORS = {"Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "86400"}


def safe_name(name: str) -> bool:
    """One harmless path component."""
    return bool(name) and name not in (".", "..") and not name.startswith(".") \
        and not any(c in name for c in "/\\\0")


class DiskSlots:
    """Signs and checks PUT URLs and maps URLs to files."""

    def __init__(self, key: bytes, directory: Path, base_url: str) -> None:
        self.key = key
        self.directory = directory
        self.base_url = base_url.rstrip("/")

    def _mac(self, relpath: str, size: int, content_type: str, expires: int) -> str:
        msg = f"{relpath}\0{size}\0{content_type}\0{expires}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def slot(self, token: str, name: str, size: int, content_type: str,
             expires: int) -> tuple[str, str]:
        """(PUT URL, GET URL)."""
        relpath = f"{token}/{name}"
        url = f"{self.base_url}/{quote(token)}/{quote(name)}"
        proof = f"{expires}.{size}.{self._mac(relpath, size, content_type, expires)}"
        return f"{url}?v={proof}", url

    def locate(self, path_below: str) -> tuple[str, str] | None:
        """(token, name) of a URL path below the handler's path, or None."""
        parts = path_below.strip("/").split("/")
        if len(parts) != 2:
            return None
        token, name = unquote(parts[0]), unquote(parts[1])
        if not _TOKEN.match(token) or not safe_name(name):
            return None
        return token, name

    def check(self, token: str, name: str, proof: str, size: int | None,
              content_type: str, now: float) -> str | None:
        """Why the PUT is refused, or None."""
        try:
            expires_text, size_text, mac = proof.split(".")
            expires, signed_size = int(expires_text), int(size_text)
        except ValueError:
            return "forbidden: malformed upload token"
        good = self._mac(f"{token}/{name}", signed_size, content_type, expires)
        # XEP-0363 §6: only a content type specified beforehand must match; a slot asked for
        # without one (signed with ANY_TYPE) takes whatever the PUT says.
        anything = self._mac(f"{token}/{name}", signed_size, ANY_TYPE, expires)
        if not (hmac.compare_digest(good, mac) or hmac.compare_digest(anything, mac)):
            return "forbidden: wrong upload token, or a content type other than the slot's"
        if now > expires:
            return "forbidden: the upload slot has expired"
        if size != signed_size:
            return f"size: Content-Length must be {signed_size}, as requested in the slot"
        return None


class UploadEndpoint:
    """`[[listen.http.handlers.mod_http_upload]]`: PUT into a slot, GET what was put."""

    def __init__(self, slots: DiskSlots, opts: Mapping[str, Any]) -> None:
        self.slots = slots
        self.prefix = str(opts["path"]).rstrip("/")

    async def handle(self, request: Request) -> Response:  # the streaming path is handle_web
        return Response.text(405, "use PUT or GET\n")

    async def handle_web(self, request: web.BaseRequest) -> web.StreamResponse:
        from aiohttp import web

        if request.method == "OPTIONS":
            return web.Response(status=200, headers=CORS)
        # The still-encoded path: `request.path` is decoded already, and `locate` decodes
        # each component once (a "%25" in the URL is a "%" of the name, RFC 3986 §2.1; a
        # second decoding would turn a name's own "%20" into a space).
        located = self.slots.locate(request.rel_url.raw_path[len(self.prefix):])
        if located is None:
            return web.Response(status=404, text="not found\n", headers=CORS)
        token, name = located
        if request.method in ("GET", "HEAD"):
            return await self._get(token, name)
        if request.method == "PUT":
            return await self._put(request, token, name)
        return web.Response(status=405, text="GET, HEAD or PUT\n",
                            headers={"Allow": "GET, HEAD, PUT, OPTIONS", **CORS})

    async def _get(self, token: str, name: str) -> web.StreamResponse:
        from aiohttp import web

        folder = self.slots.directory / token
        path = folder / name
        if not path.is_file():
            return web.Response(status=404, text="not found\n", headers=CORS)
        try:
            content_type = (folder / TYPE_FILE).read_text().strip()
        except OSError:
            content_type = "application/octet-stream"
        # A file someone uploaded is shown as data, never run as a page of this origin.
        headers = {"Content-Type": content_type, "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "sandbox", **CORS}
        return web.FileResponse(path, headers=headers)

    async def _put(self, request: web.BaseRequest, token: str, name: str) -> web.StreamResponse:
        from aiohttp import web

        # An empty header is no type either: a browser sends one for a file it has no type
        # for (Converse.js copies File.type, "", into both the slot request and the PUT).
        content_type = request.headers.get("Content-Type") or DEFAULT_TYPE
        refusal = self.slots.check(token, name, request.query.get("v", ""),
                                   request.content_length, content_type, time.time())
        if refusal is not None:
            status = 413 if refusal.startswith("size") else 403
            return web.Response(status=status, text=refusal + "\n", headers=CORS)
        size = int(request.content_length or 0)
        folder = self.slots.directory / token
        final = folder / name
        if final.exists():
            return web.Response(status=409, text="this slot was already used\n", headers=CORS)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        partial = folder / f".{name}.part"
        received = 0
        try:
            with open(partial, "wb") as out:
                async for chunk in request.content.iter_chunked(CHUNK):
                    received += len(chunk)
                    if received > size:
                        break
                    out.write(chunk)
            if received != size:
                raise ValueError(f"body of {received} bytes, slot of {size}")
            (folder / TYPE_FILE).write_text(content_type)
            os.replace(partial, final)
        except (OSError, ValueError, asyncio.CancelledError) as exc:
            partial.unlink(missing_ok=True)
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.info("upload_refused token=%s error=%s", token, exc)
            return web.Response(status=400, text=f"{exc}\n", headers=CORS)
        return web.Response(status=201, text="created\n", headers=CORS)
