"""XEP-0198 §5 resumption across nodes (``sm_backend = "redis"``): two ``suricate serve``
processes sharing the real Redis and one SQLite file; real slixmpp clients (xep_0198) and the
raw SASL2 client for exact answers.

What is proven: a session resumes on the other, live node with the stanzas it had not
acknowledged, and its old node lets go of it (the Redis row and the SM record name the new
node); of two resumes racing for one session exactly one gets it, the other is told
<failed><item-not-found/>; a session whose node was SIGKILLed resumes on the survivor from
its Redis copy, with what was waiting for it before the kill, stamped with when it was first
sent (XEP-0203); a Bind 2 login on one node ends the earlier session of the same client on
the other (XEP-0386 §3)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from slixmpp.exceptions import IqError

from suricate.core.module import session_state_changed
from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element
from tests.cluster.test_redis_nodes import Node, _rows, _sync, launch_node, stop_node
from tests.cluster.test_workers import LIMIT, _register
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    connect,
    disconnect,
    eventually,
    free_port,
    server_toml,
)
from tests.mobile.client import Sasl2Client, authenticate_xml, bind2

pytestmark = pytest.mark.xdist_group("redis_nodes")

# resume_timeout: a dead node's session nobody resumes ends within the test's patience.
SM_MODULES = MODULES_TOML + "\n[modules.mod_stream_management]\nresume_timeout = 4\n" \
    "[modules.mod_sasl2]\n[modules.mod_bind2]\n[modules.mod_csi]\n" \
    "[modules.mod_caps]\n[modules.mod_pubsub]\n"


def _toml(tmp: Path, c2s: int, tls: int, db: int, modules: str = SM_MODULES,
          limit: str = LIMIT) -> str:
    pool = ("[outgoing_pools.redis.default.connection]\nhost = \"127.0.0.1\"\nport = 6379\n"
            f"database = {db}\n")
    toml = server_toml(tmp, c2s, tls, extra=pool + limit, modules=modules)
    return toml.replace('loglevel = "info"', 'loglevel = "info"\nsm_backend = "redis"')


def _start(tmp: Path, db: int, tag: str, modules: str = SM_MODULES, limit: str = LIMIT) -> Node:
    c2s, tls = free_port(), free_port()
    return launch_node(tmp, db, tag, c2s, tls, _toml(tmp, c2s, tls, db, modules, limit))


def _two_nodes(tmp: Path, db: int, modules: str = SM_MODULES, limit: str = LIMIT) -> Any:
    _register(tmp, _toml(tmp, free_port(), free_port(), db, modules, limit))
    nodes = [_start(tmp, db, f"n{i}", modules, limit) for i in range(2)]
    try:
        yield nodes[0], nodes[1], db
    finally:
        for node in nodes:
            stop_node(node)
        # What a killed node left; not FLUSHDB: the database's claim (conftest) must stay.
        left = _sync(db)
        for key in left.keys("suricate:*"):
            left.delete(key)


@pytest.fixture
def two_nodes(tmp_path: Path, redis_db: int) -> Any:
    yield from _two_nodes(tmp_path, redis_db)


@pytest.fixture
def two_nodes_patient(tmp_path: Path, redis_db: int) -> Any:
    """As ``two_nodes``, with a lost session waiting 60 s for its resumption (a session that
    ends within the test ended for another reason than its timeout), and room for three
    sessions of an account (the one about to be ended counts, max_user_sessions)."""
    yield from _two_nodes(tmp_path, redis_db,
                          SM_MODULES.replace("resume_timeout = 4", "resume_timeout = 60"),
                          LIMIT.replace("value = 2", "value = 3"))


@pytest.fixture
def two_nodes_brief(tmp_path: Path, redis_db: int) -> Any:
    """As ``two_nodes``, with a lost session waiting 2 s for its resumption, and room for
    three sessions of an account (max_user_sessions)."""
    yield from _two_nodes(tmp_path, redis_db,
                          SM_MODULES.replace("resume_timeout = 4", "resume_timeout = 2"),
                          LIMIT.replace("value = 2", "value = 3"))


def _sm_record(db: int, jid: str = "alice@localhost/phone") -> tuple[str, dict[str, str]]:
    found = []
    for key in _sync(db).keys("suricate:sm:*"):
        node, holder_jid = _sync(db).hmget(key, ["node", "jid"])  # the rest is marshalled
        if holder_jid == jid:
            found.append((key.split(":", 2)[2], {"node": node, "jid": holder_jid}))
    assert len(found) == 1, found
    return found[0]


def _buffered(db: int, sm_id: str) -> int:
    return int(_sync(db).llen(f"suricate:smbuf:{sm_id}"))


async def _phone(node: Node, db: int, user: str = "alice") -> tuple[Client, str]:
    """<user>@localhost/phone with stream management (slixmpp xep_0198), available; its SM
    id once the node recorded it in Redis."""
    jid = f"{user}@localhost/phone"
    client = await connect(node, jid, "pw", plugins=("xep_0198",))  # type: ignore[arg-type]
    client.send_presence()
    await eventually(lambda: any(_sync(db).hget(k, "jid") == jid
                                 for k in _sync(db).keys("suricate:sm:*")))
    sm_id, record = _sm_record(db, jid)
    assert record["node"] == node.name
    return client, sm_id


async def _bodies(client: Client, count: int) -> list[str]:
    return [(await client.next_message(5))["body"] for _ in range(count)]


async def _nothing_more(client: Client) -> None:
    with contextlib.suppress(TimeoutError):
        extra = await client.next_message(0.5)
        raise AssertionError(f"unexpected message {extra['body']!r}")


def _from_bob(client: Client, seen: dict[int, list[str]] = {}) -> list[str]:  # noqa: B006
    """The statuses of the presences bob sent ``client`` so far (read from its queue)."""
    got = seen.setdefault(id(client), [])
    while not client.presences.empty():
        presence = client.presences.get_nowait()
        if str(presence["from"]) == "bob@localhost/desk" and presence["status"]:
            got.append(presence["status"])
    return got


async def _presence_from(client: Client, jid: str) -> Any:
    while True:
        presence = await client.next_presence(5)
        if str(presence["from"]) == jid:
            return presence


async def _resume_on(alice: Client, node: Node) -> None:
    resumed = asyncio.get_running_loop().create_future()
    alice.add_event_handler("session_resumed",
                            lambda _: resumed.done() or resumed.set_result(True))
    alice.connect("127.0.0.1", node.c2s_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(resumed, 10)


def test_resume_on_the_other_live_node(two_nodes: tuple[Node, Node, int]) -> None:
    a, b, db = two_nodes

    async def run() -> None:
        alice, sm_id = await _phone(a, db)
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        try:
            bob.send_message(mto="alice@localhost/phone", mbody="m1", mtype="chat")
            assert await _bodies(alice, 1) == ["m1"]
            # RFC 6121 §4.6: directed presence to bob (as a room join is), remembered on A
            alice.send_presence(pto="bob@localhost/desk", pstatus="here")
            assert (await _presence_from(bob, "alice@localhost/phone"))["status"] == "here"
            # XEP-0352: the phone goes inactive; a presence (not urgent) waits on A for it
            alice.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
            # A answers this ping after the <inactive/> before it on the stream: A is then
            # holding back what is not urgent.
            with contextlib.suppress(IqError):
                await alice.make_iq_get(queryxmlns="urn:xmpp:ping", ito="localhost").send(
                    timeout=10)
            bob.send_presence(pto="alice@localhost/phone", pstatus="p1")
            await asyncio.sleep(0.3)
            assert _from_bob(alice) == []
            alice.abort()  # the phone loses its network: node A keeps the session
            for i in (2, 3, 4):
                bob.send_message(mto="alice@localhost/phone", mbody=f"m{i}", mtype="chat")
            # Held on A for the client (its copy in Redis shows them: copy_to_redis): p1,
            # which CSI held back, went to the resumption buffer first when the connection
            # died (XEP-0352: the CSI state is not restored on resumption), then m2..m4.
            await eventually(lambda: _buffered(db, sm_id) == 4)
            await _resume_on(alice, b)
            assert await _bodies(alice, 3) == ["m2", "m3", "m4"]
            await _nothing_more(alice)
            # B holds the session now; A let go of it (the row and the record name B).
            assert _rows(db, "alice@localhost")["phone"][0] == b.name
            assert _sm_record(db)[1]["node"] == b.name
            assert "c2s_session_moved_away jid=alice@localhost/phone" in a.log.read_text()
            # The resumed stream on B is active (XEP-0352): p1 came with what was sent
            # again, and a presence now arrives at once.
            tablet = await connect(b, "bob@localhost/tablet", "pw")  # type: ignore[arg-type]
            tablet.send_presence(pto="alice@localhost/phone", pstatus="p2")
            statuses: list[tuple[str, str]] = []

            def held_back() -> list[tuple[str, str]]:
                while not alice.presences.empty():
                    presence = alice.presences.get_nowait()
                    if presence["status"]:
                        statuses.append((str(presence["from"]), presence["status"]))
                return statuses

            await eventually(lambda: held_back()[-2:] == [("bob@localhost/desk", "p1"),
                                                          ("bob@localhost/tablet", "p2")])
            await disconnect(tablet)
            # the conversation goes on, both ways, over the resumed stream
            bob.send_message(mto="alice@localhost/phone", mbody="m5", mtype="chat")
            assert await _bodies(alice, 1) == ["m5"]
            alice.send_message(mto="bob@localhost/desk", mbody="back", mtype="chat")
            assert (await bob.next_message(5))["body"] == "back"
            # the directed presence followed the session (session_handover): alice's end on
            # B tells bob she is gone (§4.6.3), as her end on A would have
            await disconnect(alice)
            gone = await _presence_from(bob, "alice@localhost/phone")
            assert gone["type"] == "unavailable"
        finally:
            await disconnect(alice, bob)
        # A clean end on B removes the record.
        await eventually(lambda: not _sync(db).keys("suricate:sm*"))

    asyncio.run(run())


def test_caps_follow_a_session_resumed_on_the_other_node(
        two_nodes: tuple[Node, Node, int]) -> None:
    """XEP-0163 §4.3.2: the owner's own resources with +notify in their caps (XEP-0115) are
    told of its PEP publications. alice's caps were learnt on A; after she resumes on B
    without sending presence again, B still knows them (session_handover): her publication
    there reaches her resumed session."""
    a, b, db = two_nodes
    tune = "http://jabber.org/protocol/tune"

    async def run() -> None:
        alice = await connect(a, "alice@localhost/phone", "pw",  # type: ignore[arg-type]
                              plugins=("xep_0198", "xep_0030", "xep_0004", "xep_0060",
                                       "xep_0115", "xep_0163"))
        events: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("pubsub_publish", events.put_nowait)
        alice.plugin["xep_0030"].add_feature(f"{tune}+notify")
        await alice.plugin["xep_0115"].update_caps(broadcast=False)
        alice.send_presence()
        await eventually(lambda: _sync(db).keys("suricate:sm:*"))

        async def publish(item: str, wait: float = 5) -> str:
            payload = ET.fromstring(f"<tune xmlns='{tune}'><title>{item}</title></tune>")
            await alice.plugin["xep_0060"].publish("alice@localhost", tune, id=item,
                                                   payload=payload)
            event = await asyncio.wait_for(events.get(), wait)
            return str(event["pubsub_event"]["items"]["item"]["id"])

        try:
            # A learns the caps from her presence (its disco#info query to the client takes
            # a moment): published until A notifies her
            for _ in range(20):
                with contextlib.suppress(TimeoutError):
                    assert await publish("on-a", 0.5) == "on-a"
                    break
            else:
                raise AssertionError("node A never notified alice (caps not learnt)")
            alice.abort()
            await _resume_on(alice, b)
            assert _sm_record(db)[1]["node"] == b.name
            assert await publish("on-b") == "on-b"
        finally:
            await disconnect(alice)

    asyncio.run(run())


def test_two_racing_resumes_one_wins(two_nodes: tuple[Node, Node, int]) -> None:
    a, b, db = two_nodes

    async def run() -> None:
        def login() -> tuple[Sasl2Client, str, str]:
            c = Sasl2Client(a.tls_port, direct_tls=True)
            c.features()
            out = c.plain("alice", "pw", bind2("raw", "<enable xmlns='urn:xmpp:sm:3' "
                                                      "resume='true'/>"))
            assert out.ok and out.jid, out.xml
            found = re.search(r"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'", out.xml)
            assert found, out.xml
            return c, found.group(1), out.jid

        c, sm_id, jid = await asyncio.to_thread(login)
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        try:
            for i in (1, 2):
                bob.send_message(mto=jid, mbody=f"x{i}", mtype="chat")
            await asyncio.to_thread(c.expect, r"<body>x2</body>")
            c.close()  # read, never acknowledged
            await eventually(lambda: _buffered(db, sm_id) == 2)

            def resume() -> tuple[Sasl2Client, str]:
                n = Sasl2Client(b.tls_port, direct_tls=True)
                n.features()
                out = n.plain("alice", "pw", f"<resume xmlns='urn:xmpp:sm:3' h='0' "
                                             f"previd='{sm_id}'/>")
                return n, out.xml

            def after(n: Sasl2Client) -> str:
                """What the stream got after its <resumed/>, up to the answer to an <r/>:
                the session's <a/>, or the end of a stream another resume took it from."""
                with contextlib.suppress(OSError, SSL.Error):
                    n.send("<r xmlns='urn:xmpp:sm:3'/>")
                return n.expect(r".*?(<a xmlns='urn:xmpp:sm:3' h='\d+'/>|<conflict )").group(0)

            (n1, out1), (n2, out2) = await asyncio.gather(asyncio.to_thread(resume),
                                                          asyncio.to_thread(resume))
            # Under load the two may not overlap: the second then resumes the session the
            # first had resumed, which ends with <conflict/> (XEP-0198 §5). Either way
            # exactly one stream holds the session, and it gets x1 and x2 once each.
            held, other = [], []
            for n, out in ((n1, out1), (n2, out2)):
                if "<resumed" not in out:
                    assert "<failed xmlns='urn:xmpp:sm:3'><item-not-found" in out, out
                    other.append(out)
                    continue
                rest = await asyncio.to_thread(after, n)
                (other if "<conflict " in rest else held).append(rest)
            assert len(held) == 1 and len(other) == 1, (out1, out2, held, other)
            assert re.findall(r"<body>(x\d)</body>", held[0]) == ["x1", "x2"], held[0]
            for n in (n1, n2):
                n.close()
        finally:
            await disconnect(bob)

    asyncio.run(run())


