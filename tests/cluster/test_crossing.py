"""How a stanza crosses nodes (cluster/links.py, wire.py, RedisNode._received).

- The items written during one loop turn leave in one batch frame and arrive in order, and the
  receiver's running acknowledgement empties the sender's un-acknowledged queue (real sockets,
  two ``NodeLinks`` in one process).
- A peer that reads frames and closes without acknowledging them (it died with them unread):
  every item is handed back to ``on_lost``, in order, and the node counts as gone for a while.
- Two real nodes with mod_mam: a message to a full JID on the other node is archived in the
  recipient's archive too (it is routed there as a local stanza, so the local filters run;
  before, the receiving node handed it straight to the session and mod_mam never saw it).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from suricate.cluster import links as links_mod
from suricate.cluster import wire
from suricate.cluster.links import COOKIE_SIZE, NodeLinks
from tests.cluster.test_redis_nodes import _toml, start_node, stop_node
from tests.cluster.test_workers import _register
from tests.e2e.harness import connect, disconnect, eventually, free_port

pytestmark = pytest.mark.xdist_group("redis_nodes")

COOKIE = b"c" * COOKIE_SIZE


def test_one_turn_is_one_batch_in_order_and_acknowledged() -> None:
    async def run() -> None:
        got: list[tuple[Any, ...]] = []
        receiver = NodeLinks(got.append, "127.0.0.1", 0)
        address = await receiver.start(COOKIE)
        sender = NodeLinks(lambda item: None, "127.0.0.1", 0)
        await sender.start(COOKIE)
        try:
            assert await sender.send("r", address, (wire.REPLACE, "first"))
            link = sender._links["r"]
            frames: list[bytes] = []
            write = link.writer.write
            link.writer.write = lambda data: (frames.append(data), write(data))  # type: ignore
            for i in range(500):  # one loop turn
                assert sender.send_now("r", (wire.REPLACE, f"u{i}@localhost/r"))
            await eventually(lambda: len(got) == 501)
            assert [item[1] for item in got[1:]] == [f"u{i}@localhost/r" for i in range(500)]
            assert len(frames) == 1  # one batch frame, one write
            assert wire.Deframer().feed(frames[0])[0][0] == wire.BATCH
            await eventually(lambda: not link.unacked)  # the peer's count came back
        finally:
            await sender.stop()
            await receiver.stop()

    asyncio.run(run())


def test_items_a_dying_peer_did_not_acknowledge_are_handed_back() -> None:
    async def run() -> None:
        received = asyncio.Event()

        async def silent_peer(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
            # Reads the cookie and the frames, acknowledges nothing, then dies.
            await reader.readexactly(COOKIE_SIZE)
            await reader.read(1 << 16)
            received.set()
            await asyncio.sleep(0.1)
            writer.transport.abort()

        peer = await asyncio.start_server(silent_peer, "127.0.0.1", 0)
        port = peer.sockets[0].getsockname()[1]
        lost: list[tuple[str, list[tuple[Any, ...]]]] = []
        sender = NodeLinks(lambda item: None, "127.0.0.1", 0,
                           lambda node, items: lost.append((node, items)))
        await sender.start(COOKIE)
        try:
            items = [(wire.STANZA, "a@localhost/x", f"b@localhost/{i}", ("message",), 0)
                     for i in range(20)]
            for item in items:
                assert await sender.send("dead", f"127.0.0.1:{port}", item)
            await asyncio.wait_for(received.wait(), 5)
            await eventually(lambda: bool(lost))
            assert lost == [("dead", items)]
            # Gone for a while: a later send answers False at once (no reconnect).
            assert sender.gone("dead")
            assert not await sender.send("dead", f"127.0.0.1:{port}", items[0])
            assert not sender.send_now("dead", items[0])
            assert len(lost) == 1
        finally:
            await sender.stop()
            peer.close()

    assert links_mod.GONE_FOR >= 1
    asyncio.run(run())


def test_message_to_full_jid_on_other_node_is_archived_there(
        tmp_path: Path, redis_db: int) -> None:
    mam = "[modules.mod_mam]\n[modules.mod_mam.pm]\n"
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), redis_db))
    nodes = [start_node(tmp_path, redis_db, f"mam{i}", modules_extra=mam) for i in range(2)]

    def archived(user: str, direction: str) -> int:
        with sqlite3.connect(tmp_path / "suricate.db") as db:
            return int(db.execute("SELECT count(*) FROM mam_message WHERE username = ? AND "
                                  "direction = ?", (user, direction)).fetchone()[0])

    async def run() -> None:
        alice = await connect(nodes[0], "alice@localhost/phone", "pw")  # type: ignore[arg-type]
        bob = await connect(nodes[1], "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        alice.send_presence()
        bob.send_presence()
        await asyncio.sleep(0.3)
        for i in range(5):
            alice.send_message(mto="bob@localhost/desk", mbody=f"m{i}", mtype="chat")
        bodies = [(await bob.next_message())["body"] for _ in range(5)]
        assert bodies == [f"m{i}" for i in range(5)]
        await eventually(lambda: archived("alice", "O") == 5 and archived("bob", "I") == 5)
        await disconnect(alice, bob)

    try:
        asyncio.run(run())
    finally:
        for node in nodes:
            stop_node(node)
