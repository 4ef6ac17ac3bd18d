"""The `rabbit` backend: presence changes and one-to-one and group chat messages published as
JSON to RabbitMQ topic exchanges (MongooseIM's `mod_event_pusher_rabbit`), through the pool
`[outgoing_pools.rabbit.event_pusher]`.

Routing keys are the user's bare JID and a topic (`alice@example.com.chat_msg_sent`), bodies
6.4's JSON objects. Publishing never holds a stanza back: events wait in a bounded queue
(`max_worker_queue_len`) for one publisher task, which reconnects with a back-off when the broker
goes away. Events beyond the bound are dropped and counted (`wpool_rabbit_messages_published`
`dropped_count`): an analytics feed, unlike a message, may lose items under overload, and an
unbounded queue would let a dead broker eat the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.instrument.events import SPIRAL, declare

if TYPE_CHECKING:
    import aio_pika

    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_event_pusher")

WPOOL_RABBIT_MESSAGES_PUBLISHED = declare(
    "wpool_rabbit_messages_published", ("pool_tag",),
    {"count": SPIRAL, "failure_count": SPIRAL, "dropped_count": SPIRAL},
    "Events published to RabbitMQ; failures could not be published, dropped ones found the "
    "queue full")

POOL_TAG = "event_pusher"
RETRY_MAX = 30.0  # seconds between reconnection attempts at most
CONNECT_TIMEOUT = 10.0  # seconds: a broker that accepts TCP but never answers is down too
ATTEMPTS = 3  # connections an event is tried on before it is dropped (and counted failed)
DRAIN_TIMEOUT = 5.0  # seconds a shutdown waits for the queued events to be published


class RabbitBackend:
    def __init__(self, server: Server, opts: Mapping[str, Any], pool: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts
        self.conn_opts = pool["connection"]
        limit = self.conn_opts["max_worker_queue_len"]
        self.queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue(limit or 0)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        # The event being published and the attempts made: kept when the connection dies
        # under it, and published first on the next one (taken out of the queue, it would
        # be lost otherwise).
        self._pending: tuple[str, str, bytes] | None = None
        self._attempts = 0

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        # A shutdown ends every session first: their present=false events are in the queue
        # now, and a consumer that never gets them keeps those users online for good. They
        # are published if the broker is there, within DRAIN_TIMEOUT.
        deadline = asyncio.get_running_loop().time() + DRAIN_TIMEOUT
        while self.connected.is_set() and (self._pending is not None or not self.queue.empty()) \
                and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        import aio_pika

        delay = 0.5
        while True:
            try:
                connection = await aio_pika.connect(
                    host=self.conn_opts["host"], port=self.conn_opts["port"],
                    login=self.conn_opts["username"], password=self.conn_opts["password"],
                    virtualhost=self.conn_opts["virtual_host"], timeout=CONNECT_TIMEOUT)
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                log.warning("rabbit_connect_failed host=%s error=%s", self.conn_opts["host"], exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            try:
                async with connection:
                    await self._publish_all(connection)
            except Exception as exc:  # noqa: BLE001
                # The back-off starts again only after a connection that worked (exchanges
                # declared): one refusing the declarations (an existing exchange of another
                # type) keeps backing off.
                delay = 0.5 if self.connected.is_set() else min(delay * 2, RETRY_MAX)
                # Whatever the broker or the client library did (aiormq raises RuntimeError
                # subclasses for a channel closed under a publication), this task must live
                # on: it is the only one publishing, and with it gone every later event
                # would fill the queue and be dropped.
                log.warning("rabbit_connection_lost error=%r", exc)
                if self._pending is not None and self._attempts >= ATTEMPTS:
                    log.warning("rabbit_event_dropped attempts=%d", self._attempts)
                    self._count("failure_count")
                    self._pending, self._attempts = None, 0
                self.connected.clear()
                await asyncio.sleep(delay)
            finally:
                self.connected.clear()

    async def _publish_all(self, connection: aio_pika.abc.AbstractConnection) -> None:
        channel = await connection.channel(
            publisher_confirms=bool(self.conn_opts["confirms_enabled"]))
        exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        for key in ("presence_exchange", "chat_msg_exchange", "groupchat_msg_exchange"):
            spec = self.opts[key]
            exchanges[spec["name"]] = await channel.declare_exchange(spec["name"], spec["type"])
        self.connected.set()
        import aio_pika

        while True:
            if self._pending is None:
                self._pending, self._attempts = await self.queue.get(), 0
            exchange, routing_key, body = self._pending
            self._attempts += 1
            # Not mandatory (AMQP basic.publish's default, as 6.4 publishes): an event no
            # queue is bound for yet is the consumer's business, not an error to return.
            await exchanges[exchange].publish(
                aio_pika.Message(body, content_type="application/json"), routing_key,
                mandatory=False)
            self._pending = None
            self._count("count")

    def _count(self, what: str) -> None:
        self.server.instrument.emit(WPOOL_RABBIT_MESSAGES_PUBLISHED,
                                    {"pool_tag": POOL_TAG}, {what: 1})

    # -- events ----------------------------------------------------------------------------------
    def _put(self, exchange: str, routing_key: str, event: Mapping[str, Any]) -> None:
        try:
            self.queue.put_nowait((exchange, routing_key, json.dumps(event).encode()))
        except asyncio.QueueFull:
            self._count("dropped_count")

    def presence(self, user_id: str, bare: str, present: bool) -> None:
        self._put(self.opts["presence_exchange"]["name"], f"{bare}.status",
                  {"user_id": user_id, "present": present})

    def chat(self, sender: str, sender_bare: str, receiver: str, receiver_bare: str, body: str,
             groupchat: bool, direction: str) -> None:
        spec = self.opts["groupchat_msg_exchange" if groupchat else "chat_msg_exchange"]
        who = sender_bare if direction == "sent" else receiver_bare
        self._put(spec["name"], f"{who}.{spec[direction + '_topic']}",
                  {"from_user_id": sender, "to_user_id": receiver, "message": body})