def test_bind2_ends_the_earlier_session_of_the_same_client_on_another_node(
        two_nodes_patient: tuple[Node, Node, int]) -> None:
    """XEP-0386 §3: "Upon successful binding of a resource, the server SHOULD terminate any
    earlier sessions from the same client (identified by the <user-agent> 'id' attribute in
    its SASL2 authentication request)". The phone's connection died on node A and it logs in
    afresh through the load balancer on node B: A ends the old session (it does not wait its
    60 s for a resumption, shown as a second device), hands what it held back to the router,
    and keeps the session of another client of the account (another user-agent id)."""
    a, b, db = two_nodes_patient
    sm = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"

    def login(node: Node, tag: str, agent: str, inline: str = "") -> tuple[Sasl2Client, str]:
        c = Sasl2Client(node.tls_port, direct_tls=True)
        c.features()
        out = c.plain("alice", "pw", bind2(tag, inline), agent=agent)
        assert out.ok and out.jid, out.xml
        return c, out.jid

    def resources() -> set[str]:
        return set(_rows(db, "alice@localhost"))

    async def run() -> None:
        old, old_jid = await asyncio.to_thread(login, a, "phone", "phone-install", sm)
        laptop, laptop_jid = await asyncio.to_thread(login, a, "laptop", "laptop-install")
        old_res, laptop_res = old_jid.split("/", 1)[1], laptop_jid.split("/", 1)[1]
        await asyncio.to_thread(old.send, "<presence/>")
        await eventually(lambda: old_res in resources() and laptop_res in resources())
        # The SM record reaches Redis with the node's next batch, not with the session row.
        await eventually(lambda: any(_sync(db).hget(key, "jid") == old_jid
                                     for key in _sync(db).keys("suricate:sm:*")))
        sm_id, _ = _sm_record(db, old_jid)
        old.close()  # the network goes, no </stream:stream>: A keeps the session
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        try:
            bob.send_message(mto=old_jid, mbody="sent while you were away", mtype="chat")
            await eventually(lambda: b"while you were away" in b"".join(
                _raw(db).lrange(f"suricate:smbuf:{sm_id}", 0, -1)))
            new, new_jid = await asyncio.to_thread(login, b, "phone", "phone-install")
            try:
                # A ended the old session (its row, then its SM record at the next batch, go),
                # not B's new one, nor the laptop's (another user-agent id).
                await eventually(lambda: old_res not in resources(), timeout=10)
                await eventually(lambda: not _raw(db).exists(f"suricate:sm:{sm_id}"))
                assert "c2s_session_replaced_by_same_client jid=" + old_jid in a.log.read_text()
                assert resources() == {laptop_res, new_jid.split("/", 1)[1]}
                # What the old session held went back to the router (offline storage: no
                # resource was available) and reaches the new session with its presence.
                await asyncio.to_thread(new.send, "<presence/>")
                assert await asyncio.to_thread(new.expect,
                                               r"<body>sent while you were away</body>")
            finally:
                new.close()
        finally:
            laptop.close()
            await disconnect(bob)

    asyncio.run(run())


