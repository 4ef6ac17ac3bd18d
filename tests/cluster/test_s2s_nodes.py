"""Federation from a cluster (``sm_backend = "redis"``): a peer checks a dialback key by
connecting to our domain (XEP-0220 §2.1.2, the authoritative server), and that connection may
reach another node than the one that made the key. Two real ``suricate serve`` nodes of
``localhost`` sharing the real Redis, no ``[s2s] shared``; the peer, ``beta.test``, is a
Suricate in this process whose address for ``localhost`` is node B only. Alice, on node A,
writes to bob@beta.test: A connects to the peer and sends its key, the peer verifies it on
B, and bob gets the message (with one secret per process, B answered ``invalid`` and the
message came back as an error)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from suricate.net.certs import ensure_self_signed
from tests.cluster.test_redis_nodes import _toml, launch_node, stop_node
from tests.cluster.test_workers import _register
from tests.e2e.harness import connect, disconnect, free_port
from tests.s2s.harness import federated_server, federated_toml, login, register

pytestmark = pytest.mark.xdist_group("redis_nodes")


def _s2s_toml(tmp: Path, s2s_port: int, peer_port: int) -> str:
    own, _ = ensure_self_signed(tmp / "s2s-certs", ["localhost"])
    return f"""
[[listen.s2s]]
port = {s2s_port}
ip_address = "127.0.0.1"
tls.certfile = "{own.certfile}"
tls.keyfile = "{own.keyfile}"
tls.verify_mode = "none"

[s2s]
default_policy = "allow"

[s2s.outgoing]
connection_timeout = 3000
state_timeout = 5000
tls.verify_mode = "none"

[[s2s.outgoing.address]]
host = "beta.test"
ip_address = "127.0.0.1"
port = {peer_port}
"""


def test_a_dialback_key_made_on_one_node_verifies_on_another(
        tmp_path_factory: pytest.TempPathFactory, redis_db: int) -> None:
    tmp = tmp_path_factory.mktemp("s2s_nodes")
    peer_c2s, peer_s2s = free_port(), free_port()
    s2s_ports = {"a": free_port(), "b": free_port()}
    nodes = []
    try:
        for tag in ("a", "b"):
            c2s, tls = free_port(), free_port()
            toml = _toml(tmp, c2s, tls, redis_db) + _s2s_toml(tmp, s2s_ports[tag], peer_s2s)
            if tag == "a":
                _register(tmp, toml)
            nodes.append(launch_node(tmp, redis_db, f"dialback-{tag}", c2s, tls, toml))
        peer_toml = federated_toml(tmp / "beta", "beta.test", peer_c2s, peer_s2s,
                                   {"localhost": ("127.0.0.1", s2s_ports["b"])}, "dialback",
                                   None)
        asyncio.run(_scenario(tmp / "beta", peer_toml, peer_c2s, peer_s2s, nodes[0]))
    finally:
        for node in nodes:
            stop_node(node)


async def _scenario(tmp: Path, peer_toml: str, peer_c2s: int, peer_s2s: int,
                    node_a: object) -> None:
    async with federated_server(tmp, "beta.test", peer_toml, peer_c2s, peer_s2s) as peer:
        await register(peer, "bob")
        bob = await login(peer, "bob@beta.test/b")
        alice = await connect(node_a, "alice@localhost/a", "pw")  # type: ignore[arg-type]
        try:
            alice.send_message(mto="bob@beta.test/b", mbody="across", mtype="chat")
            got = await bob.next_message(timeout=20)
            assert (got["type"], got["body"], str(got["from"])) == (
                "chat", "across", "alice@localhost/a")
        finally:
            await disconnect(alice)
            await disconnect(bob)
