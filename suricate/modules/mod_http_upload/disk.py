"""The `disk` backend: files kept in a folder and served by Suricate's own HTTP listener
(`[[listen.http.handlers.mod_http_upload]]`), so the embedded default offers upload with no
store to set up.

A slot's PUT URL carries its own proof (no slot table): `?v=<expires>.<size>.<mac>`, the MAC
(HMAC-SHA-256 with a key file next to the configuration) binding the file's path, size,
content type and expiry. The endpoint accepts the PUT only while the proof holds, with exactly
that Content-Length and the Content-Type asked for in the slot request (a slot asked for
without one takes the PUT's, XEP-0363 §6), and streams the body to a temporary file in chunks,
linked into place once complete: a file is never held whole in memory, and a short or long
body leaves nothing behind. A body that stops arriving for IDLE_TIMEOUT seconds, or arrives
slower than MIN_RATE on average, ends the PUT (408), so a client that never finishes holds no
connection or file. Two PUTs to one slot at
the same time, or one after the first succeeded, get 409: the temporary file is created
exclusively and the final name linked, never overwritten.

The PUT URL also signs the uploader's bare JID (`&o=`, seen only by the uploader), kept as
`.owner` next to the file: removing the account removes its files (`remove_owner`). `sweep`
removes files older than `disk.file_ttl`, and partial files a crash left behind.

A file's path is `<folder>/<token>/<name>`: the token is the slot's random hex and the name one
path component checked by `safe_name` (no separator, no `..`, no NUL), so a request cannot reach
outside the folder whatever it contains.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import logging
import os
import re
import shutil
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
MAX_NAME_BYTES = 200  # a stored name's length (the file system's limit is 255 per name)
_TOKEN = re.compile(r"^[0-9a-f]{2,256}$")
TYPE_FILE = ".content-type"  # the content type the file was put with, next to it
OWNER_FILE = ".owner"  # the uploader's bare JID, next to it
IDLE_TIMEOUT = 30.0  # seconds a PUT's body may stop arriving before the PUT is ended (408)
MIN_RATE = 1024  # bytes/s a whole PUT averages at least (after IDLE_TIMEOUT's grace), else 408
PART_MAX_AGE = 86400  # a partial file this old (seconds) was left by a crash: swept
# Shown in the browser when opened; anything else (HTML, XML, PDF, scripts...) is a download.
INLINE = ("image/", "audio/", "video/", "text/plain")
# An uploaded document never runs, loads anything or submits anything as this origin (the web
# client may be served from it); media and images still display when opened directly.
CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
ANY_TYPE = ""  # what a slot asked for without a content type is signed with
DEFAULT_TYPE = "application/octet-stream"  # XEP-0363 §6: a PUT without a Content-Type
# Browsers (Converse.js) PUT and GET from the web client's origin.
CORS = {"Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "86400"}


def fit_name(name: str) -> str:
    """``name`` cut to MAX_NAME_BYTES of UTF-8, its extension kept (XEP-0363 §4: "keep ...
    especially the file ending intact"): file systems take 255 bytes per name, less the
    partial file's ``.<name>.part``."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    ext = f".{ext}" if dot and stem and len(ext.encode()) <= 16 else ""
    if not ext:
        stem = name
    cut = stem.encode()[:MAX_NAME_BYTES - len(ext.encode())].decode(errors="ignore")
    return cut + ext


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

    def _mac(self, relpath: str, size: int, content_type: str, expires: int,
             owner: str) -> str:
        msg = f"{relpath}\0{size}\0{content_type}\0{expires}\0{owner}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def slot(self, token: str, name: str, size: int, content_type: str,
             expires: int, owner: str = "") -> tuple[str, str]:
        """(PUT URL, GET URL); ``owner`` is the uploader's bare JID."""
        relpath = f"{token}/{name}"
        url = f"{self.base_url}/{quote(token)}/{quote(name)}"
        proof = f"{expires}.{size}.{self._mac(relpath, size, content_type, expires, owner)}"
        return f"{url}?v={proof}&o={quote(owner, safe='@')}", url

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
              content_type: str, now: float, owner: str = "") -> str | None:
        """Why the PUT is refused, or None."""
        try:
            expires_text, size_text, mac = proof.split(".")
            expires, signed_size = int(expires_text), int(size_text)
        except ValueError:
            return "forbidden: malformed upload token"
        good = self._mac(f"{token}/{name}", signed_size, content_type, expires, owner)
        # XEP-0363 §6: only a content type specified beforehand must match; a slot asked for
        # without one (signed with ANY_TYPE) takes whatever the PUT says.
        anything = self._mac(f"{token}/{name}", signed_size, ANY_TYPE, expires, owner)
        if not (hmac.compare_digest(good, mac) or hmac.compare_digest(anything, mac)):
            return "forbidden: wrong upload token, or a content type other than the slot's"
        if now > expires:
            return "forbidden: the upload slot has expired"
        if size != signed_size:
            return f"size: Content-Length must be {signed_size}, as requested in the slot"
        return None


    def owned(self, owner: str) -> list[tuple[str, int, float]]:
        """(GET URL, size, Unix time of the upload) of every file put by ``owner`` (a bare
        JID): GDPR retrieval. A walk of the folder, as ``remove_owner``."""
        files = []
        for folder in self._folders():
            try:
                if (folder / OWNER_FILE).read_text() != owner:
                    continue
                for entry in folder.iterdir():
                    if entry.name.startswith(".") or entry.name.endswith(".part"):
                        continue
                    stat = entry.stat()
                    files.append((f"{self.base_url}/{quote(folder.name)}/{quote(entry.name)}",
                                  stat.st_size, stat.st_mtime))
            except OSError:
                continue
        return sorted(files)

    def remove_owner(self, owner: str) -> int:
        """Remove every file put by ``owner`` (a bare JID; the account was removed): the
        number of files removed. Reads each upload's `.owner`: a walk of the folder."""
        removed = 0
        for folder in self._folders():
            try:
                if (folder / OWNER_FILE).read_text() != owner:
                    continue
            except OSError:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        return removed

    def sweep(self, max_age: float | None, now: float) -> int:
        """Remove uploads older than ``max_age`` seconds (None: keep them) and partial files
        older than PART_MAX_AGE; the number of uploads removed."""
        removed = 0
        for folder in self._folders():
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                try:
                    age = now - entry.stat().st_mtime
                except OSError:
                    continue
                if entry.name.endswith(".part") and age > PART_MAX_AGE:
                    entry.unlink(missing_ok=True)
                elif max_age is not None and not entry.name.startswith(".") and age > max_age:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
                    break
            else:
                with contextlib.suppress(OSError):
                    if not any(folder.iterdir()):
                        folder.rmdir()
        return removed

    def _folders(self) -> list[Path]:
        try:
            return [f for f in self.directory.iterdir() if _TOKEN.match(f.name) and f.is_dir()]
        except OSError:
            return []


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
        disposition = "inline" if content_type.lower().startswith(INLINE) else "attachment"
        headers = {"Content-Type": content_type, "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": CSP,
                   "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
                   **CORS}
        return web.FileResponse(path, headers=headers)

    async def _put(self, request: web.BaseRequest, token: str, name: str) -> web.StreamResponse:
        from aiohttp import ClientPayloadError, web

        # An empty header is no type either: a browser sends one for a file it has no type
        # for (Converse.js copies File.type, "", into both the slot request and the PUT).
        content_type = request.headers.get("Content-Type") or DEFAULT_TYPE
        owner = request.query.get("o", "")
        refusal = self.slots.check(token, name, request.query.get("v", ""),
                                   request.content_length, content_type, time.time(), owner)
        if refusal is not None:
            status = 413 if refusal.startswith("size") else 403
            return web.Response(status=status, text=refusal + "\n", headers=CORS)
        size = int(request.content_length or 0)
        folder = self.slots.directory / token
        final = folder / name
        if final.exists():
            return web.Response(status=409, text="this slot was already used\n", headers=CORS)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        if request.headers.get("Expect", "").lower() == "100-continue" and \
                request.version >= (1, 1):
            # RFC 9110 §10.1.1: the client (curl, libcurl-based apps) waits for this before
            # sending the body; the checks above passed, so it may.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        partial = folder / f".{name}.part"
        try:
            # Exclusive: a second PUT to the slot while the first runs never shares its file.
            out = open(partial, "xb")  # noqa: SIM115 (closed below, before the link)
        except FileExistsError:
            return web.Response(status=409, text="this slot is being uploaded to\n",
                                headers=CORS)
        except OSError as exc:
            return self._storage_error(exc, token)
        received = 0
        loop = asyncio.get_running_loop()
        # A trickle (a byte now and then, never IDLE_TIMEOUT apart) ends too.
        deadline = loop.time() + IDLE_TIMEOUT + size / MIN_RATE
        try:
            with out:
                while received < size:
                    try:
                        async with asyncio.timeout_at(min(deadline,
                                                          loop.time() + IDLE_TIMEOUT)):
                            chunk = await request.content.read(min(CHUNK, size - received))
                    except (ClientPayloadError, ConnectionError) as exc:  # the client left
                        raise ValueError(f"body stopped after {received} bytes") from exc
                    if not chunk:
                        break
                    received += len(chunk)
                    out.write(chunk)
            if received != size:
                raise ValueError(f"body of {received} bytes, slot of {size}")
            try:
                os.link(partial, final)  # never replaces a file a concurrent PUT completed
            except FileExistsError:
                return web.Response(status=409, text="this slot was already used\n",
                                    headers=CORS)
            try:
                (folder / TYPE_FILE).write_text(content_type)
                if owner:
                    (folder / OWNER_FILE).write_text(owner)
            except OSError:
                # The client hears of a failure and asks for a new slot: this one is not served.
                final.unlink(missing_ok=True)
                raise
        except TimeoutError:
            log.info("upload_timeout token=%s received=%d size=%d", token, received, size)
            return web.Response(status=408, text="the upload stopped\n",
                                headers={"Connection": "close", **CORS})
        except ValueError as exc:
            log.info("upload_refused token=%s error=%s", token, exc)
            return web.Response(status=400, text=f"{exc}\n", headers=CORS)
        except OSError as exc:
            return self._storage_error(exc, token)
        finally:
            partial.unlink(missing_ok=True)
        return web.Response(status=201, text="created\n", headers=CORS)

    @staticmethod
    def _storage_error(exc: OSError, token: str) -> web.StreamResponse:
        """The server could not store the file: the disk is full (507, RFC 4918 §11.5), or
        another failure of the store (500). Nothing of it is kept."""
        from aiohttp import web

        log.error("upload_store_failed token=%s error=%s", token, exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return web.Response(status=507, text="the server has no room for this file\n",
                                headers=CORS)
        return web.Response(status=500, text="the server could not store this file\n",
                            headers=CORS)