def _raw(db: int) -> Any:
    """The test's Redis database, bytes as stored (the SM copy is marshalled)."""
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=db)


def test_resume_on_a_survivor_after_sigkill(two_nodes: tuple[Node, Node, int]) -> None:
    """alice resumes on the survivor and gets what waited for her; carol never comes back
    to her session: once resume_timeout passed, what waited for her is stored offline.
    Either way each message carries the time node A first sent it as its XEP-0203 delay
    (the Redis copy keeps the send times), not the time it was resumed or stored."""
    a, b, db = two_nodes

    async def run() -> None:
        alice, sm_id = await _phone(a, db)
        carol, carol_id = await _phone(a, db, "carol")
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        try:
            # directed presence (as a room join is): in the Redis copy (SESSION_SNAPSHOT);
            # once bob's row is in the table (a presence to an unknown resource is dropped)
            await eventually(lambda: "desk" in _rows(db, "bob@localhost"))
            alice.send_presence(pto="bob@localhost/desk", pstatus="here")
            assert (await _presence_from(bob, "alice@localhost/phone"))["status"] == "here"
            alice.abort()
            carol.abort()
            sent_at = time.time()
            for i in (1, 2, 3):
                bob.send_message(mto="alice@localhost/phone", mbody=f"k{i}", mtype="chat")
            for i in (1, 2):
                bob.send_message(mto="carol@localhost/phone", mbody=f"c{i}", mtype="chat")
            await eventually(lambda: _buffered(db, sm_id) == 3 and _buffered(db, carol_id) == 2)
            await asyncio.sleep(0.5)
            killed_at = time.time()
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait(10)
            await _resume_on(alice, b)
            resent = [await alice.next_message(5) for _ in range(3)]
            assert [m["body"] for m in resent] == ["k1", "k2", "k3"]
            # XEP-0203 §2: "the time when the XML stanza was originally sent": when node A
            # sent them, before it was killed; not when B rebuilt the session
            for m in resent:
                assert sent_at - 0.1 <= _stamp(m) <= killed_at, (m, sent_at, killed_at)
            await _nothing_more(alice)
            assert _sm_record(db)[1]["node"] == b.name
            assert "sm_resumed_from_copy" in b.log.read_text()
            bob.send_message(mto="alice@localhost/phone", mbody="k4", mtype="chat")
            live = await alice.next_message(5)
            assert live["body"] == "k4" and live.xml.find(f"{{{ns.DELAY}}}delay") is None
            # the directed presence came back from the copy: alice's end on B tells bob
            await disconnect(alice)
            assert (await _presence_from(bob, "alice@localhost/phone"))["type"] == "unavailable"
            # carol's session: reaped with its node (3-4 s), then resume_timeout (4 s)
            await eventually(lambda: "sm_orphan_ended" in b.log.read_text(), timeout=20)
            assert f"sm_orphan_ended id={carol_id}" in b.log.read_text()
            carol = await connect(b, "carol@localhost/desk", "pw")  # type: ignore[arg-type]
            carol.send_presence()  # offline messages come with the initial presence
            stored = [await carol.next_message(5) for _ in range(2)]
            assert sorted(m["body"] for m in stored) == ["c1", "c2"]
            # stamped with when A first sent them, not when their session ended on B (the
            # node's reaping, then resume_timeout: seconds after the kill)
            for m in stored:
                assert sent_at - 0.1 <= _stamp(m) <= killed_at, (m, sent_at, killed_at)
        finally:
            await disconnect(alice, bob, carol)

    asyncio.run(run())


