"""Passwords of password-protected rooms checked by an HTTP service (MongooseIM 6.4's mod_muc
``http_auth_pool``, an ``[outgoing_pools.http.<tag>]`` pool).

A non-owner joining a password-protected room makes one request: ``GET <host><path_prefix>
check_password?from=<full JID>&to=<room JID>&pass=<password>``. A 200 answer with the JSON
``{"code": 0, ...}`` lets the join go on; another code refuses it with ``not-authorized``
and the text ``"<code> <msg>"``; anything else (another status, no JSON, the service down or
slower than the pool's ``request_timeout``) is ``service-unavailable`` ("Internal server
error"), as MongooseIM answers. The room's own password is not consulted then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.pool_tls import http_pool_ssl_context
from suricate.jid import JID

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("suricate.mod_muc")

#: What a check ends with: True (allowed), a refusal text, or None (the service failed).
Verdict = bool | str | None


class HttpAuth:
    def __init__(self, pool: Mapping[str, Any]) -> None:
        conn = pool["connection"]
        prefix = "/" + str(conn["path_prefix"]).strip("/")
        self.url = str(conn["host"]).rstrip("/") + prefix.rstrip("/") + "/check_password"
        self.timeout = int(conn["request_timeout"]) / 1000
        self.limit = int(pool.get("workers", 100))
        #: the pool's ``tls`` section (a private CA, a client certificate), else the OS store.
        self.ssl = http_pool_ssl_context(conn)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        import aiohttp  # only a server with http_auth_pool pays for the import

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.limit, ssl=self.ssl or True))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self, frm: JID, room: JID, password: str) -> Verdict:
        import aiohttp

        assert self._session is not None
        params = {"from": str(frm), "to": str(room), "pass": password}
        try:
            async with self._session.get(
                    self.url, params=params,
                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("muc_http_auth_failed url=%s error=%s", self.url, exc)
            return None
        if status != 200:
            log.warning("muc_http_auth_failed url=%s status=%d", self.url, status)
            return None
        try:
            answer = json.loads(body)
            code = answer["code"]
            msg = answer.get("msg")
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("muc_http_auth_bad_answer url=%s body=%r", self.url, body[:200])
            return None
        if code == 0:
            return True
        return f"{code} {msg if msg is not None else ''}".rstrip()
