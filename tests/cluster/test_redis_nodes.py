"""``sm_backend = "redis"``: several ``suricate serve`` processes on one machine sharing the
real Redis (127.0.0.1:6379, a database of their own per test run) and one SQLite file; real
slixmpp clients. What is proven: the session table and the node membership in Redis, a
SIGKILLed node's sessions removed by exactly one survivor, a node rejoining, a clean stop
leaving nothing behind, chat across nodes (Redis pub/sub, one hop) and messages to a killed
node's user stored offline and delivered when the user comes back on another node."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from suricate.config import ConfigError, parse_config
from suricate.jid import JID
from tests.cluster.test_workers import LIMIT, _register
from tests.e2e.harness import connect, disconnect, eventually, free_port, server_toml
from tests.e2e.tls_client import TestClient

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.xdist_group("redis_nodes")

SURICATE = [sys.executable, "-m", "suricate"]


def _sync(db: int, port: int = 6379) -> Any:
    return redis.Redis(host="127.0.0.1", port=port, db=db, decode_responses=True)


@dataclass
class Node:
    proc: subprocess.Popen[str]
    c2s_port: int
    tls_port: int
    log: Path
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _toml(tmp: Path, c2s: int, tls: int, db: int, redis_port: int = 6379,
          modules_extra: str = "") -> str:
    pool = f"""