def _stamp(message: Any) -> float:
    """The XEP-0203 stamp of a slixmpp message, as Unix time (the test fails without one)."""
    delay = message.xml.find(f"{{{ns.DELAY}}}delay")
    assert delay is not None, f"no delay in {message}"
    return datetime.fromisoformat(delay.get("stamp")).timestamp()


class _Session:
    """What the copy reads of a c2s."""

    def __init__(self, sm: Any) -> None:
        self.jid = JID("alice", "localhost", "phone")
        self.presence = None
        self.priority = 3
        self.module_state = {"mod_stream_management": sm}


def test_copy_follows_the_counters_and_is_taken_once(redis_db: int) -> None:
    """The Redis copy written in batches (appended, trimmed, written anew after a take of
    the buffer) holds exactly what the client has not acknowledged; one taker gets it; the
    old holder's late batch does not overwrite the new holder's record."""
    from redis.asyncio import Redis

    from suricate.modules.mod_stream_management.mirror import Mirror
    from suricate.protocol.sm import StreamManagement

    def message(i: int) -> Element:
        return Element("message", ns.CLIENT, {"id": f"m{i}"}, [Element("body", None, {}, [
            f"body {i}"])])

    async def run() -> None:
        client = Redis(host="127.0.0.1", port=6379, db=redis_db)
        prefix = f"unit-{uuid.uuid4().hex[:6]}:"
        started = time.time()
        try:
            sessions: dict[str, Any] = {}
            snapshots = []

            def snapshot(c2s: Any) -> dict[str, Any]:
                snapshots.append(c2s)
                return {"mod_presence": ["room@conference.localhost/nick"]}

            old = Mirror(client, "n1", prefix, True, sessions.get, snapshot)
            sm: StreamManagement = old.new_sm("id1", None, None)
            sessions["id1"] = _Session(sm)
            session_state_changed(sessions["id1"])  # a directed presence, say
            old.held("id1")
            for i in range(5):
                sm.stanza_out(message(i))
            await old.flush()
            sm.ack(2)
            for i in (5, 6):
                sm.stanza_out(message(i))
            sm.stanza_in()
            await old.flush()
            assert await client.llen(f"{prefix}smbuf:id1") == 5
            sm.ack(3)
            resent = sm.take_unacked()  # a resumption here: sent again, so counted again
            for stanza in resent:
                sm.stanza_out(stanza)
            await old.flush()
            new = Mirror(client, "n2", prefix, True, {}.get)
            state = await new.take("id1", "n1")
            assert state is not None and str(state.jid) == "alice@localhost/phone"
            assert (state.h_in, state.acked, state.priority) == (1, 3, 3)
            # the modules' state, taken at the first write and at the rewrite after
            # take_unacked, not at the batches between (nothing said it changed)
            assert state.modules == {"mod_presence": ["room@conference.localhost/nick"]}
            assert len(snapshots) == 2
            assert [s.attrs["id"] for s in state.unacked] == ["m3", "m4", "m5", "m6"]
            assert state.unacked[0].find("body") is not None
            # each with the time it was sent (the copy keeps it) as its XEP-0203 delay
            for stanza in state.unacked:
                delay = stanza.find("delay", ns.DELAY)
                assert delay is not None and delay.attrs["from"] == "localhost", stanza
                stamp = datetime.fromisoformat(delay.attrs["stamp"]).timestamp()
                assert started - 0.001 <= stamp <= time.time(), (stamp, started)
            # the client got up to m5: only m6 is left to send again
            fresh = StreamManagement("id1", True, None, None)
            assert [s.attrs["id"] for s in state.counters_for(fresh, 6)] == ["m6"]
            assert (fresh.h_in, fresh.acked, fresh.h_out) == (1, 6, 6)
            assert await Mirror(client, "n3", prefix, True, {}.get).take("id1", "n1") is None
            sm.stanza_out(message(7))  # the old holder's late batch
            await old.flush()
            assert await client.hget(f"{prefix}sm:id1", "node") == b"n2"
            assert await client.llen(f"{prefix}smbuf:id1") == 4
        finally:
            for key in await client.keys(f"{prefix}*"):
                await client.delete(key)
            await client.aclose()

    asyncio.run(run())


