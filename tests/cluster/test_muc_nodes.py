"""MUC rooms across Redis nodes (``sm_backend = "redis"``, mod_muc/placement.py): three real
``suricate serve`` processes sharing the real Redis and one SQLite file, real slixmpp xep_0045
clients on different nodes. What is proven: a room lives on the node that first needed it
(its claim in Redis), stanzas from the other nodes reach it in one hop and every occupant gets
each message once with the same stanza-id; the owner SIGKILLed, its claim is released and the
persistent room comes back on a survivor from storage (configuration, affiliations), where the
occupants learn by XEP-0410 self-ping that they must join again; a clean stop releases
claims."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError

from tests.cluster.test_redis_nodes import Node, _sync, launch_node, stop_node
from tests.cluster.test_workers import LIMIT, _register
from tests.e2e.harness import MODULES_TOML, connect, disconnect, eventually, free_port, server_toml
from tests.muc.conftest import PLUGINS, codes, create_room, next_groupchat

pytestmark = pytest.mark.xdist_group("redis_nodes")

ROOM = "team@conference.localhost"
SIDE = "side@conference.localhost"
CLAIM = f"suricate:muc:{ROOM}"


def _toml(tmp: Path, c2s: int, tls: int, db: int) -> str:
    extra = f"""
[outgoing_pools.redis.default.connection]
host = "127.0.0.1"
port = 6379
database = {db}
{LIMIT}
"""
    toml = server_toml(tmp, c2s, tls, extra=extra,
                       modules=MODULES_TOML + "\n[modules.mod_muc]\n")
    return toml.replace('loglevel = "info"', 'loglevel = "info"\nsm_backend = "redis"')


def _start(tmp: Path, db: int, tag: str, extra: str = "") -> Node:
    c2s, tls = free_port(), free_port()
    return launch_node(tmp, db, tag, c2s, tls, _toml(tmp, c2s, tls, db) + extra)


async def _user(node: Node, name: str, resource: str = "r") -> Any:
    client = await connect(node, f"{name}@localhost/{resource}", "pw",  # type: ignore[arg-type]
                           direct_tls=True, plugins=PLUGINS)
    client.muc_presences = asyncio.Queue()
    client.add_event_handler("groupchat_presence", client.muc_presences.put_nowait)
    client.send_presence()
    return client


async def _left(client: Any, occupant: str) -> set[str]:
    """The status codes of ``occupant``'s unavailable presence."""
    while True:
        pres = await asyncio.wait_for(client.muc_presences.get(), 10)
        if str(pres["from"]) == occupant and pres["type"] == "unavailable":
            return codes(pres)


async def _groupchats(client: Any, n: int) -> list[tuple[str, str]]:
    """The next ``n`` groupchat messages: (body, stanza-id given by the room)."""
    got = []
    for _ in range(n):
        msg = await next_groupchat(client)
        sid = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
        assert sid is not None and sid.get("by") == ROOM, msg
        got.append((msg["body"], sid.get("id")))
    return got


async def _self_ping(client: Any, nick: str) -> str:
    """XEP-0410: the error condition of a self-ping, or "result"."""
    iq = client.make_iq_get(queryxmlns="urn:xmpp:ping", ito=SJID(f"{ROOM}/{nick}"))
    try:
        await iq.send(timeout=8)
    except IqError as err:
        return str(err.iq["error"]["condition"])
    return "result"


def test_room_on_one_node_and_restored_after_its_node_dies(
        tmp_path: Path, redis_db: int) -> None:
    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db))
    nodes = [_start(tmp_path, db, f"m{i}") for i in range(3)]
    try:
        owner = asyncio.run(_scenario(db, nodes))
        # A clean stop of the room's node persists and releases: its claim is gone.
        r = _sync(db)
        assert r.get(CLAIM) == owner.name
        stop_node(owner)
        assert r.get(CLAIM) is None
        assert r.smembers(f"suricate:node:{owner.name}:rooms") == set()
    finally:
        for node in nodes:
            stop_node(node)


