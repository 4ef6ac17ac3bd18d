"""Dynamic domains in a cluster (``sm_backend = "redis"``): two real ``suricate serve`` nodes
sharing the real Redis and one SQLite file, the admin GraphQL on node A, slixmpp clients. A
domain added on A is served by B when ``addDomain`` returns (B is told to re-read the domains
at once, not at its next refresh 10 s later): an account of it logs in on B straight away;
disabling it on A ends that session on B at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.cluster.test_redis_nodes import Node, _toml, launch_node, stop_node
from tests.cluster.test_removal_nodes import _admin
from tests.e2e.harness import connect, disconnect, free_port
from tests.ops.harness import admin_endpoint_toml
from tests.ops.test_graphql import watch_disconnect

pytestmark = pytest.mark.xdist_group("redis_nodes")

ADD = """mutation { domain { addDomain(domain: "dyn.test", hostType: "tenant")
  { status } } }"""
REGISTER = """mutation { account { registerUser(domain: "dyn.test", username: "zoe",
  password: "pw") { message } } }"""
DISABLE = 'mutation { domain { disableDomain(domain: "dyn.test") { status } } }'
REMOVE = """mutation { domain { removeDomain(domain: "dyn.test", hostType: "tenant")
  { domain } } }"""


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, redis_db: int) -> Iterator[list[Node]]:
    tmp = tmp_path_factory.mktemp("domain_nodes")
    started: list[Node] = []
    try:
        for tag in ("a", "b"):
            c2s, tls, http = free_port(), free_port(), free_port()
            toml = _toml(tmp, c2s, tls, redis_db).replace(
                'default_server_domain = "localhost"',
                'default_server_domain = "localhost"\nhost_types = ["tenant"]', 1)
            assert 'host_types = ["tenant"]' in toml
            toml += admin_endpoint_toml(http)
            started.append(launch_node(tmp, redis_db, tag, c2s, tls, toml,
                                       extra={"http": http}))
        yield started
    finally:
        for node in started:
            stop_node(node)


def test_a_domain_added_on_one_node_is_served_by_the_other_at_once(nodes: list[Node]) -> None:
    asyncio.run(_scenario(*nodes))


async def _scenario(a: Node, b: Node) -> None:
    assert (await _admin(a, ADD))["domain"]["addDomain"]["status"] == "ENABLED"
    try:
        await _admin(a, REGISTER)
        zoe = await connect(b, "zoe@dyn.test/r", "pw", timeout=5)  # type: ignore[arg-type]
        gone = watch_disconnect(zoe)
        await _admin(a, DISABLE)
        await asyncio.wait_for(gone, 3)
        await disconnect(zoe)
    finally:
        await _admin(a, REMOVE)