def test_copy_entries_keep_the_send_time_and_older_ones_load(redis_db: int) -> None:
    """An entry of the copy's buffer is the stanza then its send time: an older node reads
    the stanza alone, and a copy written before the time was kept (entries without it) is
    rebuilt as before, without a delay."""
    from redis.asyncio import Redis

    from suricate.modules.mod_stream_management.mirror import Mirror
    from suricate.modules.mod_stream_management.state import (
        SENT_MARK,
        dumps,
        dumps_sent,
        loads,
        loads_sent,
    )

    stanzas = [
        Element("message", ns.CLIENT, {"id": "a", "type": "chat"},
                [Element("body", ns.CLIENT, {}, ["h\u00e9\u00ff\U0001f600"])]),
        Element("message", ns.CLIENT, {"id": "b"}, []),
        Element("message", ns.CLIENT, {}, [Element("x", "urn:x", {}, [""])]),
        Element("presence", ns.CLIENT, {"from": "bob@localhost/desk"},
                [Element("status", ns.CLIENT, {}, ["ab", "ab"])]),
        Element("iq", ns.CLIENT, {"type": "get", "id": "q"}, [Element("ping", "urn:xmpp:ping")]),
    ]
    for stanza in stanzas:
        # the former entry never ends as one with a time does
        assert not dumps(stanza).endswith(SENT_MARK)
        raw = dumps_sent(stanza, 1_780_000_000.25)
        assert loads_sent(raw)[1] == 1_780_000_000.25
        assert loads_sent(raw)[0].serialize(ns.CLIENT) == stanza.serialize(ns.CLIENT)
        # a node that does not know the time reads the stanza
        assert loads(raw).serialize(ns.CLIENT) == stanza.serialize(ns.CLIENT)
        assert loads_sent(dumps(stanza))[1] is None

    async def run() -> None:
        client = Redis(host="127.0.0.1", port=6379, db=redis_db)
        prefix = f"unit-{uuid.uuid4().hex[:6]}:"
        try:
            # a copy as written before the send times were kept
            await client.hset(f"{prefix}sm:old", mapping={
                "node": "n1", "jid": "alice@localhost/phone", "copy": "1", "h_in": "2",
                "acked": "1", "priority": "0"})
            await client.rpush(f"{prefix}smbuf:old", *(dumps(s) for s in stanzas))
            state = await Mirror(client, "n2", prefix, True, {}.get).take("old", "n1")
            assert state is not None and (state.h_in, state.acked) == (2, 1)
            assert [s.serialize(ns.CLIENT) for s in state.unacked] == \
                [s.serialize(ns.CLIENT) for s in stanzas]
        finally:
            for key in await client.keys(f"{prefix}*"):
                await client.delete(key)
            await client.aclose()

    asyncio.run(run())


