"""mod_http_upload: XEP-0363 HTTP File Upload at `upload.@HOST@` (MongooseIM 6.4's names).

A client asks the upload service for a slot (file name, size, content type) and gets a PUT URL
to upload to and a GET URL to share. The files never pass through the XMPP streams: with the
`s3` backend they go to an S3-compatible store through presigned URLs (`s3.py`).

Refusals follow XEP-0363 §4: a file over `max_file_size` gets `not-acceptable` with
`<file-too-large><max-file-size/>`; a request without a name or with a size that is not a
positive integer gets `bad-request`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import (
    OMIT,
    Bool,
    Context,
    Int,
    IntOrInfinity,
    OneOf,
    Option,
    Section,
    Str,
)
from suricate.core import hooks as H
from suricate.core.iq import error_for
from suricate.core.keyfile import load_or_create_key
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.instrument.events import HISTOGRAM, SPIRAL, declare
from suricate.jid import JID
from suricate.protocol.errors import StanzaError, error_reply
from suricate.protocol.stanza import result_reply
from suricate.xml import ns
from suricate.xml.element import Element

from . import s3
from .disk import ANY_TYPE, DiskSlots, UploadEndpoint, fit_name, safe_name

if TYPE_CHECKING:
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_http_upload")
MAX_DISK_TOKEN_BYTES = 100  # the disk backend's folder names: 200 hex digits
SWEEP_PERIOD = 3600  # seconds between two sweeps of the disk backend's folder

UPLOAD = "urn:xmpp:http:upload:0"
HANDLER = "mod_http_upload"  # [[listen.http.handlers.mod_http_upload]] of the disk backend
KEY_FILE = "http_upload.key"  # signs the disk backend's PUT URLs

#: 6.4's backend event of the s3 backend (`BackendModule_count`/`_time`, labelled with the
#: backend function): slots made, and microseconds spent making (signing) each.
MOD_HTTP_UPLOAD_S3 = declare(
    "mod_http_upload_s3", ("host_type", "function"), {"count": SPIRAL, "time": HISTOGRAM},
    "Calls of the s3 upload backend by function (create_slot: a presigned PUT URL made); "
    "time in microseconds")
MOD_HTTP_UPLOAD_SLOT = declare(
    "mod_http_upload_slot", ("host_type",), {"count": SPIRAL, "refused_count": SPIRAL},
    "Upload slots handed out, and requests refused (too large, malformed)")


def _post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    for backend_ in ("s3", "disk"):
        if out["backend"] == backend_ and backend_ not in out:
            ctx.error(f"{path}.{backend_}", f'required when backend is "{backend_}"')
    if out["backend"] == "disk" and out.get("token_bytes", 0) > MAX_DISK_TOKEN_BYTES:
        # The token's hex is a folder name (255 bytes at most on file systems).
        ctx.error(f"{path}.token_bytes", f"at most {MAX_DISK_TOKEN_BYTES} with the disk "
                  "backend (the token names a folder)")


_DISK = Section(
    {
        "directory": Option(Str(), "upload", "Folder of the files (relative to the "
                            "configuration file's folder, or the data folder of the default)."),
        "base_url": Option(Str(), doc='URL of the `[[listen.http.handlers.mod_http_upload]]` '
                           'handler as clients reach it, e.g. "https://example.com:5443/upload" '
                           "(XEP-0363 wants HTTPS)."),
        "file_ttl": Option(IntOrInfinity(min=1, unit="days"), None,
                           'Days an uploaded file is kept ("infinity": until its uploader\'s '
                           "account is removed). Checked every hour."),
    },
    doc="Suricate's own store: files in a folder, PUT and GET through its HTTP listener.",
)


_S3 = Section(
    {
        "bucket_url": Option(Str(), doc='The bucket\'s URL, e.g. '
                             '"https://my-bucket.s3.eu-west-1.amazonaws.com".'),
        "add_acl": Option(Bool(), False, "Make uploaded objects public-read (x-amz-acl)."),
        "region": Option(Str(), doc='The bucket\'s region, e.g. "eu-west-1".'),
        "access_key_id": Option(Str(), doc="Access key of an account that may put objects."),
        "secret_access_key": Option(Str(), doc="Its secret key."),
    },
    doc="The S3-compatible store.",
)


@dataclass(frozen=True, slots=True)
class Slot:
    put: str
    get: str
    put_headers: tuple[tuple[str, str], ...] = ()


class ModHttpUpload(Module):
    name = "mod_http_upload"
    xeps = ("0363",)
    graphql = GraphQLCategory("suricate.modules.mod_http_upload.graphql")
    options = Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "host": Option(Str(lower=True), "upload.@HOST@",
                           "Domain of the upload service; @HOST@ is each served domain."),
            "backend": Option(OneOf(["s3", "disk"]), "s3",
                              'Where files go: an S3-compatible store, or "disk" (Suricate\'s '
                              "own, served by its HTTP listener)."),
            "expiration_time": Option(Int(min=1, unit="seconds"), 60,
                                      "How long a PUT URL is valid."),
            "token_bytes": Option(Int(min=1), 32,
                                  "Random bytes in each file's path (unguessable URLs)."),
            "max_file_size": Option(Int(min=1, unit="bytes"), 10485760,
                                    "Largest file accepted."),
            "s3": Option(_S3, OMIT, _S3.doc),
            "disk": Option(_DISK, OMIT, _DISK.doc),
        },
        doc="XEP-0363 HTTP File Upload.",
        post=_post,
    )

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.max_size: int = opts["max_file_size"]
        self.domains: list[str] = []
        self.disk: DiskSlots | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.opts["backend"] == "disk":
            conf = self.opts["disk"]
            self.disk = DiskSlots(load_or_create_key(self.server.base_dir / KEY_FILE),
                                  self.server.base_dir / conf["directory"], conf["base_url"])
            # The HTTP listeners start after the modules: they find the handler kind here.
            slots = self.disk
            self.server.http_handlers[HANDLER] = lambda _server, opts: UploadEndpoint(slots, opts)
            self.server.hooks.add(H.REMOVE_USER, self.remove_user, 60)
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        self.domains = list(self.serve_subdomains(self.opts["host"], self.handle))

    async def stop(self) -> None:
        self.server.http_handlers.pop(HANDLER, None)
        if self.disk is not None:
            self.server.hooks.remove(H.REMOVE_USER, self.remove_user)
        if self._sweeper is not None:
            self._sweeper.cancel()

    # -- the disk backend's files ------------------------------------------------------------
    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The files the account uploaded (disk backend; with s3 the bucket holds them and
        nothing here lists them), for GDPR retrieval: their URLs, sizes and times."""
        if self.disk is None:
            return []
        files = await asyncio.to_thread(self.disk.owned, str(jid.bare))
        return [PersonalData("http_upload", ("url", "size", "uploaded_at"), list(files))]

    async def remove_user(self, acc: None, jid: JID) -> None:
        """An account removed takes its uploads with it (the GET URLs it shared answer 404).
        With the s3 backend nothing is listed or removed: the bucket's lifecycle rules do."""
        if self.disk is not None:
            removed = await asyncio.to_thread(self.disk.remove_owner, str(jid.bare))
            if removed:
                log.info("upload_files_removed owner=%s count=%d", jid.bare, removed)
        return acc

    async def sweep(self, now: float | None = None) -> int:
        """Remove the files older than disk.file_ttl (and partial files a crash left)."""
        assert self.disk is not None
        ttl = self.opts["disk"]["file_ttl"]
        return await asyncio.to_thread(self.disk.sweep, None if ttl is None else ttl * 86400,
                                       time.time() if now is None else now)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("upload_files_expired count=%d", removed)
            except Exception:
                log.exception("upload_sweep_failed")
            await asyncio.sleep(SWEEP_PERIOD)

    # -- the service domain --------------------------------------------------------------------
    def handle(self, frm: JID, to: JID, stanza: Element) -> None:
        if stanza.name != "iq" or stanza.get("type") not in ("get", "set"):
            if stanza.name == "message" and stanza.get("type") != "error":
                self.server.router.route(to, frm, error_for(stanza, "service-unavailable"))
            return  # RFC 6120 §8.2.3: results and errors are never answered
        payload = stanza.first_element()
        try:
            if payload is None or to.local is not None:
                raise StanzaError("service-unavailable")
            if payload.name == "request" and not self.server.is_local_domain(frm.domain):
                # Our storage is for our users: an account of another server (over s2s)
                # gets XEP-0363 §5's permanent refusal.
                raise StanzaError("not-allowed", "only users of this server may upload files",
                                  "cancel")
            reply = self._iq(frm, to, stanza.get("type") or "", payload)
        except StanzaError as err:
            self.server.router.route(to, frm, error_reply(stanza, err))
            return
        self.server.router.route(to, frm, result_reply(stanza, frm, to, reply))

    def _iq(self, frm: JID, to: JID, type_: str, payload: Element) -> Element:
        if type_ == "get" and payload.name == "query" and payload.xmlns == ns.DISCO_INFO:
            return self._disco_info()
        if type_ == "get" and payload.name == "query" and payload.xmlns == ns.DISCO_ITEMS:
            return Element("query", ns.DISCO_ITEMS)
        if type_ == "get" and payload.name == "request" and payload.xmlns == UPLOAD:
            return self._request(frm, payload)
        raise StanzaError("service-unavailable")

    def _disco_info(self) -> Element:
        # XEP-0363 §2: identity store/file, the feature, and max-file-size in an XEP-0128 form.
        query = Element("query", ns.DISCO_INFO)
        query.add("identity", attrs={"category": "store", "type": "file",
                                     "name": "HTTP File Upload"})
        for feature in (ns.DISCO_INFO, ns.DISCO_ITEMS, UPLOAD):
            query.add("feature", attrs={"var": feature})
        form = query.add("x", ns.DATA_FORMS, {"type": "result"})
        for var, value, hidden in (("FORM_TYPE", UPLOAD, True),
                                   ("max-file-size", str(self.max_size), False)):
            field = form.add("field", attrs={"var": var, **({"type": "hidden"} if hidden else {})})
            field.add("value", text=value)
        return query

    def _request(self, frm: JID, request: Element) -> Element:
        labels = {"host_type": frm.domain}
        filename = request.get("filename") or ""
        size_text = request.get("size") or ""
        if not filename or not size_text.isdigit() or int(size_text) <= 0:
            self.server.instrument.emit(MOD_HTTP_UPLOAD_SLOT, labels, {"refused_count": 1})
            raise StanzaError("bad-request", "a slot needs a filename and a positive size")
        size = int(size_text)
        if size > self.max_size:
            self.server.instrument.emit(MOD_HTTP_UPLOAD_SLOT, labels, {"refused_count": 1})
            too_large = Element("file-too-large", UPLOAD)
            too_large.add("max-file-size", text=str(self.max_size))
            raise StanzaError("not-acceptable",
                              f"File too large. The maximum file size is {self.max_size} bytes",
                              "modify", too_large)
        # XEP-0363 §6: a type not asked for (absent, or empty as Converse.js sends for a file
        # the browser has no type for) is not held against the PUT on our own store.
        content_type = request.get("content-type") or None
        if self.disk is not None:
            # A guest's (SASL ANONYMOUS) files are nobody's: its account ends with its last
            # session, and the pictures it shared in a room should not vanish from the
            # room's history then (they expire with disk.file_ttl, as the admin API's).
            owner = "" if self.server.auth.is_anonymous(frm) else str(frm.bare)
            slot = self._disk_slot(filename, size, content_type or ANY_TYPE, owner=owner)
        elif self.server.instrument.enabled:
            start = time.perf_counter()
            slot = self._s3_slot(filename, size, content_type)
            self.server.instrument.emit(
                MOD_HTTP_UPLOAD_S3, {"host_type": frm.domain, "function": "create_slot"},
                {"count": 1, "time": int((time.perf_counter() - start) * 1e6)})
        else:
            slot = self._s3_slot(filename, size, content_type)
        self.server.instrument.emit(MOD_HTTP_UPLOAD_SLOT, labels, {"count": 1})
        out = Element("slot", UPLOAD)
        put = out.add("put", attrs={"url": slot.put})
        for name, value in slot.put_headers:
            put.add("header", attrs={"name": name}, text=value)
        out.add("get", attrs={"url": slot.get})
        return out

    def _key(self, filename: str) -> str:
        # The random part makes URLs unguessable; the name stays readable for recipients.
        # A slash would make a path of the name: replaced (XEP-0363 §4 lets the service alter
        # the name).
        safe_name = filename.replace("/", "_").replace("\\", "_")
        return f"{secrets.token_hex(self.opts['token_bytes'])}/{safe_name}"

    def slot_for(self, domain: str, filename: str, size: int, content_type: str | None,
                 expiration: int, owner: str = "") -> Slot:
        """A slot made for the admin API (6.4's httpUpload getUrl), as one for a client of
        `domain` but valid `expiration` seconds, the file `owner`'s (a bare JID, or nobody's
        for the admin's); ValueError for what a client's request
        would be refused (no name, size not positive or over max_file_size)."""
        if not filename or size <= 0:
            raise ValueError("a slot needs a filename and a positive size")
        if size > self.max_size:
            raise ValueError(f"File too large. The maximum file size is {self.max_size} bytes")
        if self.disk is not None:
            slot = self._disk_slot(filename, size, content_type or ANY_TYPE, expiration, owner)
        else:
            slot = self._s3_slot(filename, size, content_type, expiration)
        self.server.instrument.emit(MOD_HTTP_UPLOAD_SLOT, {"host_type": domain}, {"count": 1})
        return slot

    def _disk_slot(self, filename: str, size: int, content_type: str,
                   expiration: int | None = None, owner: str = "") -> Slot:
        assert self.disk is not None
        token, _, name = self._key(filename).partition("/")
        name = fit_name(name)
        if not safe_name(name):  # ".", "..", a leading dot: not a file name we store
            name = "file"
        expires = int(datetime.now(UTC).timestamp()) + (expiration or
                                                        self.opts["expiration_time"])
        put, get = self.disk.slot(token, name, size, content_type, expires, owner)
        return Slot(put, get)

    def _s3_slot(self, filename: str, size: int, content_type: str | None,
                 expiration: int | None = None) -> Slot:
        conf = self.opts["s3"]
        key = self._key(filename)
        # Signed headers are what S3 holds the PUT to: a type only when one was asked for.
        headers = {"content-length": str(size)}
        if content_type is not None:
            headers["content-type"] = content_type
        put = s3.presign(
            "PUT", conf["bucket_url"], key, region=conf["region"],
            access_key_id=conf["access_key_id"], secret_access_key=conf["secret_access_key"],
            expires=expiration or self.opts["expiration_time"], now=datetime.now(UTC),
            headers=headers,
            query={"x-amz-acl": "public-read"} if conf["add_acl"] else None)
        return Slot(put, s3.object_url(conf["bucket_url"], key))
