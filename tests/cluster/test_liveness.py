"""A live node is never declared dead; a wedged or paused one is (issue 14).

Node A runs in the test's process (its event loop is the test's, so the test can make it busy
with a CPU-bound callback); node B is a real ``suricate serve`` process sharing the real Redis
and the SQLite file; real slixmpp clients.

- A 4 s CPU-bound callback in A's loop (past DEAD_AFTER, 3 s): the heartbeat thread keeps
  beating, B does not reap A, A's session row stays, chat goes on after.
- A loop that makes no progress for LOOP_STALL (lowered to 1.5 s here): the beat stops, B
  reaps A; when the loop comes back A rejoins and its live session is claimed back.
- A message copy (one of several, or the only one) that reaches a node whose session has
  left ends in offline storage, never dropped; and so does a bare-JID message sent right
  after a paused node resumed and rejoined.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import pytest
import redis

from suricate.cluster import wire
from suricate.cluster.membership import Membership
from suricate.config import parse_config
from suricate.core.server import Server
from suricate.modules import MODULES
from suricate.xml.element import Element
from tests.cluster.test_bad_conditions import PrivateRedis, private_redis  # noqa: F401
from tests.cluster.test_redis_nodes import _register, _rows, _sync, _toml, start_node, stop_node
from tests.e2e.harness import connect, disconnect, eventually, free_port

pytestmark = pytest.mark.xdist_group("redis_nodes")


def _busy(seconds: float) -> None:
    """CPU-bound work in the loop: pure Python, no I/O, no await."""
    until = time.monotonic() + seconds
    n = 0
    while time.monotonic() < until:
        n += 1


async def _in_process_node(tmp: Path, db: int) -> tuple[Server, Membership]:
    c2s, tls = free_port(), free_port()
    server = Server(parse_config(_toml(tmp, c2s, tls, db), tmp), tmp, MODULES)
    server.c2s_port = c2s  # type: ignore[attr-defined]
    server.tls_port = tls  # type: ignore[attr-defined]
    member = Membership(server)
    await member.start()
    await server.start()
    return server, member


def test_busy_loop_not_reaped_wedged_loop_reaped(tmp_path: Path, redis_db: int) -> None:
    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db))
    b = start_node(tmp_path, db, "b")

    async def run() -> None:
        server, member = await _in_process_node(tmp_path, db)
        a_name = member.node.name
        try:
            alice = await connect(server, "alice@localhost/phone", "pw")
            bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
            for client in (alice, bob):
                client.send_presence()
            await eventually(lambda: len(_rows(db, "alice@localhost")) == 1)
            beats = member.node.heartbeat.beats

            # Busy past DEAD_AFTER: the thread beats meanwhile, B reaps nobody.
            _busy(4.0)
            assert member.node.heartbeat.beats >= beats + 3
            await asyncio.sleep(1.5)  # B's membership task runs at least once more
            assert a_name in _sync(db).hkeys("suricate:nodes")
            assert _rows(db, "alice@localhost") == {"phone": [a_name, "0", "1"]}
            bob.send_message(mto="alice@localhost/phone", mbody="after busy", mtype="chat")
            assert (await alice.next_message())["body"] == "after busy"

            # Wedged: no progress for LOOP_STALL, the beat stops and B reaps A.
            member.node.heartbeat.loop_stall = 1.5
            _busy(7.5)  # the beat stops at 1.5 s, the key expires 3 s later, B reaps
            assert member.node.heartbeat.stalled
            await eventually(lambda: f"cluster_node_reaped node={a_name}" in b.log.read_text(),
                             timeout=3)
            # The loop is back: the beat resumes, A rejoins and claims alice's row back.
            await eventually(lambda: a_name in _sync(db).hkeys("suricate:nodes"), timeout=5)
            # Within REBUILD of the rejoin "no such session" is not trusted at once: A looks
            # again after it, finds dave nowhere again, and stores the message (it was
            # dropped silently here, issue 14 (b)).
            assert member.node._rebuilding_until > time.monotonic()
            alice.send_message(mto="dave@localhost", mbody="just rejoined", mtype="chat")
            await eventually(lambda: _rows(db, "alice@localhost") == {"phone": [a_name, "0",
                                                                                "1"]})
            await eventually(lambda: not member.node.heartbeat.stalled, timeout=3)
            bob.send_message(mto="alice@localhost/phone", mbody="after rejoin", mtype="chat")
            assert (await alice.next_message())["body"] == "after rejoin"
            await asyncio.sleep(3)  # past REBUILD: the second look is done
            dave = await connect(b, "dave@localhost/d", "pw")  # type: ignore[arg-type]
            dave.send_presence()
            assert (await dave.next_message())["body"] == "just rejoined"
            await disconnect(alice, bob, dave)
        finally:
            await server.stop()
            await member.stop()

    try:
        asyncio.run(run())
    finally:
        stop_node(b)
    log = b.log.read_text()
    # Reaped once (the wedged loop), never for the busy one.
    assert log.count("cluster_node_reaped") == 1, log


def test_orphaned_copies_and_rejoin_window_go_offline(tmp_path: Path, redis_db: int) -> None:
    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db))
    a = start_node(tmp_path, db, "a")
    b = start_node(tmp_path, db, "b")

    async def run() -> None:
        alice = await connect(a, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
        carol = await connect(b, "carol@localhost/x", "pw")  # type: ignore[arg-type]
        for client in (alice, carol):
            client.send_presence()
        await eventually(lambda: len(_rows(db, "carol@localhost")) == 1)

        # (c) Copies of a bare-JID message whose sessions left while they travelled: sent to
        # b as node a would, for resources b no longer has; each is stored offline.
        host, _, port = _sync(db).hget("suricate:nodes", b.name).rpartition(":")
        cookie = redis.Redis(host="127.0.0.1", port=6379, db=db).get("suricate:cookie")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(cookie)
        for ident, mode in (("c1", wire.ONE_OF_COPIES), ("c2", wire.ONLY_COPY)):
            stanza = Element("message", "jabber:client",
                             {"from": "alice@localhost/phone", "to": "dave@localhost",
                              "type": "chat", "id": ident},
                             [Element("body", "jabber:client", {}, [ident])])
            writer.write(wire.frame(wire.STANZA, "alice@localhost/phone",
                                    "dave@localhost/gone", wire.pack(stanza), mode))
        await writer.drain()
        writer.close()

        expected = {"rejoin window"}
        # (b) b paused past its heartbeat, reaped, resumed: a bare-JID message sent the
        # moment it is listed again reaches carol (live) or storage, never nothing.
        b.proc.send_signal(signal.SIGSTOP)
        try:
            await eventually(lambda: b.name not in _sync(db).hkeys("suricate:nodes"),
                             timeout=8)
            # Read by b when it resumes, before it rejoins: its lookup finds itself
            # unlisted (the table may be rebuilding), looks again, then stores it offline.
            carol.send_message(mto="dave@localhost", mbody="from the paused node",
                               mtype="chat")
            await asyncio.sleep(0.2)
        finally:
            b.proc.send_signal(signal.SIGCONT)
        await eventually(lambda: b.name in _sync(db).hkeys("suricate:nodes"), timeout=5,
                         interval=0.005)
        # Within REBUILD of b's rejoin: b's lookup for dave finds nothing, looks again after
        # the rebuild, finds nothing again: stored offline.
        carol.send_message(mto="dave@localhost", mbody="just rejoined", mtype="chat")
        alice.send_message(mto="carol@localhost", mbody="rejoin window", mtype="chat")
        with contextlib.suppress(asyncio.TimeoutError):
            got = await carol.next_message(timeout=5)
            assert got["body"] == "rejoin window"
            expected.discard("rejoin window")  # live: not stored
        await disconnect(alice, carol)
        if expected:
            # Not live: then stored, and shown at carol's next login.
            carol = await connect(a, "carol@localhost/y", "pw")  # type: ignore[arg-type]
            carol.send_presence()
            assert (await carol.next_message())["body"] == "rejoin window"
            await disconnect(carol)

        # dave logs in: both copies were stored offline.
        dave = await connect(a, "dave@localhost/new", "pw")  # type: ignore[arg-type]
        dave.send_presence()
        bodies: set[str] = set()
        with contextlib.suppress(asyncio.TimeoutError):  # a failure then names what is missing
            while len(bodies) < 4:
                bodies.add((await dave.next_message(timeout=10))["body"])
        assert bodies == {"c1", "c2", "from the paused node", "just rejoined"}
        await disconnect(dave)

    try:
        asyncio.run(run())
    finally:
        for node in (a, b):
            with contextlib.suppress(Exception):
                node.proc.send_signal(signal.SIGCONT)
            stop_node(node)


def test_next_stanza_waits_for_a_held_cross_node_send(
        tmp_path: Path, private_redis: PrivateRedis) -> None:  # noqa: F811 (the fixture)
    """Router.route_held: a message to a user on another node waits for its Redis lookup;
    the sender's next stanza (a ping) is answered only once that message is on its way, not
    before (RFC 6120 §10.1). The lookup is made slow by pausing the test's own Redis."""
    port = private_redis.port
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), 0, port))
    a = start_node(tmp_path, 0, "a", port)
    b = start_node(tmp_path, 0, "b", port)

    async def run() -> None:
        alice = await connect(a, "alice@localhost/phone", "pw",  # type: ignore[arg-type]
                              plugins=("xep_0199",))
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        for client in (alice, bob):
            client.send_presence()
        # Available (the bare-JID message goes to available resources only).
        await eventually(lambda: _rows(0, "bob@localhost", port) == {"desk": [b.name, "0",
                                                                              "1"]})

        _sync(0, port).execute_command("CLIENT", "PAUSE", "1200", "ALL")
        started = time.monotonic()
        alice.send_message(mto="bob@localhost", mbody="held", mtype="chat")
        await alice.plugin["xep_0199"].ping(jid="localhost", timeout=10)
        answered = time.monotonic() - started
        got = await bob.next_message(timeout=5)
        assert got["body"] == "held"
        # The ping waited for the message's lookup (Redis paused 1.2 s).
        assert answered >= 0.9, answered
        await disconnect(alice, bob)

    try:
        asyncio.run(run())
    finally:
        for node in (a, b):
            stop_node(node)