async def _scenario(db: int, nodes: list[Node]) -> Node:
    a, b, c = nodes
    r = _sync(db)
    alice, bob, carol = await _user(a, "alice"), await _user(b, "bob"), await _user(c, "carol")
    muc = "xep_0045"

    # The first node that needs the room claims it: alice's.
    await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True,
                                             "muc#roomconfig_roomname": "Team"})
    assert r.get(CLAIM) == a.name
    await alice.plugin[muc].set_affiliation(SJID(ROOM), "owner", jid=SJID("bob@localhost"))
    await alice.plugin[muc].set_affiliation(SJID(ROOM), "admin", jid=SJID("carol@localhost"))
    await bob.plugin[muc].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    await carol.plugin[muc].join_muc_wait(SJID(ROOM), "Carol", timeout=5)
    assert r.get(CLAIM) == a.name  # bob's and carol's nodes forwarded, claimed nothing

    # Every occupant, on every node, gets each message once, with the same stanza-id.
    alice.send_message(mto=SJID(ROOM), mbody="from a", mtype="groupchat")
    bob.send_message(mto=SJID(ROOM), mbody="from b", mtype="groupchat")
    seen = [await _groupchats(client, 2) for client in (alice, bob, carol)]
    assert [body for body, _ in seen[0]] == ["from a", "from b"]
    assert seen[0] == seen[1] == seen[2], seen
    assert seen[0][0][1] != seen[0][1][1]
    # A second room, on bob's node, with alice (node a) in it.
    await create_room(bob, SIDE, "Bob", {})
    await alice.plugin[muc].join_muc_wait(SJID(SIDE), "Alice", timeout=5)
    assert r.get(f"suricate:muc:{SIDE}") == b.name
    await asyncio.sleep(0.3)
    for client in (alice, bob, carol):
        assert client.messages.empty(), "a message came twice"

    # The room's node is killed: a survivor reaps it and its claim goes with it.
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    killed = time.monotonic()
    await eventually(lambda: a.name not in r.hkeys("suricate:nodes"), timeout=10)
    await eventually(lambda: r.get(CLAIM) is None, timeout=5)
    # Alice's session died with node a: she leaves the room on bob's node (333).
    assert "333" in await _left(bob, f"{SIDE}/Alice")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(alice.disconnect(), 1)

    # XEP-0410: bob's self-ping says he is no longer in the room (it came back, without
    # its occupants, on a survivor): he must join again.
    assert await _self_ping(bob, "Bob") == "not-acceptable"
    owner = r.get(CLAIM)
    assert owner in (b.name, c.name)
    await bob.plugin[muc].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    back = time.monotonic() - killed
    print(f"room back on a survivor {back:.2f} s after SIGKILL of its node")
    assert back < 8  # 3 s of heartbeat, one beat to reap, a read from storage
    await carol.plugin[muc].join_muc_wait(SJID(ROOM), "Carol", timeout=5)
    assert r.get(CLAIM) == owner

    # Restored from storage: its configuration and affiliations are intact.
    form = await bob.plugin[muc].get_room_config(SJID(ROOM))
    values = form.get_values()
    assert values["muc#roomconfig_roomname"] == "Team"
    assert values["muc#roomconfig_persistentroom"] in (True, "1", "true")
    owners = await bob.plugin[muc].get_affiliation_list(SJID(ROOM), "owner")
    admins = await bob.plugin[muc].get_affiliation_list(SJID(ROOM), "admin")
    assert sorted(str(j) for j in owners) == ["alice@localhost", "bob@localhost"]
    assert [str(j) for j in admins] == ["carol@localhost"]

    carol.send_message(mto=SJID(ROOM), mbody="after", mtype="groupchat")
    got_b, got_c = await _groupchats(bob, 1), await _groupchats(carol, 1)
    assert got_b == got_c and got_b[0][0] == "after"
    await disconnect(bob, carol)
    return b if owner == b.name else c


def test_claims_race_take_over_and_release(redis_db: int) -> None:
    """The claim script on the real Redis: of five nodes claiming one room at once, one
    owns it and the others are told who; a claim whose node lost its heartbeat is taken over
    (and leaves that node's set); releasing a node's claims leaves others' claims alone; a
    node not listed as a member (reaped while paused, or Redis came back empty) is refused."""
    from redis.asyncio import Redis

    from suricate.modules.mod_muc import placement as P

    async def run() -> None:
        client = Redis(host="127.0.0.1", port=6379, db=redis_db, decode_responses=True)
        prefix = f"unit-{time.monotonic_ns()}:"
        claim, release_all = client.register_script(P._CLAIM), \
            client.register_script(P._RELEASE_ALL)

        async def take(node: str, room: str) -> str:
            return str(await claim(keys=[f"{prefix}muc:{room}", f"{prefix}node:{node}:rooms"],
                                   args=[node, room, prefix]))
        try:
            for i in range(5):
                await client.set(f"{prefix}alive:n{i}", "1")
            assert await take("n0", "r@conf") == "None"  # not listed yet: no claim
            assert await client.get(f"{prefix}muc:r@conf") is None
            for i in range(5):
                await client.hset(f"{prefix}nodes", f"n{i}", "127.0.0.1:1")
            owners = await asyncio.gather(*(take(f"n{i}", "r@conf") for i in range(5)))
            assert len(set(owners)) == 1
            first = owners[0]
            assert await client.smembers(f"{prefix}node:{first}:rooms") == {"r@conf"}
            other = "n1" if first != "n1" else "n2"
            await take(other, "s@conf")
            await client.delete(f"{prefix}alive:{first}")  # its heartbeat expired
            assert await take(other, "r@conf") == other
            assert await client.smembers(f"{prefix}node:{first}:rooms") == set()
            assert await release_all(keys=[f"{prefix}node:{other}:rooms"],
                                     args=[other, prefix]) == 2
            assert await client.get(f"{prefix}muc:r@conf") is None
            assert await client.get(f"{prefix}muc:s@conf") is None
        finally:
            for key in await client.keys(f"{prefix}*"):
                await client.delete(key)
            await client.aclose()

    asyncio.run(run())


