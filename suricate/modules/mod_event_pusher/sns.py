"""The `sns` backend: presence changes and the messages local users send, published to Amazon
SNS topics (MongooseIM 6.4's `mod_event_pusher_sns` with its default plugin).

Each event is one call of SNS's Query API `Publish` (`POST https://<sns_host>/`, form-encoded
`Action=Publish&TopicArn=...&Message=...`), the topic ARN being
`arn:aws:sns:<region>:<account_id>:<topic>` and the message 6.4's JSON:
- presence (`presence_updates_topic`): `{"user_id": "<bare JID>", "present": true|false}`;
- a chat message (`pm_messages_topic`) or a groupchat one (`muc_messages_topic`) with a body:
  `{"from_user_id": "<bare JID>", "to_user_id": "<bare JID>", "message": "<body>"}`.
An event whose topic is not configured is not published.

Requests are signed with AWS Signature Version 4 (header form, "Create a signed AWS API
request"), here, without an SDK. They are made by tasks off the routing path, at most
`pool_size` at a time; a failed one (network error, time-out, non-2xx answer) is tried again
`publish_retry_count` times after an exponential back-off of `publish_retry_time_ms`, then
dropped and logged, as 6.4 does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from suricate.instrument.events import SPIRAL, declare
from suricate.jid import JID

if TYPE_CHECKING:
    import aiohttp

    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_event_pusher")

MOD_EVENT_PUSHER_SNS_PUBLISHED = declare(
    "mod_event_pusher_sns_published",
    ("host_type",),
    {"count": SPIRAL, "retry_count": SPIRAL, "failure_count": SPIRAL},
    "Events published to Amazon SNS; retries were tried again, failures dropped after the "
    "last retry",
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sns"
API_VERSION = "2010-03-31"
REQUEST_TIMEOUT = 10.0  # seconds for one Publish call


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    region: str,
    service: str,
    access_key_id: str,
    secret_access_key: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers of a SigV4-signed request: ``headers`` plus Host, X-Amz-Date and
    Authorization. Every given header is signed (AWS: at least host and x-amz-date)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    parts = urlsplit(url)
    signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = amz_date
    names = ";".join(sorted(signed))
    # The Query API's POST carries its parameters in the body: no query string to sort.
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            parts.query,
            "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
            names,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_access_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        **headers,
        "Host": parts.netloc,
        "X-Amz-Date": amz_date,
        "Authorization": f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}",
    }


def endpoint(sns_host: str) -> str:
    """``sns_host`` as a URL: a bare host name is reached over HTTPS; of a URL (6.4 takes
    both), the scheme, port and path are used (an SNS-compatible service, LocalStack)."""
    return sns_host.rstrip("/") + "/" if "://" in sns_host else f"https://{sns_host}/"


class SnsBackend:
    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts
        self.url = endpoint(opts["sns_host"])
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        import aiohttp  # only a server that publishes to SNS pays for the import

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=int(self.opts["pool_size"]))
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def topic_arn(self, topic: str) -> str:
        return f"arn:aws:sns:{self.opts['region']}:{self.opts['account_id']}:{topic}"

    # -- events (6.4's default plugin: users named by their bare JIDs) ---------------------------
    def presence(self, user: JID, present: bool) -> None:
        topic = self.opts.get("presence_updates_topic")
        if topic:
            self._publish(user.domain, topic, {"user_id": str(user.bare), "present": present})

    def message(self, sender: JID, receiver: JID, body: str, groupchat: bool) -> None:
        topic = self.opts.get("muc_messages_topic" if groupchat else "pm_messages_topic")
        if topic:
            self._publish(
                sender.domain,
                topic,
                {
                    "from_user_id": str(sender.bare),
                    "to_user_id": str(receiver.bare),
                    "message": body,
                },
            )

    def _publish(self, host_type: str, topic: str, content: Mapping[str, Any]) -> None:
        form = {
            "Action": "Publish",
            "Version": API_VERSION,
            "TopicArn": self.topic_arn(topic),
            "Message": json.dumps(content),
        }
        self.server.spawn(self._try(host_type, urlencode(form).encode()))

    async def _try(self, host_type: str, body: bytes) -> None:
        retries = int(self.opts["publish_retry_count"])
        base = int(self.opts["publish_retry_time_ms"]) / 1000
        labels = {"host_type": host_type}
        for attempt in range(retries + 1):
            if attempt:
                # 6.4's back-off: up to base * 2^attempt, at least the previous bound.
                top = base * 2**attempt
                await asyncio.sleep(random.uniform(top - base, top))
                self.server.instrument.emit(
                    MOD_EVENT_PUSHER_SNS_PUBLISHED, labels, {"retry_count": 1}
                )
            error = await self._post(body)
            if error is None:
                self.server.instrument.emit(MOD_EVENT_PUSHER_SNS_PUBLISHED, labels, {"count": 1})
                return
            log.warning("sns_publish_failed attempt=%d error=%s", attempt + 1, error)
        log.warning("sns_event_dropped after %d attempts", retries + 1)
        self.server.instrument.emit(MOD_EVENT_PUSHER_SNS_PUBLISHED, labels, {"failure_count": 1})

    async def _post(self, body: bytes) -> str | None:
        """None when SNS accepted the publication, else what went wrong."""
        import aiohttp

        assert self._session is not None
        headers = sign(
            "POST",
            self.url,
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            body,
            region=self.opts["region"],
            service=SERVICE,
            access_key_id=self.opts["access_key_id"],
            secret_access_key=self.opts["secret_access_key"],
        )
        try:
            async with self._session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as response:
                answer = await response.text()
                if response.status < 300:
                    return None
                return f"HTTP {response.status}: {answer[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return repr(exc)
