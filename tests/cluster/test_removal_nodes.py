"""Removing an account in a cluster (``sm_backend = "redis"``): two real ``suricate serve``
nodes sharing the real Redis and one SQLite file, slixmpp clients. The account is removed on
node A (in band, XEP-0077 §3.2, from a session on A; through the admin GraphQL on A; with the
XEP-0133 delete-user command of an admin on A): its sessions on both nodes end with the
removal's stream error (`not-authorized`) and logging in again on B fails; the session that
asked in band gets its answer before its stream ends. XEP-0133 end-user-session run on A ends
the account's session on B; a GraphQL SSE subscription of the account on B ends with its
removal on A."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.adhoc.test_adhoc import PLUGINS as ADHOC
from tests.adhoc.test_adhoc import run_admin
from tests.cluster.test_cluster_admin import ADMIN
from tests.cluster.test_redis_nodes import Node, _toml, launch_node, stop_node
from tests.cluster.test_workers import LIMIT
from tests.e2e.harness import connect, disconnect, free_port
from tests.e2e.test_register import stream_error_of
from tests.ops.harness import admin_endpoint_toml
from tests.ops.test_graphql_sse import ADMIN_SUB, params
from tests.ops.test_rest_client_api import EventStream

pytestmark = pytest.mark.xdist_group("redis_nodes")

REGISTER = ("xep_0004", "xep_0066", "xep_0077")

# root may run the XEP-0133 commands of mod_adhoc.
ADMINS = """
adhoc_admins = [{acl = "admins", value = "allow"}]

[acl]
admins = [{user = "root"}]
"""

ADHOC_ADMIN = """
[modules.mod_adhoc]
access_admin = "adhoc_admins"
"""


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, redis_db: int) -> Iterator[list[Node]]:
    tmp = tmp_path_factory.mktemp("removal_nodes")
    started: list[Node] = []
    try:
        for tag in ("a", "b"):
            c2s, tls, http = free_port(), free_port(), free_port()
            toml = _toml(tmp, c2s, tls, redis_db).replace(LIMIT, LIMIT + ADMINS)
            toml += ADHOC_ADMIN + admin_endpoint_toml(http)
            started.append(launch_node(tmp, redis_db, tag, c2s, tls, toml,
                                       extra={"http": http}))
        asyncio.run(_admin(started[0], REGISTER_USER, u="root"))
        yield started
    finally:
        for node in started:
            stop_node(node)


def _post(node: Node, body: bytes) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.extra['http']}/api/graphql", data=body,
        headers={"content-type": "application/json", "authorization": f"Basic {ADMIN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def _admin(node: Node, query: str, **variables: Any) -> Any:
    body = json.dumps({"query": query, "variables": variables}).encode()
    result = await asyncio.to_thread(_post, node, body)
    assert "errors" not in result, result
    return result["data"]


REGISTER_USER = """mutation($u: String!) { account { registerUser(domain: "localhost",
                   username: $u, password: "pw") { jid } } }"""
REMOVE_USER = """mutation($u: JID!) { account { removeUser(user: $u) { jid } } }"""


@pytest.mark.parametrize("how", ["in-band", "graphql", "adhoc"])
def test_removal_on_one_node_ends_the_sessions_on_the_others(nodes: list[Node],
                                                             how: str) -> None:
    asyncio.run(_removed_on_a(nodes, how))


async def _removed_on_a(nodes: list[Node], how: str) -> None:
    a, b = nodes
    user = f"gone-{how}@localhost"
    await _admin(a, REGISTER_USER, u=user.split("@")[0])
    laptop = await connect(b, f"{user}/laptop", "pw")  # type: ignore[arg-type]
    phone = await connect(a, f"{user}/phone", "pw",  # type: ignore[arg-type]
                          plugins=REGISTER)
    try:
        on_b = stream_error_of(laptop)
        on_a = stream_error_of(phone)
        if how == "in-band":
            # §3.2: the answer first, then the stream error.
            result = await phone.plugin["xep_0077"].cancel_registration()
            assert result["type"] == "result"
        elif how == "graphql":
            await _admin(a, REMOVE_USER, u=user)
        else:  # XEP-0133 delete-user, by an admin on node A
            root = await connect(a, "root@localhost/desk", "pw",  # type: ignore[arg-type]
                                 plugins=ADHOC)
            try:
                await run_admin(root, "delete-user", accountjids=[user])
            finally:
                await disconnect(root)
        assert await asyncio.wait_for(on_b, 5) == "not-authorized"
        assert await asyncio.wait_for(on_a, 5) == "not-authorized"
        with pytest.raises(PermissionError):
            await connect(b, f"{user}/laptop", "pw")  # type: ignore[arg-type]
    finally:
        await disconnect(laptop, phone)


def test_ending_an_accounts_sessions_by_adhoc_reaches_the_other_nodes(nodes: list[Node]) -> None:
    asyncio.run(_ended_from_a(nodes))


async def _ended_from_a(nodes: list[Node]) -> None:
    # XEP-0133 end-user-session, by an admin on node A, for an account logged in on node B.
    a, b = nodes
    await _admin(a, REGISTER_USER, u="ivy")
    laptop = await connect(b, "ivy@localhost/laptop", "pw")  # type: ignore[arg-type]
    root = await connect(a, "root@localhost/desk", "pw",  # type: ignore[arg-type]
                         plugins=ADHOC)
    try:
        on_b = stream_error_of(laptop)
        done = await run_admin(root, "end-user-session", accountjids=["ivy@localhost"])
        assert done["command"]["notes"][0][1] == "1 session(s) ended"
        assert await asyncio.wait_for(on_b, 5) == "policy-violation"
    finally:
        await disconnect(laptop, root)


RESOURCES = """query($u: JID!) { session { countUserResources(user: $u) } }"""


def test_removal_on_one_node_ends_a_subscription_on_another(nodes: list[Node]) -> None:
    asyncio.run(_subscription_ended(nodes))


async def _subscription_ended(nodes: list[Node]) -> None:
    # subscribeForMessages on node B's admin endpoint for the account; removed on node A.
    a, b = nodes
    await _admin(a, REGISTER_USER, u="sub")
    async with aiohttp.ClientSession(f"http://127.0.0.1:{b.extra['http']}") as http, \
            http.get("/api/graphql/sse", params=params(ADMIN_SUB, {"c": "sub@localhost"}, "S"),
                     headers={"authorization": f"Basic {ADMIN}"}) as response:
        assert response.status == 200, await response.text()
        for _ in range(50):  # the subscription is a session of the account, in Redis
            count = (await _admin(a, RESOURCES, u="sub@localhost"))["session"]
            if count["countUserResources"] == 1:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the subscription never showed as a session")
        await _admin(a, REMOVE_USER, u="sub@localhost")
        with pytest.raises(EOFError):
            await EventStream(response).next(timeout=5)
