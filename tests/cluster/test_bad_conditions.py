"""Bad conditions for ``sm_backend = "redis"`` nodes (real ``suricate serve`` processes, real
slixmpp clients):

- Redis stopped for a few seconds then started again, empty (a private ``redis-server`` on a
  free port): local traffic goes on; a cross-node message sent meanwhile waits and is delivered
  once Redis is back; the table and the membership are rebuilt from the live nodes.
- A node SIGSTOPped past its heartbeat, reaped, then SIGCONTed: the resource bound on another
  node meanwhile keeps its row and the paused node's session of it ends with <conflict/>; its
  other sessions come back (no duplicates, nothing stale).
- An error bounce generated on a node for a stanza that came from another node reaches the
  sender there.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from suricate.cluster import wire
from suricate.xml.element import Element
from tests.cluster.conftest import require_redis_server
from tests.cluster.test_redis_nodes import (
    _register,
    _rows,
    _sync,
    _toml,
    start_node,
    stop_node,
)
from tests.e2e.harness import connect, disconnect, eventually, free_port

pytestmark = pytest.mark.xdist_group("redis_nodes")


class PrivateRedis:
    """A ``redis-server`` of the test's own that can be stopped and started again on the
    same port; it keeps nothing on disk, so it comes back empty (the worst case)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(Exception):
                if _sync(0, self.port).ping():
                    return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    require_redis_server()
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_restart_local_goes_on_cross_node_waits_table_rebuilt(
        tmp_path: Path, private_redis: PrivateRedis) -> None:
    port = private_redis.port
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), 0, port))
    a = start_node(tmp_path, 0, "a", port)
    b = start_node(tmp_path, 0, "b", port)

    async def run() -> None:
        alice = await connect(a, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
        carol = await connect(a, "carol@localhost/x", "pw")  # type: ignore[arg-type]
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        for client in (alice, carol, bob):
            client.send_presence()
        await eventually(lambda: len(_rows(0, "bob@localhost", port)) == 1)

        private_redis.stop()
        await asyncio.sleep(1.5)  # every connection to Redis is broken by now
        # Local traffic goes on.
        alice.send_message(mto="carol@localhost/x", mbody="local", mtype="chat")
        assert (await carol.next_message())["body"] == "local"
        # Cross-node: waits for Redis rather than being lost or stored offline.
        alice.send_message(mto="bob@localhost/desk", mbody="across", mtype="chat")
        await asyncio.sleep(2.0)
        assert bob.messages.empty()
        private_redis.start()  # empty: no node, no row
        got = await bob.next_message(timeout=8)
        assert (got["body"], str(got["from"])) == ("across", "alice@localhost/phone")
        # The table is rebuilt from the live nodes; nobody reaped anybody meanwhile.
        await eventually(lambda: set(_sync(0, port).hkeys("suricate:nodes")) == {a.name, b.name},
                         timeout=5)
        await eventually(lambda: _rows(0, "bob@localhost", port) == {"desk": [b.name, "0", "1"]})
        await eventually(lambda: _rows(0, "alice@localhost", port) == {"phone": [a.name, "0",
                                                                                 "1"]})
        bob.send_message(mto="alice@localhost/phone", mbody="back", mtype="chat")
        assert (await alice.next_message())["body"] == "back"
        await disconnect(alice, carol, bob)

    try:
        asyncio.run(run())
    finally:
        for node in (a, b):
            stop_node(node)
    assert not any("cluster_node_reaped" in n.log.read_text() for n in (a, b))


def test_paused_node_does_not_bring_back_stale_sessions(
        tmp_path: Path, redis_db: int) -> None:
    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db))
    a = start_node(tmp_path, db, "a", 6379)
    b = start_node(tmp_path, db, "b", 6379)

    async def run() -> None:
        alice = await connect(a, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
        old_bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        carol = await connect(b, "carol@localhost/x", "pw")  # type: ignore[arg-type]
        for client in (alice, old_bob, carol):
            client.send_presence()
        await eventually(lambda: len(_rows(db, "carol@localhost")) == 1)
        conflict = asyncio.get_running_loop().create_future()
        old_bob.add_event_handler("stream_error", lambda e: conflict.done()
                                  or conflict.set_result(e["condition"]))

        b.proc.send_signal(signal.SIGSTOP)
        try:
            # Past the heartbeat: a reaps b and its rows.
            await eventually(lambda: b.name not in _sync(db).hkeys("suricate:nodes"),
                             timeout=8)
            assert _rows(db, "bob@localhost") == {} and _rows(db, "carol@localhost") == {}
            # Bob binds the same full JID on a meanwhile.
            bob = await connect(a, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
            bob.send_presence()
            await eventually(lambda: _rows(db, "bob@localhost") == {"desk": [a.name, "0", "1"]})
        finally:
            b.proc.send_signal(signal.SIGCONT)
        # b notices it was reaped: carol's session comes back, bob's stale one ends.
        assert await asyncio.wait_for(conflict, 8) == "conflict"
        await eventually(lambda: b.name in _sync(db).hkeys("suricate:nodes"), timeout=5)
        await eventually(lambda: _rows(db, "carol@localhost") == {"x": [b.name, "0", "1"]})
        assert _rows(db, "bob@localhost") == {"desk": [a.name, "0", "1"]}
        alice.send_message(mto="bob@localhost/desk", mbody="to the new one", mtype="chat")
        assert (await bob.next_message())["body"] == "to the new one"
        alice.send_message(mto="carol@localhost/x", mbody="still there", mtype="chat")
        assert (await carol.next_message())["body"] == "still there"
        await asyncio.sleep(1.5)  # a few beats later nothing flips back
        assert _rows(db, "bob@localhost") == {"desk": [a.name, "0", "1"]}
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old_bob.disconnect(), 1)

        # An error bounce generated on b for a stanza from a's alice travels back to a: a
        # groupchat message to a full JID without a session is answered service-unavailable
        # (RFC 6121 §8.5.3.2.1). The stanza is handed to b as a node would (its cluster link,
        # with the cookie).
        stanza = Element("message", "jabber:client",
                         {"from": "alice@localhost/phone", "to": "carol@localhost/gone",
                          "type": "groupchat", "id": "g1"},
                         [Element("body", "jabber:client", {}, ["lost?"])])
        host, _, port = _sync(db).hget("suricate:nodes", b.name).rpartition(":")
        cookie = redis.Redis(host="127.0.0.1", port=6379, db=db).get("suricate:cookie")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(cookie + wire.frame(wire.STANZA, "alice@localhost/phone",
                                         "carol@localhost/gone", wire.pack(stanza), wire.TO_FULL))
        await writer.drain()
        got = await alice.next_message()
        assert (got["type"], got["id"], got["error"]["condition"]) == (
            "error", "g1", "service-unavailable")
        await disconnect(alice, bob, carol)
        writer.close()

        # A peer without the cluster cookie is dropped before anything is decoded.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"x" * 32 + wire.frame(wire.STANZA, "a@localhost/a", "b@localhost/b",
                                            wire.pack(stanza), wire.TO_FULL))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert "cluster_link_refused" in b.log.read_text()

    try:
        asyncio.run(run())
    finally:
        for node in (a, b):
            with contextlib.suppress(Exception):
                node.proc.send_signal(signal.SIGCONT)
            stop_node(node)
