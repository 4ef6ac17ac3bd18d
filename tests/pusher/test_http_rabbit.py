"""mod_event_pusher's http and rabbit backends against real services: a local aiohttp server
that records the POSTs, and the RabbitMQ broker of this machine (127.0.0.1:5672, guest/guest)
read by an aio-pika consumer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aiohttp import web

from suricate.config import ConfigError, parse_config
from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, eventually, free_port, running_server
from tests.mobile.conftest import add_user, modules_toml
from tests.muc.conftest import PLUGINS, create_instant, next_groupchat
from tests.pusher.test_mongoosepush import record_events

RABBIT = ("127.0.0.1", 5672)


def _rabbit_up() -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(RABBIT) == 0


async def test_http_backend_posts_each_chat_message(tmp_path: Path) -> None:
    received: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()

    async def notify(request: web.Request) -> web.Response:
        received.put_nowait((request.path, dict(await request.post())))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/api/notifications", notify)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pools = f"""
[outgoing_pools.http.http_pool.connection]
host = "http://127.0.0.1:{port}"
path_prefix = "/api"
"""
    modules = modules_toml('[modules.mod_event_pusher.http]\nhandlers = [{path = "/notifications"}]')
    try:
        async with running_server(tmp_path, extra=pools, modules=modules) as server:
            await add_user(server, "alice")
            await add_user(server, "bob")
            alice = await connect(server, "alice@localhost/a", "secret")
            try:
                alice.send_message(mto="bob@localhost", mbody="hi Bob", mtype="chat")
                alice.send_message(mto="bob@localhost", mtype="chat")  # no body: nothing sent
                path, form = await asyncio.wait_for(received.get(), 5)
                assert path == "/api/notifications"
                assert form == {"author": "alice", "server": "localhost", "receiver": "bob",
                                "message": "hi Bob"}
                await asyncio.sleep(0.3)
                assert received.empty()
            finally:
                await disconnect(alice)
    finally:
        await runner.cleanup()


async def test_http_backend_slow_or_down_never_delays_messages(tmp_path: Path) -> None:
    """A handler whose service answers after its request_timeout and one with nothing
    listening: messages are delivered at once all the same (the POSTs are off the routing
    path), each failure is counted, and a message with an empty body is not POSTed (6.4's
    default callback: chat messages with a non-empty body)."""
    release = asyncio.Event()
    posted: list[dict[str, str]] = []

    async def slow(request: web.Request) -> web.Response:
        posted.append(dict(await request.post()))
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pools = f"""
[outgoing_pools.http.slow.connection]
host = "http://127.0.0.1:{port}"
request_timeout = 500
[outgoing_pools.http.dead.connection]
host = "http://127.0.0.1:{free_port()}"
"""
    modules = modules_toml("[modules.mod_event_pusher.http]\nhandlers = ["
                           '{pool_name = "slow", path = "/slow"}, {pool_name = "dead"}]')
    try:
        async with running_server(tmp_path, extra=pools, modules=modules) as server:
            seen = record_events(server)
            await add_user(server, "alice")
            await add_user(server, "bob")
            alice = await connect(server, "alice@localhost/a", "secret")
            bob = await connect(server, "bob@localhost/b", "secret")
            try:
                bob.send_presence()
                await bob.next_presence()
                loop = asyncio.get_running_loop()
                started = loop.time()
                for i in range(20):
                    alice.send_message(mto="bob@localhost/b", mbody=f"m{i}", mtype="chat")
                for i in range(20):
                    assert (await bob.next_message())["body"] == f"m{i}"
                assert loop.time() - started < 0.5
                empty = alice.make_message(mto="bob@localhost/b", mtype="chat")
                empty.xml.append(ET.Element("{jabber:client}body"))
                empty.send()
                await bob.next_message()
                await eventually(lambda: len(failures(seen)) == 40)
                await asyncio.sleep(0.2)
                assert len(posted) == 20 and all(form["message"] for form in posted)
                assert len(failures(seen)) == 40
            finally:
                release.set()
                await disconnect(alice, bob)
    finally:
        await runner.cleanup()


def failures(seen: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [m for name, m in seen if name == "mod_event_pusher_http_sent" and "failure_count" in m]


Event = tuple[str, str, dict[str, Any]]  # exchange, routing key, JSON body
EXCHANGES = ("presence", "chat_msg", "groupchat_msg")


def rabbit_modules(prefix: str, port: int = RABBIT[1]) -> tuple[str, str]:
    """The pool and module TOML of a server publishing to this test run's exchanges."""
    pools = f'[outgoing_pools.rabbit.event_pusher.connection]\nhost = "127.0.0.1"\nport = {port}\n'
    names = "".join(f'{name}_exchange.name = "{prefix}_{name}"\n' for name in EXCHANGES)
    return pools, modules_toml("[modules.mod_muc]\n[modules.mod_event_pusher.rabbit]\n" + names)