[outgoing_pools.redis.default.connection]
host = "127.0.0.1"
port = {redis_port}
database = {db}
"""
    toml = server_toml(tmp, c2s, tls, extra=pool + LIMIT)
    if modules_extra:
        toml += "\n" + modules_extra
    return toml.replace('loglevel = "info"', 'loglevel = "info"\nsm_backend = "redis"')


def start_node(tmp: Path, db: int, tag: str, redis_port: int = 6379,
               modules_extra: str = "") -> Node:
    """One node; its name is the one it added to the ``nodes`` hash. Ports taken between
    ``free_port`` and the node's bind (another test's connection got one as its own local
    port: the same range) are chosen again, twice at most."""
    for attempt in range(3):
        c2s, tls = free_port(), free_port()
        try:
            return launch_node(tmp, db, tag, c2s, tls,
                               _toml(tmp, c2s, tls, db, redis_port, modules_extra), redis_port)
        except AssertionError as exc:
            if attempt == 2 or "address already in use" not in str(exc):
                raise
    raise AssertionError("unreachable")


def launch_node(tmp: Path, db: int, tag: str, c2s: int, tls: int, toml: str,
                redis_port: int = 6379, extra: dict[str, Any] | None = None,
                command: list[str] | None = None) -> Node:
    """Start `suricate serve` on ``toml`` (listening on ``c2s``/``tls``) and wait for its
    banner; the node's name is the one it added to the ``nodes`` hash. ``command``: another
    way to run ``suricate`` (a launcher offering a test-only module, slow_open.py)."""
    config = tmp / f"{tag}.toml"
    config.write_text(toml)
    before = set(_sync(db, redis_port).hkeys("suricate:nodes"))
    log = tmp / f"{tag}.log"
    proc = subprocess.Popen([*(command or SURICATE), "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    assert "serving localhost" in banner, (banner, log.read_text())
    added = set(_sync(db, redis_port).hkeys("suricate:nodes")) - before
    assert len(added) == 1, added
    return Node(proc, c2s, tls, log, added.pop(), extra or {})


def stop_node(node: Node) -> None:
    """SIGTERM and wait; a node that has not stopped after 30 s is killed (it must not stay
    in the cluster of the next tests) and the failure shows the end of its log, where
    ``Server.drain`` names the work it was still waiting for."""
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.communicate()
            tail = "\n".join(node.log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"node {node.name} did not stop within 30 s; its log ends:\n"
                                 f"{tail}") from None


def run_on_two_nodes(tmp: Path, db: int, tag: str,
                     scenario: Callable[[Node, Node], Awaitable[None]],
                     modules_extra: str = "") -> None:
    """Start nodes ``{tag}-a`` and ``{tag}-b``, run ``scenario(a, b)``, stop both."""
    a = start_node(tmp, db, f"{tag}-a", modules_extra=modules_extra)
    b = start_node(tmp, db, f"{tag}-b", modules_extra=modules_extra)
    try:
        asyncio.run(scenario(a, b))
    finally:
        for node in (a, b):
            stop_node(node)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, redis_db: int) -> tuple[Path, int]:
    tmp = tmp_path_factory.mktemp("redis_nodes")
    # One SQLite file for every node: the accounts (and offline storage) are shared.
    _register(tmp, _toml(tmp, free_port(), free_port(), redis_db))
    return tmp, redis_db


def _rows(db: int, bare: str, port: int = 6379) -> dict[str, list[str]]:
    return {r: v.split("\t")
            for r, v in _sync(db, port).hgetall(f"suricate:sess:{bare}").items()}


def test_config_names_the_problem() -> None:
    base = '[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'
    with pytest.raises(ConfigError, match=r"general.sm_backend.*outgoing_pools.redis.default"):
        parse_config(base + 'sm_backend = "redis"\n', Path("."))
    with pytest.raises(ConfigError, match="general.sm_backend"):
        parse_config(base + 'sm_backend = "cets"\n', Path("."))
    with pytest.raises(ConfigError, match="outgoing_pools.redis.default.connection.tls"):
        parse_config(base + '[outgoing_pools.redis.default.connection.tls]\n'
                     'verify_mode = "none"\n', Path("."))
    cfg = parse_config(base + 'sm_backend = "redis"\n[outgoing_pools.redis.default.connection]\n'
                       'database = 4\n', Path("."))
    assert cfg["outgoing_pools"]["redis"]["default"]["connection"] == {
        "host": "127.0.0.1", "port": 6379, "database": 4, "password": "", "sentinels": [],
        "service_name": "mymaster", "sentinel_password": ""}


def test_reaped_exactly_once_by_concurrent_survivors(redis_db: int) -> None:
    """Five survivors race to reap one dead node: one removes its rows, the others find it
    gone; a live node is never reaped."""
    from redis.asyncio import Redis

    from suricate.cluster.redis_sm import RedisSessions

    async def run() -> None:
        client = Redis(host="127.0.0.1", port=6379, db=redis_db)
        prefix = f"unit-{uuid.uuid4().hex[:6]}:"
        try:
            dead, alive = RedisSessions(client, "dead", prefix), RedisSessions(client, "alive",
                                                                               prefix)
            await dead.join()
            await alive.join()
            await dead.put(JID("alice", "localhost", "a"), 5, True)
            await dead.put(JID("alice", "localhost", "b"), 0, False)
            await alive.put(JID("alice", "localhost", "c"), 1, True)
            assert await alive.count_user(JID("alice", "localhost")) == 3
            assert await alive.reap("dead") == -1  # its heartbeat is still there
            await client.delete(f"{prefix}alive:dead")
            survivors = [RedisSessions(client, f"s{i}", prefix) for i in range(5)]
            results = await asyncio.gather(*(s.reap("dead") for s in survivors))
            assert sorted(results) == [-1, -1, -1, -1, 2]
            rows = await alive.resources(JID("alice", "localhost"))
            assert list(rows) == ["c"] and rows["c"].node == "alive" and rows["c"].priority == 1
            assert await alive.nodes() == {"alive": ""}
            assert await survivors[0].reap("alive") == -1
        finally:
            for key in await client.keys(f"{prefix}*"):
                await client.delete(key)
            await client.aclose()

    asyncio.run(run())


def test_sessions_membership_kill_reap_rejoin(shared: tuple[Path, int]) -> None:
    tmp, db = shared
    nodes = [start_node(tmp, db, f"n{i}") for i in range(3)]
    try:
        asyncio.run(_scenario(tmp, db, nodes))
    finally:
        for node in nodes:
            stop_node(node)
    # Every node stopped cleanly: nothing of theirs is left in Redis.
    left = _sync(db)
    assert left.hgetall("suricate:nodes") == {}
    assert left.keys("suricate:sess:*") == []


async def _scenario(tmp: Path, db: int, nodes: list[Node]) -> None:
    a, b, c = nodes
    r = _sync(db)
    assert set(r.hkeys("suricate:nodes")) == {a.name, b.name, c.name}
    alice = await connect(a, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
    bob = await connect(c, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    alice.send_presence(ppriority=5)
    bob.send_presence(ppriority=-1)
    await eventually(lambda: _rows(db, "alice@localhost") == {"phone": [a.name, "5", "1"]})
    await eventually(lambda: _rows(db, "bob@localhost") == {"desk": [c.name, "-1", "1"]})

    # Chat across nodes, one hop: to a full JID, and to a bare JID (bob's priority is -1:
    # RFC 6121 §8.5.2.1.1 skips him for a bare-JID message; 5 for alice: she gets hers).
    alice.send_message(mto="bob@localhost/desk", mbody="hi bob", mtype="chat")
    got = await bob.next_message()
    assert (got["body"], str(got["from"])) == ("hi bob", "alice@localhost/phone")
    bob.send_message(mto="alice@localhost", mbody="hi alice", mtype="chat")
    got = await alice.next_message()
    assert (got["body"], str(got["from"])) == ("hi alice", "bob@localhost/desk")

    # The same full JID bound on another node: the older session ends with <conflict/>
    # (RFC 6120 §7.7.2.2) and the row names the new node.
    old_alice = alice
    closed = asyncio.get_running_loop().create_future()
    old_alice.add_event_handler("stream_error", lambda err: closed.done() or closed.set_result(
        err["condition"]))
    alice = await connect(b, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
    assert await asyncio.wait_for(closed, 5) == "conflict"
    alice.send_presence(ppriority=5)
    await eventually(lambda: _rows(db, "alice@localhost") == {"phone": [b.name, "5", "1"]})
    with contextlib.suppress(Exception):
        await asyncio.wait_for(old_alice.disconnect(), 1)

    # A session that leaves cleanly leaves no row.
    carol = await connect(b, "carol@localhost/x", "pw")  # type: ignore[arg-type]
    carol.send_presence()
    await eventually(lambda: _rows(db, "carol@localhost") == {"x": [b.name, "0", "1"]})
    await disconnect(carol)
    await eventually(lambda: _rows(db, "carol@localhost") == {})

    # SIGKILL: no goodbye. A message sent at once (bob's row still names the dead node,
    # nobody listens on its channel) is stored offline, not lost.
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    t0 = time.monotonic()
    alice.send_message(mto="bob@localhost/desk", mbody="while dying", mtype="chat")
    # A survivor reaps bob's row within a few heartbeats, exactly once.
    await eventually(lambda: _rows(db, "bob@localhost") == {}, timeout=10)
    assert time.monotonic() - t0 < 6
    assert c.name not in r.hkeys("suricate:nodes")
    alice.send_message(mto="bob@localhost/desk", mbody="after reaping", mtype="chat")
    await asyncio.sleep(1.5)  # a second survivor's later beats must find nothing to do
    reapers = [n for n in (a, b) if f"cluster_node_reaped node={c.name} sessions=1"
               in n.log.read_text()]
    assert len(reapers) == 1, [n.log.read_text() for n in (a, b)]
    with contextlib.suppress(Exception):
        await asyncio.wait_for(bob.disconnect(), 1)

    # Bob comes back on another node: both messages wait for him there.
    bob = await connect(a, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    bob.send_presence()
    bodies = {(await bob.next_message())["body"] for _ in range(2)}
    assert bodies == {"while dying", "after reaping"}
    await disconnect(bob, alice)

    # The node comes back (as a new member) and serves again.
    again = start_node(tmp, db, "n2-again")
    nodes[2] = again
    assert set(r.hkeys("suricate:nodes")) == {a.name, b.name, again.name}
    bob = await connect(again, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    bob.send_presence()
    await eventually(lambda: _rows(db, "bob@localhost") == {"desk": [again.name, "0", "1"]})
    await disconnect(bob)


def _befriend(tmp: Path, db: int, user: str, contact: str) -> None:
    """A mutual subscription written in the shared database before the nodes start."""
    from suricate.core.server import Server
    from suricate.modules import MODULES
    from suricate.modules.mod_roster.store import RosterItem

    async def run() -> None:
        server = Server(parse_config(_toml(tmp, free_port(), free_port(), db), tmp), tmp,
                        MODULES)
        await server.storage.open()
        await server.open_module_stores()
        store: Any = server.module_stores["mod_roster"]
        for a, b in ((user, contact), (contact, user)):
            await store.put_roster_item("localhost", a,
                                        RosterItem(f"{b}@localhost", subscription="both"))
        await server.storage.close()
    asyncio.run(run())


def _third_session(port: int, user: str) -> str:
    """Bind a third resource of ``user`` by hand: the bind answer."""
    client = TestClient(port)
    try:
        client.open_stream()
        client.starttls()
        token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
        client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                    f"{token}</auth>")
        client.expect(r"<success")
        client.open_stream()
        client.send("<iq type='set' id='b3'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    "<resource>three</resource></bind></iq>")
        return client.expect(r"<iq[^>]*type=\"(?:error|result)\".*?</iq>").group(0)
    finally:
        client.close()


def test_presence_broadcast_reaches_contacts_on_other_nodes(shared: tuple[Path, int]) -> None:
    """Also: max_user_sessions = 2 counts the sessions of every node, and the oldest session
    of the account, on any node, ends for a new one over it."""
    tmp, db = shared
    _befriend(tmp, db, "erin", "frank")
    nodes = [start_node(tmp, db, f"p{i}") for i in range(2)]

    async def run() -> None:
        erin = await connect(nodes[0], "erin@localhost/e", "pw")  # type: ignore[arg-type]
        frank = await connect(nodes[1], "frank@localhost/f", "pw")  # type: ignore[arg-type]
        for client in (erin, frank):
            await client.get_roster()
        frank.send_presence()
        await eventually(lambda: _rows(db, "frank@localhost") == {"f": [nodes[1].name, "0",
                                                                          "1"]})
        erin.send_presence()
        # Her initial presence probes frank's node, which answers (RFC 6121 §4.3.2).
        pres = await erin.next_presence()
        while str(pres["from"]) != "frank@localhost/f":
            pres = await erin.next_presence()
        assert pres["type"] == "available"
        await eventually(lambda: len(_rows(db, "erin@localhost")) == 1)
        frank.send_presence(pstatus="on node 1", pshow="dnd")
        pres = await erin.next_presence()
        while str(pres["from"]) != "frank@localhost/f" or pres["status"] != "on node 1":
            pres = await erin.next_presence()
        assert pres["show"] == "dnd"
        await disconnect(erin, frank)

        # max_user_sessions = 2 across nodes, as MongooseIM 6.4 applies it: a third session
        # opens and the oldest ends (<conflict/>); this node's own first.
        one = await connect(nodes[0], "dave@localhost/one", "pw")  # type: ignore[arg-type]
        two = await connect(nodes[1], "dave@localhost/two", "pw")  # type: ignore[arg-type]
        await eventually(lambda: len(_rows(db, "dave@localhost")) == 2)
        answer = await asyncio.to_thread(_third_session, nodes[0].c2s_port, "dave")
        assert 'type="result"' in answer, answer
        # "one" ended for it; "three" closed after its bind (_third_session).
        await eventually(lambda: set(_rows(db, "dave@localhost")) == {"two"})
        # Both of the account's sessions on node 1, a third opens on node 0: the one that
        # lived longest there ends (uptime is counted in seconds).
        await asyncio.sleep(1.1)
        later = await connect(nodes[1], "dave@localhost/later", "pw")  # type: ignore[arg-type]
        await eventually(lambda: set(_rows(db, "dave@localhost")) == {"two", "later"})
        answer = await asyncio.to_thread(_third_session, nodes[0].c2s_port, "dave")
        assert 'type="result"' in answer, answer
        await eventually(lambda: set(_rows(db, "dave@localhost")) == {"later"})
        await disconnect(one, two, later)

    try:
        asyncio.run(run())
    finally:
        for node in nodes:
            stop_node(node)