# -- the GraphQL `muc` category on a cluster: each operation runs on the room's node ----------
ROOMS = """query($s: String!) { muc { listRooms(mucDomain: $s) { rooms { jid usersNumber }
           count } } }"""
USERS = """query($r: JID!) { muc { listRoomUsers(room: $r) { jid nick role } } }"""
CREATE = """mutation($s: String!, $n: String!) { muc { createInstantRoom(mucDomain: $s,
            name: $n, owner: "bob@localhost", nick: "Bob") { jid usersNumber } } }"""
SAY = """mutation($r: JID!) { muc { sendMessageToRoom(room: $r, from: "bob@localhost/r",
         body: "said by the API") } }"""


def _graphql(node: Node, query: str, **variables: Any) -> dict[str, Any]:
    from tests.cluster.test_cluster_admin import _http
    body = json.dumps({"query": query, "variables": variables}).encode()
    try:
        return dict(json.loads(_http(node, "/api/graphql", body)))
    except urllib.error.HTTPError as err:  # the API's errors come with a 4xx status too
        return dict(json.loads(err.read()))


async def _api(node: Node, query: str, **variables: Any) -> Any:
    result = await asyncio.to_thread(_graphql, node, query, **variables)
    assert "errors" not in result, result
    return result["data"]["muc"]


def test_admin_muc_operations_run_on_the_room_node(tmp_path: Path, redis_db: int) -> None:
    from tests.cluster.test_cluster_admin import OPS
    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db))
    nodes = []
    try:
        for tag in ("g0", "g1"):
            http = free_port()
            node = _start(tmp_path, db, tag, OPS.format(http=http))
            node.extra["http"] = http
            nodes.append(node)
        asyncio.run(_admin_scenario(db, nodes))
    finally:
        for node in nodes:
            stop_node(node)


async def _admin_scenario(db: int, nodes: list[Node]) -> None:
    a, b = nodes
    r = _sync(db)
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    await create_room(alice, ROOM, "Alice", {})
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    assert r.get(CLAIM) == a.name

    # Asked on b, the room's occupants are a's room's (b holds no copy of it).
    users = (await _api(b, USERS, r=ROOM))["listRoomUsers"]
    assert users == [{"jid": "alice@localhost/r", "nick": "Alice", "role": "MODERATOR"},
                     {"jid": "bob@localhost/r", "nick": "Bob", "role": "PARTICIPANT"}]
    # createInstantRoom on b of a's room: it exists (there), no second copy is made.
    again = await asyncio.to_thread(_graphql, b, CREATE, s="conference.localhost", n="team")
    assert again["errors"][0]["extensions"]["code"] == "room_exists", again
    assert r.get(CLAIM) == a.name
    # sendMessageToRoom on b reaches the occupants on both nodes, once.
    await _api(b, SAY, r=ROOM)
    for client in (alice, bob):
        msg = await next_groupchat(client)
        assert msg["body"] == "said by the API" and str(msg["from"]) == f"{ROOM}/Bob"

    # A room nobody owns is claimed by the node asked, and listed by every node.
    made = (await _api(b, CREATE, s="conference.localhost", n="fresh"))["createInstantRoom"]
    assert made == {"jid": "fresh@conference.localhost", "usersNumber": 0}
    assert r.get("suricate:muc:fresh@conference.localhost") == b.name
    for node in (a, b):
        listed = (await _api(node, ROOMS, s="conference.localhost"))["listRooms"]
        assert listed["rooms"] == [{"jid": "fresh@conference.localhost", "usersNumber": 0},
                                   {"jid": ROOM, "usersNumber": 2}], (node.name, listed)
    # changeRoomConfiguration on b hides a's room: listed to those affiliated with it only.
    hide = """mutation($r: JID!) { muc { changeRoomConfiguration(room: $r,
              config: {public: false}) { public } } }"""
    assert (await _api(b, hide, r=ROOM))["changeRoomConfiguration"] == {"public": False}
    seen_by = """query($f: JID!) { muc { listRooms(mucDomain: "conference.localhost",
                 from: $f) { rooms { jid } } } }"""
    for viewer, rooms in (("nobody@localhost", ["fresh@conference.localhost"]),
                          ("alice@localhost", ["fresh@conference.localhost", ROOM])):
        listed = (await _api(b, seen_by, f=viewer))["listRooms"]["rooms"]
        assert [room["jid"] for room in listed] == rooms, (viewer, listed)
    # Asking about a room that does not exist leaves no claim behind.
    missing = await asyncio.to_thread(_graphql, a, USERS, r="nothing@conference.localhost")
    assert missing["errors"][0]["extensions"]["code"] == "room_not_found", missing
    await eventually(lambda: r.get("suricate:muc:nothing@conference.localhost") is None,
                     timeout=3)
    await asyncio.sleep(0.3)
    for client in (alice, bob):
        assert client.messages.empty(), "a message came twice"
    await disconnect(alice, bob)