@contextlib.asynccontextmanager
async def rabbit_consumer(names: tuple[str, ...]) -> AsyncIterator[tuple[str, asyncio.Queue[Event]]]:
    """A real aio-pika consumer bound (`#`) to exchanges `<prefix>_<name>` of this test run
    only; yields the prefix and the queue of events read."""
    if not _rabbit_up():
        if os.environ.get("CI") == "true":
            raise AssertionError("RabbitMQ is not running at 127.0.0.1:5672 (needed in CI)")
        pytest.skip("RabbitMQ is not running at 127.0.0.1:5672")
    events: asyncio.Queue[Event] = asyncio.Queue()
    prefix = f"t{os.getpid()}{free_port()}"
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        exchanges = []
        for name in EXCHANGES:  # all of them, so that none is left on the broker
            exchange = await channel.declare_exchange(f"{prefix}_{name}", "topic")
            exchanges.append(exchange)
            if name in names:
                await queue.bind(exchange, "#")

        async def consume(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                events.put_nowait((message.exchange, message.routing_key or "",
                                   json.loads(message.body)))

        await queue.consume(consume)
        try:
            yield prefix, events
        finally:
            for exchange in exchanges:
                await exchange.delete()


async def test_rabbit_backend_publishes_presence_and_messages(tmp_path: Path) -> None:
    """6.4's events: a session becoming available (initial presence) and unavailable, by the
    client's own <presence type='unavailable'/> (as Gajim or Conversations log out) or by its
    connection ending; a presence update or an unavailable presence of a session that was
    never available is no event."""
    async with rabbit_consumer(("presence", "chat_msg")) as (prefix, events):
        pools, modules = rabbit_modules(prefix)
        async with running_server(tmp_path, extra=pools, modules=modules) as server:
            await add_user(server, "alice")
            await add_user(server, "bob")
            module = server.modules["mod_event_pusher"]
            await asyncio.wait_for(module.rabbit.connected.wait(), 10)
            alice = await connect(server, "alice@localhost/a", "secret")
            bob = await connect(server, "bob@localhost/b", "secret")
            try:
                bob.send_presence(ptype="unavailable")  # never available: nothing
                alice.send_presence()
                bob.send_presence()
                bob.send_presence(pshow="away")  # an update: nothing
                alice.send_message(mto="bob@localhost/b", mbody="over AMQP", mtype="chat")
                assert (await bob.next_message())["body"] == "over AMQP"
                bob.send_presence(ptype="unavailable")
                await asyncio.sleep(0.3)
            finally:
                await disconnect(alice, bob)
            seen: list[Event] = []
            while len(seen) < 6:
                seen.append(await asyncio.wait_for(events.get(), 5))
            await asyncio.sleep(0.3)
            assert events.empty()
    presence = [(key, body) for exchange, key, body in seen if exchange == f"{prefix}_presence"]
    assert sorted(presence, key=str) == sorted([
        ("alice@localhost.status", {"user_id": "alice@localhost/a", "present": True}),
        ("bob@localhost.status", {"user_id": "bob@localhost/b", "present": True}),
        ("bob@localhost.status", {"user_id": "bob@localhost/b", "present": False}),
        ("alice@localhost.status", {"user_id": "alice@localhost/a", "present": False}),
    ], key=str)
    # Bob's in the order he sent them.
    assert [b["present"] for k, b in presence if k.startswith("bob")] == [True, False]
    assert (f"{prefix}_chat_msg", "alice@localhost.chat_msg_sent",
            {"from_user_id": "alice@localhost/a", "to_user_id": "bob@localhost/b",
             "message": "over AMQP"}) in seen
    assert (f"{prefix}_chat_msg", "bob@localhost.chat_msg_recv",
            {"from_user_id": "alice@localhost/a", "to_user_id": "bob@localhost/b",
             "message": "over AMQP"}) in seen


BOB = JID.parse("bob@localhost")


async def test_rabbit_each_message_received_once(tmp_path: Path) -> None:
    """6.4 publishes `chat_msg_recv` when a message is routed to a local account (its
    filter_local_packet), once, whatever the account's sessions: for an offline account too
    (the message is stored for later), once for two resources of a bare-JID message, once per
    occupant for a MUC message."""
    async with rabbit_consumer(EXCHANGES) as (prefix, events):
        pools, modules = rabbit_modules(prefix)
        async with running_server(tmp_path, extra=pools, modules=modules) as server:
            for name in ("alice", "bob", "carol"):
                await add_user(server, name)
            await asyncio.wait_for(server.modules["mod_event_pusher"].rabbit.connected.wait(), 10)
            alice = await connect(server, "alice@localhost/a", "secret", direct_tls=True,
                                  plugins=PLUGINS)
            bob1 = await connect(server, "bob@localhost/b1", "secret")
            bob2 = await connect(server, "bob@localhost/b2", "secret")
            try:
                for client in (alice, bob1, bob2):
                    client.send_presence()
                # Both of bob's resources available before the message to his bare JID
                # (RFC 6121 §8.5.2.1.1: it goes to the resources available then); with the
                # database a few ms away their presences take a few round trips.
                await eventually(lambda: len(server.sessions.available(BOB)) == 2)
                room = "r@conference.localhost"
                await create_instant(alice, room, "Alice")
                alice.send_message(mto="bob@localhost", mbody="to both", mtype="chat")
                alice.send_message(mto="carol@localhost", mbody="for later", mtype="chat")
                for client in (bob1, bob2):
                    assert (await client.next_message())["body"] == "to both"
                alice.send_message(mto=room, mbody="to the room", mtype="groupchat")
                await next_groupchat(alice)
                await asyncio.sleep(0.5)  # what else would come (a duplicate) has come
            finally:
                await disconnect(alice, bob1, bob2)
    seen: list[Event] = []
    while not events.empty():
        seen.append(events.get_nowait())
    chat = [(key, body) for exchange, key, body in seen if exchange.endswith("_chat_msg")]
    assert sorted(chat, key=str) == sorted([
        ("alice@localhost.chat_msg_sent", {"from_user_id": "alice@localhost/a",
                                           "to_user_id": "bob@localhost", "message": "to both"}),
        ("bob@localhost.chat_msg_recv", {"from_user_id": "alice@localhost/a",
                                         "to_user_id": "bob@localhost", "message": "to both"}),
        ("alice@localhost.chat_msg_sent", {"from_user_id": "alice@localhost/a",
                                           "to_user_id": "carol@localhost",
                                           "message": "for later"}),
        ("carol@localhost.chat_msg_recv", {"from_user_id": "alice@localhost/a",
                                           "to_user_id": "carol@localhost",
                                           "message": "for later"}),
    ], key=str)
    group = [(key, body) for exchange, key, body in seen if exchange.endswith("_groupchat_msg")]
    assert sorted(group, key=str) == sorted([
        ("alice@localhost.groupchat_msg_sent", {"from_user_id": "alice@localhost/a",
                                                "to_user_id": room, "message": "to the room"}),
        ("alice@localhost.groupchat_msg_recv", {"from_user_id": f"{room}/Alice",
                                                "to_user_id": "alice@localhost/a",
                                                "message": "to the room"}),
    ], key=str)


async def test_rabbit_shutdown_publishes_every_user_going_offline(tmp_path: Path) -> None:
    """A shutdown ends every session: each one's present=false is published before the
    backend stops, else the consumer keeps those users online for good."""
    async with rabbit_consumer(("presence",)) as (prefix, events):
        pools, modules = rabbit_modules(prefix)
        async with running_server(tmp_path, extra=pools, modules=modules) as server:
            await asyncio.wait_for(server.modules["mod_event_pusher"].rabbit.connected.wait(), 10)
            clients = []
            for i in range(12):
                await add_user(server, f"u{i}")
                clients.append(await connect(server, f"u{i}@localhost/r", "secret"))
                clients[-1].send_presence()
            online = [await asyncio.wait_for(events.get(), 5) for _ in clients]
            assert all(body["present"] for _, _, body in online)
        offline = [await asyncio.wait_for(events.get(), 5) for _ in clients]
        for client in clients:
            client.abort()  # the server is gone: no reconnection attempts
    assert sorted(key for _, key, body in offline if body["present"] is False) == sorted(
        f"u{i}@localhost.status" for i in range(12))


class TcpProxy:
    """A TCP relay to RabbitMQ that the test can cut and restore: the broker "goes away"
    for Suricate while the machine's RabbitMQ keeps running."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*RABBIT)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_rabbit_broker_outage_loses_no_event(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The broker goes away (its connection cut) and comes back: messages keep flowing
    meanwhile, and the events of that time are published once it is back (they waited in
    the queue), none lost: not even the one the publisher was holding when it found the
    connection dead. An event no queue is bound for (presence here) is no error either."""
    async with rabbit_consumer(("chat_msg",)) as (prefix, events):
        proxy = TcpProxy(free_port())
        await proxy.start()
        pools, modules = rabbit_modules(prefix, proxy.port)
        async with running_server(tmp_path, extra=pools, modules=modules) as server:
            await add_user(server, "alice")
            await add_user(server, "bob")
            rabbit = server.modules["mod_event_pusher"].rabbit
            await asyncio.wait_for(rabbit.connected.wait(), 10)
            alice = await connect(server, "alice@localhost/a", "secret")
            bob = await connect(server, "bob@localhost/b", "secret")
            try:
                bob.send_presence()
                alice.send_message(mto="bob@localhost/b", mbody="before", mtype="chat")
                assert (await bob.next_message())["body"] == "before"
                for _ in range(2):  # sent and received: through before the cut
                    assert (await asyncio.wait_for(events.get(), 5))[2]["message"] == "before"
                await proxy.cut()
                # (Without publisher confirms, what is written in the instant before the
                # client sees the connection reset is lost in the socket: confirms_enabled.)
                await asyncio.sleep(0.3)
                for body in ("during 1", "during 2"):
                    alice.send_message(mto="bob@localhost/b", mbody=body, mtype="chat")
                    assert (await bob.next_message(2))["body"] == body
                await asyncio.sleep(0.5)
                await proxy.start()
                bodies: list[str] = []
                while len(bodies) < 4:
                    try:
                        _, _, event = await asyncio.wait_for(events.get(), 15)
                    except TimeoutError:
                        raise AssertionError(f"published: {bodies}") from None
                    bodies.append(event["message"])
                await asyncio.sleep(0.3)
                assert events.empty()
            finally:
                await disconnect(alice, bob)
                await proxy.cut()
    assert sorted(bodies) == sorted(["during 1", "during 2"] * 2)
    # AMQP 0-9-1 basic.publish: not `mandatory`, as 6.4 publishes; a mandatory event with no
    # queue bound comes back from the broker, and the client logs an error for each one.
    assert not [r for r in caplog.records if "Unhandled message" in r.getMessage()]


BASE = """
[general]
hosts = ["localhost"]
"""


@pytest.mark.parametrize(("toml", "problem"), [
    ('[modules.mod_event_pusher.http]\nhandlers = [{pool_name = "nope"}]',
     "modules.mod_event_pusher.http.handlers[0].pool_name: pool 'nope' is not defined in "
     "[outgoing_pools.http]"),
    ("[modules.mod_event_pusher.rabbit]",
     "modules.mod_event_pusher.rabbit: pool 'event_pusher' is not defined in "
     "[outgoing_pools.rabbit]"),
    ('[modules.mod_event_pusher.sns]\nsns_host = "sns.eu-west-1.amazonaws.com"\n'
     'region = "eu-west-1"\naccess_key_id = "AKID"\nsecret_access_key = "s"',
     "modules.mod_event_pusher.sns.account_id: missing required option"),
    ('[modules.mod_event_pusher.rabbit.presence_exchange]\ntype = "fan"\n'
     "[outgoing_pools.rabbit.event_pusher.connection]",
     "modules.mod_event_pusher.rabbit.presence_exchange.type: expected one of topic, direct, "
     "fanout, headers"),
    ('[outgoing_pools.http.p.connection]\nhost = "localhost:80"',
     'outgoing_pools.http.p.connection.host: expected a URL starting with "http://" or '
     '"https://"'),
])
def test_config_errors_name_the_path(tmp_path: Path, toml: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + toml, tmp_path)
    assert problem in [str(p) for p in err.value.problems]
