"""mod_global_distrib between two data centres (conftest.py): real processes, real TLS between
them, real Redis, slixmpp clients.

- alice on A and bob on B chat both ways, to full and bare JIDs; a subscription made across
  them, and a probe from a new session answered by the other data centre; a MUC room hosted
  on A (B runs no mod_muc) joined by bob from B.
- bob moves from B to A while a message for him is on its way to B: B finds him gone, routes
  it again after resend_after_ms, the mapping read afresh, and A delivers it live, once (no
  XEP-0203 delay: it was not stored offline).
- a data centre that forwards every stanza back (a loop): the TTL ends it after message_ttl
  hops, and the message is stored offline once.
- B killed (SIGKILL): its entries still name it, the connection is refused, and messages to
  bob go to the offline storage both data centres share; bob gets them on A.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import ssl
import time
import urllib.request
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError

from suricate.modules.mod_global_distrib.connections import frame, read_frame
from tests.e2e.harness import connect, disconnect, eventually, free_port
from tests.global_distrib.conftest import DC, World, flush, global_redis
from tests.muc.conftest import PLUGINS, create_room, next_groupchat

pytestmark = pytest.mark.xdist_group("redis_nodes")

ROOM = "team@muc.localhost"
MUC = '[modules.mod_muc]\nhost = "muc.@HOST@"\n'


async def _user(dc: DC, name: str, resource: str = "r", presence: bool = True) -> Any:
    client = await connect(dc, f"{name}@localhost/{resource}", "pw",  # type: ignore[arg-type]
                           plugins=PLUGINS)
    if presence:
        client.send_presence()
    return client


async def _mapped(world: World, jid: str, host: str | None) -> None:
    r = global_redis(world)
    await eventually(lambda: r.get(f"gd:jid:{jid}") == host, timeout=10)


async def _message(client: Any, body: str, timeout: float = 5.0) -> Any:
    while True:
        msg = await client.next_message(timeout)
        if msg["body"] == body:
            return msg


async def _presence_from(client: Any, bare: str, timeout: float = 5.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pres = await asyncio.wait_for(client.presences.get(), deadline - loop.time())
        if pres["from"].bare == bare and pres["type"] in ("available", "chat", "away"):
            return pres


def _offline(world: World, user: str) -> int:
    with sqlite3.connect(world.tmp / "suricate.db") as db:
        return int(db.execute("SELECT count(*) FROM offline_messages WHERE username = ?",
                              (user,)).fetchone()[0])


@pytest.fixture
def fresh(world: World) -> World:
    for db in (*world.sessions_db.values(), world.global_db):
        flush(db)
    return world


def _both(world: World, a_extra: str = "", b_extra: str = "",
          gd_extra: str = "") -> tuple[DC, DC]:
    a = world.start("dc1", a_extra, gd_extra)
    try:
        b = world.start("dc2", b_extra, gd_extra)
    except BaseException:
        a.stop()
        raise
    return a, b


def _metrics_toml(port: int) -> str:
    return f"""
[instrumentation.prometheus]

[[listen.http]]
port = {port}
ip_address = "127.0.0.1"

