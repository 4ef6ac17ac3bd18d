"""The cluster as one service (``sm_backend = "redis"``): three real ``suricate serve`` nodes
sharing the real Redis and one SQLite file, slixmpp clients, the GraphQL admin API and the
Prometheus endpoint over real HTTP. What is proven: the ``session`` category answers for every
node from any node (Redis for who is where, the owning node for connection details, kicks and
presence), ``stanza.sendMessage`` reaches a user on another node, carbons (XEP-0280) reach the
account's resource on another node, a subscription request and the roster pushes it causes
reach the resources on every node, and each node's metrics endpoint names its node."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_redis_nodes import Node, _sync, _toml, launch_node, stop_node
from tests.cluster.test_workers import _register
from tests.e2e.harness import Client, connect, disconnect, eventually, free_port

pytestmark = pytest.mark.xdist_group("redis_nodes")

ADMIN = base64.b64encode(b"admin:s3cret").decode()

OPS = """
[modules.mod_carboncopy]

[instrumentation.prometheus]

[[listen.http]]
port = {http}
ip_address = "127.0.0.1"

[[listen.http.handlers.mongoose_prometheus_handler]]
host = "_"
path = "/metrics"

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql"
schema_endpoint = "admin"
username = "admin"
password = "s3cret"

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql/user"
schema_endpoint = "user"
"""


def _start(tmp: Path, db: int, tag: str) -> Node:
    c2s, tls, http = free_port(), free_port(), free_port()
    return launch_node(tmp, db, tag, c2s, tls, _toml(tmp, c2s, tls, db) + OPS.format(http=http), extra={"http": http, "db": db})


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, redis_db: int) -> Iterator[list[Node]]:
    tmp = tmp_path_factory.mktemp("cluster_admin")
    _register(tmp, _toml(tmp, free_port(), free_port(), redis_db))
    started: list[Node] = []
    try:
        for tag in ("a", "b", "c"):
            started.append(_start(tmp, redis_db, tag))
        yield started
    finally:
        for node in started:
            stop_node(node)


def _http(node: Node, path: str, body: bytes | None = None, auth: str = ADMIN) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.extra['http']}{path}", data=body,
        headers={"content-type": "application/json", "authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


async def _admin(node: Node, query: str, **variables: Any) -> Any:
    body = json.dumps({"query": query, "variables": variables}).encode()
    result = json.loads(await asyncio.to_thread(_http, node, "/api/graphql", body))
    assert "errors" not in result, result
    return result["data"]


SESSIONS = """query { session { listSessions { user node priority connection ip port uptime }
                                countSessions } }"""
USER = """query($u: JID!) { session { listUserSessions(user: $u) { user node priority }
          countUserResources(user: $u) second: getUserResource(user: $u, number: 2) } }"""
LIST = """query($u: JID!) { session { listUserSessions(user: $u) { priority } } }"""
KICK_ONE = """mutation($u: JID!) { session { kickUserSession(user: $u) { jid message } } }"""
KICK_ALL = """mutation($u: JID!) { session { kickUser(user: $u) { jid } } }"""
BAN = """mutation($u: JID!) { account { banUser(user: $u, reason: "x") { message } } }"""
PRESENCE = """mutation($u: JID!) { session { setPresence(user: $u, type: AVAILABLE, show: DND,
              priority: 7) { message } } }"""
SEND = """mutation($f: JID!, $t: JID!) { stanza { sendMessage(from: $f, to: $t, body: "hi") {
          id } } }"""


CLUSTER_METRICS = """query($n: [String!]) { metric { getClusterMetricsAsDicts(
    name: ["sm_session"], keys: ["logins"], nodes: $n) { node result { name dict { key value }
    } } } }"""


def _queue(client: Client, event: str) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler(event, queue.put_nowait)
    return queue


def test_cluster_admin_carbons_roster(nodes: list[Node]) -> None:
    asyncio.run(_scenario(nodes))


async def _scenario(nodes: list[Node]) -> None:
    a, b, c = nodes
    phone = await connect(a, "alice@localhost/phone", "pw",  # type: ignore[arg-type]
                          plugins=("xep_0280",))
    laptop = await connect(b, "alice@localhost/laptop", "pw",  # type: ignore[arg-type]
                           plugins=("xep_0280",))
    bob = await connect(c, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    try:
        for client in (phone, laptop, bob):
            # Subscription requests wait for the test's answer (slixmpp answers by default).
            client.auto_authorize = None
            client.auto_subscribe = False
            client.send_presence()
            await client.get_roster()
        await phone.plugin["xep_0280"].enable()
        await laptop.plugin["xep_0280"].enable()
        await eventually(lambda: len(_sync_rows(nodes)) == 3)

        # -- GraphQL from node A answers for the three nodes -----------------------------
        data = (await _admin(a, SESSIONS))["session"]
        assert data["countSessions"] == 3
        listed = {s["user"]: s for s in data["listSessions"]}
        assert {u: s["node"] for u, s in listed.items()} == {
            "alice@localhost/laptop": b.name, "alice@localhost/phone": a.name,
            "bob@localhost/desk": c.name}
        for session in listed.values():
            # asked of the node holding it
            assert session["connection"] == "c2s_tls" and session["ip"] == "127.0.0.1"
            assert session["port"] > 0 and session["uptime"] >= 0
        # alice's own user endpoint, on node C where she has no session
        body = json.dumps({"query": "{ session { listResources countResources } }"}).encode()
        mine = json.loads(await asyncio.to_thread(
            _http, c, "/api/graphql/user", body, base64.b64encode(b"alice@localhost:pw").decode()))
        assert mine == {"data": {"session": {"listResources": ["laptop", "phone"],
                                             "countResources": 2}}}, mine
        user = (await _admin(c, USER, u="alice@localhost"))["session"]
        assert user["countUserResources"] == 2 and user["second"] == "phone"
        assert [s["node"] for s in user["listUserSessions"]] == [b.name, a.name]

        # setPresence on node A for bob's session on node C: C applies it, Redis shows it
        await _admin(a, PRESENCE, u="bob@localhost/desk")

        async def bob_priority() -> bool:
            got = (await _admin(b, LIST, u="bob@localhost"))["session"]["listUserSessions"]
            return bool(got[0]["priority"] == 7)
        await eventually(bob_priority)

        # the presence show is asked of each node: bob's dnd on C, seen from A
        dnd = """query { session { listUsersWithStatus(status: "dnd") { user priority }
                 countUsersWithStatus(status: "dnd") } }"""
        assert (await _admin(a, dnd))["session"] == {
            "listUsersWithStatus": [{"user": "bob@localhost/desk", "priority": 7}],
            "countUsersWithStatus": 1}

        # stanza.sendMessage on node A to bob on node C
        await _admin(a, SEND, f="alice@localhost", t="bob@localhost/desk")
        assert (await _next_body(bob)) == "hi"

        # -- carbons across nodes (XEP-0280 §6, §7) -------------------------------------
        received = _queue(laptop, "carbon_received")
        sent = _queue(laptop, "carbon_sent")
        bob.send_message(mto="alice@localhost/phone", mbody="to the phone", mtype="chat")
        assert (await _next_body(phone)) == "to the phone"
        copy = await asyncio.wait_for(received.get(), 5)
        assert copy["carbon_received"]["body"] == "to the phone"
        assert str(copy["from"]) == "alice@localhost"
        phone.send_message(mto="bob@localhost/desk", mbody="from the phone", mtype="chat")
        copy = await asyncio.wait_for(sent.get(), 5)
        if copy["carbon_sent"]["body"] == "hi":
            # The <sent/> copy of the admin's "hi" (sent in alice's name, so her resources
            # get a copy) crosses from node A to B and may come after the queue was made.
            copy = await asyncio.wait_for(sent.get(), 5)
        assert copy["carbon_sent"]["body"] == "from the phone"
        assert str(copy["carbon_sent"]["to"]) == "bob@localhost/desk"

        # -- a subscription request and the roster pushes it causes, on every node -------
        bob.send_presence(pto="alice@localhost", ptype="subscribe")
        for client in (phone, laptop):
            pres = await client.next_presence(type_="subscribe")
            assert str(pres["from"]) == "bob@localhost"
        pushed = _queue(laptop, "roster_update")
        phone.send_presence(pto="bob@localhost", ptype="subscribed")
        while True:  # the push for bob's item, made on node A, shown on node B
            iq = await asyncio.wait_for(pushed.get(), 5)
            items = iq["roster"]["items"]
            if "bob@localhost" in {str(j) for j in items}:
                break
        assert items[next(j for j in items if str(j) == "bob@localhost")][
            "subscription"] == "from"
        # Node B's roster cache caught up too: its broadcast now includes bob (RFC 6121 §4.4)
        laptop.send_presence(pstatus="on node B")
        while True:
            pres = await bob.next_presence()
            if str(pres["from"]) == "alice@localhost/laptop" and pres["status"] == "on node B":
                break

        # -- kicks through the owning node ----------------------------------------------
        kicked = await _admin(a, KICK_ONE, u="alice@localhost/laptop")
        assert kicked["session"]["kickUserSession"]["jid"] == "alice@localhost/laptop"
        await eventually(lambda: "alice@localhost/laptop" not in _sync_rows(nodes))
        gone = (await _admin(b, KICK_ALL, u="bob@localhost"))["session"]["kickUser"]
        assert gone == [{"jid": "bob@localhost/desk"}]
        await eventually(lambda: set(_sync_rows(nodes)) == {"alice@localhost/phone"})
        assert (await _admin(c, SESSIONS))["session"]["countSessions"] == 1
        # banning alice on node C ends her session on node A
        banned = (await _admin(c, BAN, u="alice@localhost"))["account"]["banUser"]
        assert "(1 sessions ended)" in banned["message"], banned
        await eventually(lambda: _sync_rows(nodes) == {})

        # -- getClusterMetricsAsDicts: each node's own metrics, asked from one node ------
        got = (await _admin(c, CLUSTER_METRICS))["metric"]["getClusterMetricsAsDicts"]
        assert sorted(n["node"] for n in got) == sorted(node.name for node in nodes), got
        for entry in got:  # one login on each node (phone on A, laptop on B, bob on C)
            (logins,) = [d["value"] for r in entry["result"] for d in r["dict"]]
            assert logins == 1, entry
        one = (await _admin(a, CLUSTER_METRICS, n=[b.name]))["metric"][
            "getClusterMetricsAsDicts"]
        assert [n["node"] for n in one] == [b.name]

        # -- each node's metrics endpoint names its node ----------------------------------
        for node in nodes:
            text = (await asyncio.to_thread(_http, node, "/metrics")).decode()
            assert f'cluster_node_info{{node="{node.name}"}} 1' in text
            assert sum("cluster_node_info{" in line for line in text.splitlines()) == 1
    finally:
        await disconnect(phone, laptop, bob)


def _sync_rows(nodes: list[Node]) -> dict[str, str]:
    """Full JID -> node, read from Redis."""
    r = _sync(nodes[0].extra["db"])
    rows = {}
    for key in r.keys("suricate:sess:*"):
        bare = key[len("suricate:sess:"):]
        for resource, row in r.hgetall(key).items():
            rows[f"{bare}/{resource}"] = row.split("\t")[0]
    return rows


async def _next_body(client: Client) -> str:
    while True:
        message = await client.next_message()
        if message["body"]:
            return str(message["body"])