def test_a_stanza_arriving_while_the_moved_session_opens_follows_resumed(
        tmp_path: Path, redis_db: int) -> None:
    """XEP-0198 §5: after <resumed/> the server sends again what the client had not
    acknowledged, then what is new, and 'h' counts them in that order. A session resumed
    from another node is in B's table while its session_opened hooks run (roster, privacy
    lists ... here made to last 1.5 s by mod_test_slow_open): a message to it in that window
    waits for the SASL2 <success/> carrying <resumed/> and for the stanza sent again, and is
    counted after them (an 'h' one past them is handled-count-too-high with send-count 2)."""
    from tests.cluster import slow_open

    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db))
    a = _start(tmp_path, db, "n0")
    c2s, tls = free_port(), free_port()
    slow = SM_MODULES + "\n[modules.mod_test_slow_open]\ndelay = 1.5\n"
    b = launch_node(tmp_path, db, "n1", c2s, tls, _toml(tmp_path, c2s, tls, db, slow),
                    command=slow_open.command())

    async def run() -> None:
        def login() -> tuple[Sasl2Client, str, str]:
            c = Sasl2Client(a.tls_port, direct_tls=True)
            c.features()
            out = c.plain("alice", "pw", bind2("raw", "<enable xmlns='urn:xmpp:sm:3' "
                                                      "resume='true'/>"))
            assert out.ok and out.jid, out.xml
            found = re.search(r"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'", out.xml)
            assert found, out.xml
            return c, found.group(1), out.jid

        c, sm_id, jid = await asyncio.to_thread(login)
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        n = Sasl2Client(b.tls_port, direct_tls=True)
        try:
            bob.send_message(mto=jid, mbody="before", mtype="chat")
            await asyncio.to_thread(c.expect, r"<body>before</body>")
            c.close()  # read, never acknowledged: held on A
            await eventually(lambda: _buffered(db, sm_id) == 1)

            def resume() -> str:
                n.features()
                n.send(authenticate_xml("PLAIN", b"\0alice\0pw", inline=(
                    f"<resume xmlns='urn:xmpp:sm:3' h='0' previd='{sm_id}'/>")))
                return n.expect(r".*?<body>during</body>", timeout=10).group(0)

            resuming = asyncio.ensure_future(asyncio.to_thread(resume))
            await eventually(lambda: "slow_open_waiting" in b.log.read_text(), timeout=10)
            bob.send_message(mto=jid, mbody="during", mtype="chat")
            got = await resuming
            assert "<success xmlns='urn:xmpp:sasl:2'" in got, got  # not before it
            success = got.index("<success xmlns='urn:xmpp:sasl:2'")
            assert "<resumed xmlns='urn:xmpp:sm:3'" in got[success:], got
            assert re.findall(r"<body>(\w+)</body>", got[success:]) == ["before", "during"]
            assert "<body>" not in got[:success], got
            # Counted in the order sent: 2 stanzas since the resumption point (h=0).
            await asyncio.to_thread(n.send, "<a xmlns='urn:xmpp:sm:3' h='3'/>")
            err = await asyncio.to_thread(n.expect, r"<handled-count-too-high[^>]*>")
            assert "send-count='2'" in err.group(0) and "h='3'" in err.group(0), err.group(0)
        finally:
            n.close()
            await disconnect(bob)
            for node in (a, b):
                stop_node(node)
            left = _sync(db)
            for key in left.keys("suricate:*"):
                left.delete(key)

    asyncio.run(run())