[[listen.http.handlers.mongoose_prometheus_handler]]
host = "_"
path = "/metrics"
"""


def _metric(port: int, line_start: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_chat_presence_and_a_room_across_data_centres(fresh: World) -> None:
    world = fresh
    metrics = free_port()
    a, b = _both(world, a_extra=MUC + _metrics_toml(metrics))

    async def run() -> None:
        alice, bob = await _user(a, "alice"), await _user(b, "bob")
        await _mapped(world, "alice@localhost/r", "dc1.localhost")
        await _mapped(world, "bob@localhost", "dc2.localhost")
        # Full and bare JIDs, both ways; a burst on a cold cache arrives in order.
        for i in range(20):
            alice.send_message(mto=SJID("bob@localhost/r"), mbody=f"burst {i}", mtype="chat")
        assert [(await bob.next_message())["body"] for _ in range(20)] == \
            [f"burst {i}" for i in range(20)]
        alice.send_message(mto=SJID("bob@localhost/r"), mbody="a>b full", mtype="chat")
        assert (await _message(bob, "a>b full"))["from"] == "alice@localhost/r"
        bob.send_message(mto=SJID("alice@localhost/r"), mbody="b>a full", mtype="chat")
        await _message(alice, "b>a full")
        alice.send_message(mto=SJID("bob@localhost"), mbody="a>b bare", mtype="chat")
        await _message(bob, "a>b bare")
        bob.send_message(mto=SJID("alice@localhost"), mbody="b>a bare", mtype="chat")
        await _message(alice, "b>a bare")
        # An IQ to a client of the other data centre, and its answer (an error from
        # slixmpp: what matters is where it comes from).
        ping = alice.make_iq_get(queryxmlns="urn:example:nothing", ito=SJID("bob@localhost/r"))
        with pytest.raises(IqError) as answer:
            await ping.send(timeout=5)
        assert answer.value.iq["from"] == "bob@localhost/r"
        assert answer.value.iq["error"]["condition"] == "feature-not-implemented"

        # Subscription both ways (slixmpp approves and subscribes back by itself): each
        # gets the other's presence.
        alice.send_presence(pto=SJID("bob@localhost"), ptype="subscribe")
        await _presence_from(alice, "bob@localhost")
        await _presence_from(bob, "alice@localhost")
        # A new session of alice probes her contacts (RFC 6121 §4.3): B answers for bob.
        alice2 = await _user(a, "alice", "second")
        assert (await _presence_from(alice2, "bob@localhost"))["from"] == "bob@localhost/r"

        # A room on A (B serves no muc.localhost): bob joins from B and both talk.
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_roomname": "Team"})
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=10)
        alice.send_message(mto=SJID(ROOM), mbody="hello room", mtype="groupchat")
        assert (await next_groupchat(bob))["body"] == "hello room"
        bob.send_message(mto=SJID(ROOM), mbody="hi from B", mtype="groupchat")
        got = await next_groupchat(alice)
        while got["body"] != "hi from B":
            got = await next_groupchat(alice)
        # 6.4's event names, per other data centre.
        host = '{host="dc2.localhost"}'
        assert _metric(metrics, f"mod_global_distrib_outgoing_messages_count{host}") >= 20
        assert _metric(metrics, f"mod_global_distrib_incoming_messages_count{host}") >= 3
        assert _metric(metrics, f"mod_global_distrib_outgoing_established_count{host}") >= 1
        assert _metric(metrics, "mod_global_distrib_mapping_fetches_count") >= 1
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics").read().decode()
        assert "\nmod_global_distrib_stop_ttl_zero_count 0" in text  # there at zero
        await disconnect(alice, alice2, bob)
        # A clean log-out removes the entries (the data centre that wrote them).
        await _mapped(world, "bob@localhost/r", None)
        await _mapped(world, "bob@localhost", None)

    try:
        asyncio.run(run())
    finally:
        a.stop()
        b.stop()


def test_user_moving_while_a_message_is_in_flight_gets_it_once_live(fresh: World) -> None:
    world = fresh
    # Room for bob's log-in on A before B gives up (10 x 300 ms).
    a, b = _both(world, gd_extra="bounce.resend_after_ms = 300\nbounce.max_retries = 10\n")

    async def run() -> None:
        alice, bob = await _user(a, "alice"), await _user(b, "bob")
        await _mapped(world, "bob@localhost", "dc2.localhost")
        alice.send_message(mto=SJID("bob@localhost"), mbody="first", mtype="chat")
        await _message(bob, "first")  # A now has bob -> B in its cache (5 s)
        await disconnect(bob)
        await _mapped(world, "bob@localhost", None)
        # A still believes B: the message goes there and finds bob gone.
        alice.send_message(mto=SJID("bob@localhost"), mbody="in flight", mtype="chat")
        bob_on_a = await _user(a, "bob", "moved")
        msg = await _message(bob_on_a, "in flight", timeout=10)
        assert msg.xml.find("{urn:xmpp:delay}delay") is None, "stored offline, not resent"
        with pytest.raises(asyncio.TimeoutError):
            await _message(bob_on_a, "in flight", timeout=1.5)  # once
        assert _offline(world, "bob") == 0
        await disconnect(alice, bob_on_a)

    try:
        asyncio.run(run())
    finally:
        a.stop()
        b.stop()


def test_ttl_ends_a_forwarding_loop(fresh: World) -> None:
    """A third data centre (this test) that sends every stanza back to B: B forwards it
    message_ttl (4) times, then routes it where it is: carol's offline storage, once."""
    world = fresh
    b = world.start("dc2")
    seen: list[int] = []

    async def run() -> None:
        issued = world.issued("dc3.localhost")
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(issued.certfile, issued.keyfile)
        client_ctx = ssl.create_default_context(cafile=world.ca.certfile)
        client_ctx.check_hostname = False
        client_ctx.load_cert_chain(issued.certfile, issued.keyfile)
        r = global_redis(world)
        (b_endpoint,) = json.loads(next(r.get(k) for k in r.keys("gd:ep:dc2.localhost:*")))
        host, _, port = b_endpoint.rpartition(":")
        back_r, back_w = await asyncio.open_connection(host, int(port), ssl=client_ctx)
        back_w.write(frame({"h": "dc3.localhost"}))

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert (await read_frame(reader))["h"] == "dc2.localhost"
            while True:
                obj = await read_frame(reader)
                seen.append(obj["l"])
                writer.write(frame({"a": len(seen)}))
                back_w.write(frame(obj))  # straight back to B, with the TTL B gave it

        loop_server = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=server_ctx)
        loop_port = loop_server.sockets[0].getsockname()[1]
        r.sadd("gd:hosts", "dc3.localhost")
        r.sadd("gd:nodes:dc3.localhost", "n")
        r.set("gd:ep:dc3.localhost:n", json.dumps([f"127.0.0.1:{loop_port}"]))
        r.set("gd:jid:carol@localhost", "dc3.localhost")
        alice = await _user(b, "alice")
        alice.send_message(mto=SJID("carol@localhost"), mbody="loop", mtype="chat")
        await eventually(lambda: _offline(world, "carol") == 1, timeout=10)
        await asyncio.sleep(0.5)
        assert seen == [3, 2, 1, 0]
        assert _offline(world, "carol") == 1
        await disconnect(alice)
        loop_server.close()
        back_w.close()

    try:
        asyncio.run(run())
    finally:
        b.stop()