# -- what the service answers for every node: disco#items, max_user_conferences --------------
def test_service_items_and_user_conferences_span_nodes(tmp_path: Path, redis_db: int) -> None:
    """disco#items of the service lists a temporary room living on the other node (asked of
    every node, op mod_muc.items); max_user_conferences = 1 counts a room on the other node
    (the Redis set muc:in:<bare>), and leaving frees the place."""
    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db))
    nodes = [_start(tmp_path, db, tag, "max_user_conferences = 1\n") for tag in ("i0", "i1")]
    try:
        asyncio.run(_service_scenario(db, nodes))
    finally:
        for node in nodes:
            stop_node(node)


async def _service_scenario(db: int, nodes: list[Node]) -> None:
    from slixmpp.exceptions import PresenceError

    a, b = nodes
    r = _sync(db)
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    muc = "xep_0045"
    try:
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_roomname": "Team"})
        await create_room(bob, SIDE, "Bob", {})
        assert (r.get(CLAIM), r.get(f"suricate:muc:{SIDE}")) == (a.name, b.name)

        # Both temporary (in no storage): asked on a, b's room is listed too.
        items = await alice.plugin["xep_0030"].get_items(jid="conference.localhost")
        found = {(str(i[0]), i[2]) for i in items["disco_items"]["items"]}
        assert found == {(ROOM, "Team"), (SIDE, "side")}, found

        # alice is in one room (on a): joining b's room is refused there.
        assert r.scard("suricate:muc:in:alice@localhost") == 1
        with pytest.raises(PresenceError) as refused:
            await alice.plugin[muc].join_muc_wait(SJID(SIDE), "Alice", timeout=5)
        assert refused.value.condition == "resource-constraint"
        # Out of her room, she may.
        alice.plugin[muc].leave_muc(SJID(ROOM), "Alice")
        await eventually(lambda: r.scard("suricate:muc:in:alice@localhost") == 0)
        await alice.plugin[muc].join_muc_wait(SJID(SIDE), "Alice", timeout=5)
        assert r.smembers("suricate:muc:in:alice@localhost") == {
            f"{b.name}\t{SIDE}\talice@localhost/r"}

        # Multi-session across nodes: alice's laptop, on b, joins under her nick the room on
        # b; still one room for max_user_conferences = 1 (the script counts rooms, not
        # sessions), one member per session.
        laptop = await _user(b, "alice", "laptop")
        await laptop.plugin[muc].join_muc_wait(SJID(SIDE), "Alice", timeout=5)
        assert r.smembers("suricate:muc:in:alice@localhost") == {
            f"{b.name}\t{SIDE}\talice@localhost/r", f"{b.name}\t{SIDE}\talice@localhost/laptop"}
        bob.send_message(mto=SIDE, mbody="both", mtype="groupchat")
        for client in (alice, laptop):
            assert (await next_groupchat(client))["body"] == "both"
        # The session on a leaves: the laptop stays, the room still counts.
        alice.plugin[muc].leave_muc(SJID(SIDE), "Alice")
        await eventually(lambda: r.smembers("suricate:muc:in:alice@localhost") == {
            f"{b.name}\t{SIDE}\talice@localhost/laptop"})
        bob.send_message(mto=SIDE, mbody="laptop only", mtype="groupchat")
        assert (await next_groupchat(laptop))["body"] == "laptop only"
        await disconnect(laptop)
    finally:
        await disconnect(alice, bob)