def test_an_unresumed_session_gives_a_bare_jid_message_only_to_who_missed_it_on_any_node(
        two_nodes_brief: tuple[Node, Node, int]) -> None:
    """RFC 6121 §8.5.2.1.1: a message to the bare JID reaches every available resource, the
    phone waiting for resumption on node A included (it holds it). When nobody resumes, the
    desk on node B that was there has it already (before: a second copy, A routed it to the
    bare JID again); a laptop that came online on B since gets it (XEP-0198 §5: as if sent
    to an unavailable resource now)."""
    a, b, db = two_nodes_brief

    async def run() -> None:
        alice, _ = await _phone(a, db)
        desk = await connect(b, "alice@localhost/desk", "pw")  # type: ignore[arg-type]
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        laptop = None
        try:
            desk.send_presence()
            await eventually(lambda: _rows(db, "alice@localhost").get("desk", [""])[-1] == "1")
            alice.abort()
            await eventually(lambda: "c2s_session_suspended jid=alice@localhost/phone"
                             in a.log.read_text())
            bob.send_message(mto="alice@localhost", mbody="to-bare", mtype="chat")
            assert await _bodies(desk, 1) == ["to-bare"]
            laptop = await connect(b, "alice@localhost/laptop", "pw")  # type: ignore[arg-type]
            laptop.send_presence()
            # the phone's copy, at its end (resume_timeout)
            assert await _bodies(laptop, 1) == ["to-bare"]
            assert "sm_resume_timeout jid=alice@localhost/phone" in a.log.read_text()
            await _nothing_more(desk)
        finally:
            await disconnect(desk, bob, *([laptop] if laptop else []))
            with contextlib.suppress(Exception):
                alice.abort()

    asyncio.run(run())