def test_killed_data_centre_messages_go_offline(fresh: World) -> None:
    world = fresh
    a, b = _both(world)

    async def run() -> None:
        alice, bob = await _user(a, "alice"), await _user(b, "bob")
        await _mapped(world, "bob@localhost", "dc2.localhost")
        alice.send_message(mto=SJID("bob@localhost"), mbody="before", mtype="chat")
        await _message(bob, "before")
        # B's acknowledgement of "before" reaches A within milliseconds; a kill before it
        # would (rightly: at least once) store "before" offline as well (seen: 4 rows).
        await asyncio.sleep(1.0)
        b.kill()
        # B's entries outlive it (until expire_after): A's connection is refused, and the
        # messages are stored in the offline storage both share, never dropped.
        assert global_redis(world).get("gd:jid:bob@localhost") == "dc2.localhost"
        started = time.monotonic()
        for i in range(3):
            alice.send_message(mto=SJID("bob@localhost/r"), mbody=f"after {i}", mtype="chat")
        await eventually(lambda: _offline(world, "bob") >= 3, timeout=10)
        await asyncio.sleep(0.5)
        assert _offline(world, "bob") == 3
        assert time.monotonic() - started < 5
        bob_on_a = await _user(a, "bob", "back")
        for i in range(3):
            msg = await _message(bob_on_a, f"after {i}")
            assert msg.xml.find("{urn:xmpp:delay}delay") is not None
        await disconnect(alice, bob_on_a)

    try:
        asyncio.run(run())
    finally:
        b.kill()
        a.stop()
