"""mod_push_service_mongoosepush: XEP-0357 notifications sent to MongoosePush over HTTP
(MongooseIM 6.4's module of that name).

`mod_event_pusher`'s push backend hands a notification for a registration on one of its
`virtual_pubsub_hosts` to the `push_notifications` hook instead of publishing it over XMPP.
This module takes it and makes one request of MongoosePush's HTTP API v3:
`POST <pool host><path_prefix>/v3/notification/<device_id>` with a JSON body

- `service` (`apns` or `fcm`) and `mode` (`prod` unless the client asked for `dev`), plus
  `topic`, `priority`, `time_to_live` and `mutable_content` when the client gave them;
- `alert` (`title` = last sender, `body` = last message body, `badge` = `message-count`,
  `tag` = the sender's bare JID unless given, `click_action`, `sound` when given), or, when the
  client's publish-options say `silent` = `true`, `data`: the summary fields as they are (the
  count as a number), for the app to show as it likes.

`device_id` and `service` come from the publish-options the client enabled push with; a
registration without them cannot be delivered and each notification for it fails (counted,
logged), as in 6.4. The request is made from the notification task `mod_event_pusher` spawns,
never from the routing path. A 2xx answer is a success; anything else is a failure, counted by
`mod_event_pusher_push_sent` and `mod_push_service_mongoosepush_sent`; 410 (MongoosePush: the
device is no longer registered with APNs/FCM) also disables the registration, as 6.4 does for
`device_not_registered`.

Only API v3 is implemented: `api_version = "v2"` is refused at configuration time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from suricate.config.loader import References
from suricate.config.pool_tls import http_pool_ssl_context
from suricate.config.spec import REQUIRED, Int, OneOf, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.instrument.events import HISTOGRAM, SPIRAL, declare
from suricate.jid import JID

if TYPE_CHECKING:
    import aiohttp

    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_push_service_mongoosepush")

MONGOOSEPUSH_SENT = declare(
    "mod_push_service_mongoosepush_sent", ("host_type",),
    {"count": SPIRAL, "failure_count": SPIRAL, "response_time": HISTOGRAM},
    "Notifications POSTed to MongoosePush; failures are non-2xx answers, network errors, "
    "time-outs and registrations without device_id or service; response_time in microseconds")

#: MongoosePush's answer when APNs/FCM no longer know the device (6.4: device_not_registered).
DEVICE_GONE = 410

#: Publish-options copied as they are into the request (MongoosePush v3 request fields).
_PASSED_ON = ("topic", "priority")


def request_body(summary: Mapping[str, str], options: Mapping[str, str]) -> dict[str, Any]:
    """The JSON body of `POST /v3/notification/<device_id>` for one notification."""
    body: dict[str, Any] = {"service": options["service"],
                            "mode": options.get("mode") or "prod"}
    for key in _PASSED_ON:
        if options.get(key):
            body[key] = options[key]
    if options.get("time_to_live", "").isdigit():
        body["time_to_live"] = int(options["time_to_live"])
    if "mutable_content" in options:
        body["mutable_content"] = options["mutable_content"] == "true"
    count = _count(summary.get("message-count"))
    if options.get("silent") == "true":
        data: dict[str, Any] = dict(summary)
        data["message-count"] = count
        body["data"] = data
        return body
    sender = summary.get("last-message-sender", "")
    # `tag` groups a conversation's notifications (FCM shows the last one of a tag): the
    # sender's bare JID, a chat partner's or a room's, unless the client set one. 6.4 tags
    # with its last-message-sender, bare for a chat, the occupant's JID for a room.
    alert: dict[str, Any] = {"title": sender,
                             "body": summary.get("last-message-body", ""),
                             "badge": count,
                             "tag": options.get("tag") or sender.partition("/")[0]}
    for key in ("click_action", "sound"):
        if options.get(key):
            alert[key] = options[key]
    body["alert"] = alert
    return body


def _count(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


class ModPushServiceMongoosepush(Module):
    name = "mod_push_service_mongoosepush"
    options = Section(
        {
            "pool_name": Option(Str(), REQUIRED,
                                "A pool of `[outgoing_pools.http]`: MongoosePush's URL "
                                "(`host`, `path_prefix`) and `request_timeout`.",
                                example='"mongoose_push_http"'),
            "api_version": Option(
                OneOf(["v3"], ["v2"],
                      "API '{value}' is not available in this version of Suricate (only v3)"),
                "v3", "MongoosePush HTTP API version."),
            "max_http_connections": Option(Int(min=0), 100,
                                           "Concurrent HTTP connections to MongoosePush "
                                           "(0: no limit)."),
        },
        doc="Sends XEP-0357 notifications of mod_event_pusher's virtual PubSub hosts to "
        "MongoosePush (APNs/FCM) over its HTTP API v3.",
    )
    hooks = ((H.PUSH_NOTIFICATIONS, "push_notifications", 50),)

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        refs.pool_defined(f"{path}.pool_name", "http", opts.get("pool_name"))

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.base = ""
        self.timeout = 2.0
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        import aiohttp  # only a server that pushes over HTTP pays for the import

        pool = self.server.cfg["outgoing_pools"]["http"][self.opts["pool_name"]]
        conn = pool["connection"]
        prefix = str(conn["path_prefix"]).strip("/")
        self.base = str(conn["host"]).rstrip("/") + ("/" + prefix if prefix else "") \
            + f"/{self.opts['api_version']}/notification/"
        self.timeout = int(conn["request_timeout"]) / 1000
        context = http_pool_ssl_context(conn)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=int(self.opts["max_http_connections"]),
                                           ssl=context if context is not None else True))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def push_notifications(self, accepted: bool, user: JID, service: str, node: str,
                                 summary: dict[str, str], options: dict[str, str]) -> bool:
        labels = {"host_type": user.domain}
        device, provider = options.get("device_id"), options.get("service")
        if not device or not provider:
            log.warning("mongoosepush_bad_registration user=%s node=%s: the publish-options "
                        "need device_id and service", user, node)
            self.server.instrument.emit(MONGOOSEPUSH_SENT, labels, {"failure_count": 1})
            return accepted
        status = await self._post(self.base + quote(device, safe=""),
                                  request_body(summary, options), labels)
        if status == DEVICE_GONE:
            log.info("mongoosepush_device_gone user=%s node=%s: registration disabled",
                     user, node)
            # Through the push backend, which also forgets the device it knew behind it.
            push = getattr(self.server.modules.get("mod_event_pusher"), "push", None)
            if push is not None and user.local is not None:
                await push.forget(user, service, node)
        return accepted or (status is not None and 200 <= status < 300)

    async def _post(self, url: str, body: dict[str, Any], labels: dict[str, str]) -> int | None:
        """The answer's status, or None when no answer came."""
        import aiohttp

        assert self._session is not None
        started = time.perf_counter()
        status: int | None = None
        try:
            async with self._session.post(
                    url, data=json.dumps(body), headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("mongoosepush_failed url=%s error=%s", url, exc)
        elapsed = (time.perf_counter() - started) * 1e6
        ok = status is not None and 200 <= status < 300
        if status is not None and not ok:
            log.warning("mongoosepush_refused url=%s status=%s", url, status)
        self.server.instrument.emit(
            MONGOOSEPUSH_SENT, labels,
            {"count" if ok else "failure_count": 1, "response_time": elapsed})
        return status
