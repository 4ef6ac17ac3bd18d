"""The `http` backend: each chat message a local user sends is POSTed to an HTTP service
(MongooseIM's `mod_event_pusher_http`), for analytics, e-mail or SMS gateways.

The request is form-encoded as 6.4's default callback makes it: `author`, `server`,
`receiver` and `message`, sent to the pool's URL + `path_prefix` + the handler's `path`. It is
made off the routing path (a task per message, bounded by the pool's `workers` connections) and
never holds a message back: the service being down costs a failure count, not a lost message.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from suricate.config.pool_tls import http_pool_ssl_context
from suricate.instrument.events import HISTOGRAM, SPIRAL, declare
from suricate.jid import JID

if TYPE_CHECKING:
    import aiohttp

    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_event_pusher")

MOD_EVENT_PUSHER_HTTP_SENT = declare(
    "mod_event_pusher_http_sent", ("host_type",),
    {"count": SPIRAL, "failure_count": SPIRAL, "response_time": HISTOGRAM},
    "Events POSTed by the http backend; response_time in microseconds")


class HttpTarget:
    """One `handlers` entry resolved against its `[outgoing_pools.http.<pool_name>]`."""

    def __init__(self, url: str, timeout_ms: int, ssl_context: ssl.SSLContext | None) -> None:
        self.url = url
        self.timeout = timeout_ms / 1000
        self.ssl = ssl_context


def targets(handlers: Sequence[Mapping[str, Any]],
            pools: Mapping[str, Mapping[str, Any]]) -> list[HttpTarget]:
    out = []
    for handler in handlers:
        conn = pools[handler["pool_name"]]["connection"]
        base = str(conn["host"]).rstrip("/")
        prefix = "/" + str(conn["path_prefix"]).strip("/")
        path = str(handler["path"]).strip("/")
        url = base + (prefix.rstrip("/") + "/" + path if path else prefix)
        out.append(HttpTarget(url, int(conn["request_timeout"]), http_pool_ssl_context(conn)))
    return out


class HttpBackend:
    def __init__(self, server: Server, handlers: Sequence[Mapping[str, Any]],
                 pools: Mapping[str, Mapping[str, Any]]) -> None:
        self.server = server
        self.targets = targets(handlers, pools)
        self.limit = max((int(pools[h["pool_name"]]["workers"]) for h in handlers), default=10)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        import aiohttp  # only a server that pushes over HTTP pays for the import

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.limit))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def message_sent(self, sender: JID, receiver: JID, body: str) -> None:
        form = {"author": sender.local or "", "server": sender.domain,
                "receiver": receiver.local or "", "message": body}
        for target in self.targets:
            self.server.spawn(self._post(target, sender.domain, form))

    async def _post(self, target: HttpTarget, host_type: str, form: dict[str, str]) -> None:
        import aiohttp

        assert self._session is not None
        labels = {"host_type": host_type}
        started = time.perf_counter()
        try:
            async with self._session.post(
                    target.url, data=form, ssl=target.ssl if target.ssl is not None else True,
                    timeout=aiohttp.ClientTimeout(total=target.timeout)) as response:
                await response.read()
                ok = response.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("event_pusher_http_failed url=%s error=%s", target.url, exc)
            ok = False
        elapsed = (time.perf_counter() - started) * 1e6
        measurements = ({"count": 1, "response_time": elapsed} if ok
                        else {"failure_count": 1, "response_time": elapsed})
        self.server.instrument.emit(MOD_EVENT_PUSHER_HTTP_SENT, labels, measurements)
