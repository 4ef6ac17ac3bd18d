"""How a stanza crosses nodes (cluster/links.py, wire.py, RedisNode._received).

- The items written during one loop turn leave in one batch frame and arrive in order, and the
  receiver's running acknowledgement empties the sender's un-acknowledged queue (real sockets,
  two ``NodeLinks`` in one process).
- A peer that reads frames and closes without acknowledging them (it died with them unread):
  every item is handed back to ``on_lost``, in order, and the node counts as gone for a while.
- Two real nodes with mod_mam: a message to a full JID on the other node is archived in the
  recipient's archive too (it is routed there as a local stanza, so the local filters run;
  before, the receiving node handed it straight to the session and mod_mam never saw it).
- A message crossing as the recipient's bytes (``wire.XML``, the sender has no filter) is
  written as it is only when the session needs no element: a session with XEP-0198 counting
  gets it the full way (every stanza counted, an <r/> after each, its <a h/> accepted), and a
  receiving node with mod_mam parses it and archives the recipient's copy.
- The items of one frame written as bytes leave in the loop turn that read the frame, one
  write per connection, in order after what the connection already held (issue 14: not one
  loop turn later, from a callback per connection).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bench.cluster_receive import plain_session
from suricate.cluster import links as links_mod
from suricate.cluster import wire
from suricate.cluster.links import COOKIE_SIZE, NodeLinks
from suricate.cluster.redis_sm import RedisNode
from suricate.net.connection import Connection
from tests.cluster.test_redis_nodes import Node, _toml, launch_node, start_node, stop_node
from tests.cluster.test_workers import LIMIT, _available, _register
from tests.e2e.harness import connect, disconnect, eventually, free_port, server_toml

pytestmark = pytest.mark.xdist_group("redis_nodes")

COOKIE = b"c" * COOKIE_SIZE


def test_one_turn_is_one_batch_in_order_and_acknowledged() -> None:
    async def run() -> None:
        got: list[tuple[Any, ...]] = []
        receiver = NodeLinks(got.extend, "127.0.0.1", 0)
        address = await receiver.start(COOKIE)
        sender = NodeLinks(lambda items: None, "127.0.0.1", 0)
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
        sender = NodeLinks(lambda items: None, "127.0.0.1", 0,
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


def test_acknowledgements_drop_whole_batches_and_cut_a_partial_one() -> None:
    """The sender keeps batches, not items (issue 14); an acknowledgement that ends inside
    a batch (not what a peer sends, which counts whole frames) still keeps exactly the rest,
    in order, and what is left unacknowledged is handed back item by item."""
    async def run() -> None:
        link = links_mod._Link(None, None)  # type: ignore[arg-type]
        items = [(wire.REPLACE, f"u{i}@localhost/r") for i in range(10)]
        for item in items[:4]:
            link.write(item)
        link._pending = None  # as _flush leaves it, without a writer
        for item in items[4:]:
            link.write(item)
        assert [len(batch) for batch in link.unacked] == [4, 6]
        total = [0]
        link.acked(4, total)
        assert [len(batch) for batch in link.unacked] == [6]
        link.acked(7, total)
        assert total == [7]
        assert link.take_unacked() == items[7:]
        assert not link.unacked

    asyncio.run(run())


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return 0


def test_a_frames_bytes_are_written_in_the_turn_that_read_it() -> None:
    from types import SimpleNamespace

    async def run() -> None:
        conns, transports, sessions = {}, {}, {}
        for user in ("bob", "carol"):
            conn = conns[user] = Connection(lambda c: None)  # type: ignore[arg-type,return-value]
            conn.transport = transports[user] = _Transport()  # type: ignore[assignment]
            sessions[f"{user}@localhost/r"] = plain_session(conn)
        conns["carol"].write(b"<earlier/>")  # written this turn by something else
        elsewhere: list[tuple[Any, ...]] = []
        node = SimpleNamespace(
            server=SimpleNamespace(sessions=SimpleNamespace(
                local=lambda jid: sessions.get(str(jid)))),
            _plain=lambda: True, _received_item=elsewhere.append)
        items = [(wire.XML, "a@localhost/x", "bob@localhost/r", b"<m1/>"),
                 (wire.XML, "a@localhost/x", "carol@localhost/r", b"<m2/>"),
                 (wire.XML, "a@localhost/x", "nobody@localhost/r", b"<m3/>"),
                 (wire.XML, "a@localhost/x", "bob@localhost/r", b"<m4/>")]
        RedisNode._received(node, items)  # type: ignore[arg-type]
        # Already on the sockets, one write each, in order; nothing left for a later turn.
        assert transports["bob"].writes == [b"<m1/><m4/>"]
        assert transports["carol"].writes == [b"<earlier/><m2/>"]
        assert all(c._flush_handle is None or c._flush_handle.cancelled()
                   for c in conns.values())
        assert elsewhere == [items[2]]  # no session here: the full way (RFC 6121 §8)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert transports["bob"].writes == [b"<m1/><m4/>"]
        assert transports["carol"].writes == [b"<earlier/><m2/>"]

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
        await _available(redis_db, "bob@localhost", "desk")
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


# No module that filters what a session receives (mod_blocking, carbons, CSI) or archives: the
# sender writes a message to a full JID as the recipient's bytes (wire.XML).
PLAIN = "\n".join(f"[modules.{m}]" for m in (
    "mod_presence", "mod_roster", "mod_disco", "mod_ping", "mod_offline"))


def _start_plain(tmp: Path, db: int, tag: str, extra: str) -> Node:
    """A node with only the ``PLAIN`` modules and ``extra``."""
    c2s, tls = free_port(), free_port()
    pool = ("[outgoing_pools.redis.default.connection]\nhost = \"127.0.0.1\"\nport = 6379\n"
            f"database = {db}\n")
    toml = server_toml(tmp, c2s, tls, extra=pool + LIMIT, modules=PLAIN + "\n" + extra)
    return launch_node(tmp, db, tag, c2s, tls,
                       toml.replace('loglevel = "info"', 'loglevel = "info"\nsm_backend = "redis"'))


def test_bytes_path_keeps_stream_management_counts_and_the_archive(
        tmp_path: Path, redis_db: int) -> None:
    sm = "[modules.mod_stream_management]"
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), redis_db))
    nodes = [_start_plain(tmp_path, redis_db, "plain0", sm),
             _start_plain(tmp_path, redis_db, "plain1", sm),
             _start_plain(tmp_path, redis_db, "mam2", "[modules.mod_mam]\n[modules.mod_mam.pm]")]

    def archived(user: str) -> int:
        with sqlite3.connect(tmp_path / "suricate.db") as db:
            return int(db.execute("SELECT count(*) FROM mam_message WHERE username = ? AND "
                                  "direction = 'I'", (user,)).fetchone()[0])

    async def run() -> None:
        alice = await connect(nodes[0], "alice@localhost/phone", "pw")  # type: ignore[arg-type]
        # carol counts with XEP-0198 (an <r/> from the server after each stanza); bob does
        # not (the bytes go to his socket as they are); dave's node archives.
        carol = await connect(nodes[1], "carol@localhost/desk", "pw",  # type: ignore[arg-type]
                              plugins=("xep_0198",))
        requests: list[str] = []

        def seen(stanza: Any) -> Any:
            if stanza.name == "r":
                requests.append(stanza.name)
            return stanza

        carol.add_filter("in", seen)
        bob = await connect(nodes[1], "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        dave = await connect(nodes[2], "dave@localhost/desk", "pw")  # type: ignore[arg-type]
        own = asyncio.Event()
        carol.add_event_handler("presence_available",
                                lambda p: p["from"] == carol.boundjid and own.set())
        for client in (alice, carol, bob, dave):
            client.send_presence()
        await eventually(lambda: carol.plugin["xep_0198"].enabled_in)
        # Every session's row in Redis, and carol's own presence with its <r/> counted.
        for user in ("carol", "bob", "dave"):
            await _available(redis_db, f"{user}@localhost", "desk")
        await asyncio.wait_for(own.wait(), 5)
        await eventually(lambda: len(requests) >= 1)
        before = len(requests)
        for i in range(5):
            for user in ("carol", "bob", "dave"):
                alice.send_message(mto=f"{user}@localhost/desk", mbody=f"m{i}", mtype="chat")
        for client in (carol, bob, dave):
            assert [(await client.next_message())["body"] for _ in range(5)] == \
                [f"m{i}" for i in range(5)]
        # Counted on the server: one <r/> per stanza, and carol's <a h='5'/> (which answers
        # them) accepted: a count the server had not made would end her stream with
        # <handled-count-too-high/>. She still talks: her message reaches alice.
        await eventually(lambda: len(requests) - before >= 5)
        await asyncio.sleep(0.3)
        assert len(requests) - before == 5
        carol.send_message(mto="alice@localhost/phone", mbody="still here", mtype="chat")
        assert (await alice.next_message())["body"] == "still here"
        await eventually(lambda: archived("dave") == 5)
        assert archived("bob") == 0 and archived("carol") == 0
        await disconnect(alice, carol, bob, dave)

    try:
        asyncio.run(run())
    finally:
        for node in nodes:
            stop_node(node)
