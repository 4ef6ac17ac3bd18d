"""The session table behind Redis Sentinel (``connection.sentinels``, cluster/redis_sentinel.py):
real ``redis-server`` processes of the test's own (a master, its replica, one Sentinel) on
private ports, two real ``suricate serve`` nodes, real slixmpp clients. What is proven: the
nodes find the master through Sentinel (the pool's host/port point nowhere); the master
SIGKILLed and the replica promoted, the nodes reconnect to it, and a row the replica never
received (deleted there, as asynchronous replication can lose the last writes) is written
back by its node; a message crosses nodes after the failover. Also: the configuration
options, Redis Cluster refused with the reason, and a node whose Redis does not answer
(paused) still exits on SIGTERM in bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suricate.config import ConfigError, parse_config
from tests.cluster.conftest import require_redis_server
from tests.cluster.test_redis_nodes import (
    SURICATE,
    Node,
    _register,
    _rows,
    _sync,
    _toml,
    launch_node,
    stop_node,
)
from tests.e2e.harness import connect, disconnect, eventually, free_port

pytestmark = pytest.mark.xdist_group("redis_nodes")

SERVICE = "suri"


class Servers:
    """Redis processes of this test, killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, *args: str, port: int | None = None) -> int:
        port = port or free_port()
        self.procs[port] = subprocess.Popen(
            ["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(Exception):
                if _sync(0, port).ping():
                    return port
            assert time.monotonic() < deadline, f"redis-server {args} did not start"
            time.sleep(0.02)

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    require_redis_server()
    found = Servers(tmp_path)
    try:
        yield found
    finally:
        for port in list(found.procs):
            found.kill(port)


def _sentinel_toml(tmp: Path, c2s: int, tls: int, sentinel: int) -> str:
    # host/port name a port nobody listens on: only Sentinel can lead to the master.
    return _toml(tmp, c2s, tls, 0, free_port()).replace(
        "database = 0",
        f'database = 0\nsentinels = ["127.0.0.1:{sentinel}"]\nservice_name = "{SERVICE}"')


def _start(tmp: Path, tag: str, sentinel: int, master: int) -> Node:
    c2s, tls = free_port(), free_port()
    return launch_node(tmp, 0, tag, c2s, tls, _sentinel_toml(tmp, c2s, tls, sentinel), master)


def test_failover_nodes_follow_the_new_master_and_write_their_rows_back(
        tmp_path: Path, servers: Servers) -> None:
    master = servers.start("--repl-diskless-sync-delay", "0")
    # The replica accepts writes of its own: the test removes there what replication would
    # have lost.
    replica = servers.start("--replicaof", "127.0.0.1", str(master),
                            "--replica-read-only", "no")
    r = _sync(0, replica)
    deadline = time.monotonic() + 5
    while r.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
                    f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                    f"sentinel failover-timeout {SERVICE} 4000\n")
    sentinel = servers.start(str(conf), "--sentinel")
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), 0, master))
    a = _start(tmp_path, "a", sentinel, master)
    b = _start(tmp_path, "b", sentinel, master)
    try:
        asyncio.run(_failover(servers, master, replica, a, b))
    finally:
        for node in (a, b):
            stop_node(node)


async def _failover(servers: Servers, master: int, replica: int, a: Node, b: Node) -> None:
    alice = await connect(a, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
    bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    try:
        for client in (alice, bob):
            client.send_presence()
        bob_row = {"desk": [b.name, "0", "1"]}
        await eventually(lambda: _rows(0, "bob@localhost", replica) == bob_row)
        alice.send_message(mto="bob@localhost/desk", mbody="before", mtype="chat")
        assert (await bob.next_message())["body"] == "before"

        servers.kill(master)
        killed = time.monotonic()
        # What the replica may not have received: bob's row (his node stays listed).
        _sync(0, replica).delete("suricate:sess:bob@localhost")
        await eventually(lambda: _sync(0, replica).info("replication")["role"] == "master",
                         timeout=15)
        # Each node reconnects to the promoted replica and writes its rows back.
        await eventually(lambda: _rows(0, "bob@localhost", replica) == bob_row, timeout=10)
        print(f"rows written back {time.monotonic() - killed:.2f} s after the master died")
        assert _rows(0, "alice@localhost", replica) == {"phone": [a.name, "0", "1"]}
        assert set(_sync(0, replica).hkeys("suricate:nodes")) == {a.name, b.name}
        alice.send_message(mto="bob@localhost/desk", mbody="after", mtype="chat")
        assert (await bob.next_message(timeout=10))["body"] == "after"
        assert "redis_failover" in b.log.read_text()
        # The heartbeat threads (heartbeat.py) beat the new master too: nobody was reaped.
        for node in (a, b):
            await eventually(lambda n=node: _sync(0, replica).exists(f"suricate:alive:{n.name}"))
            assert "cluster_node_reaped" not in node.log.read_text()
    finally:
        await disconnect(alice, bob)


def test_sentinel_options_and_redis_cluster_refused() -> None:
    base = ('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'
            'sm_backend = "redis"\n[outgoing_pools.redis.default.connection]\n')
    cfg = parse_config(base + 'sentinels = ["10.0.0.5:26379", "[::1]:26380"]\n'
                       'service_name = "xmpp"\nsentinel_password = "s"\n', Path("."))
    conn = cfg["outgoing_pools"]["redis"]["default"]["connection"]
    assert (conn["sentinels"], conn["service_name"], conn["sentinel_password"]) == (
        ["10.0.0.5:26379", "[::1]:26380"], "xmpp", "s")
    with pytest.raises(ConfigError, match=r'connection.sentinels: "10.0.0.5" is not "host:port"'):
        parse_config(base + 'sentinels = ["10.0.0.5"]\n', Path("."))
    with pytest.raises(ConfigError, match=r"connection.cluster: Redis Cluster is not supported.*"
                                          r"one hash slot"):
        parse_config(base + "cluster = true\n", Path("."))


def test_a_redis_cluster_node_is_refused_at_start(tmp_path: Path, servers: Servers) -> None:
    # The cluster bus port given (by default port + 10000, which may be taken or past 65535).
    port = servers.start("--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                         "--cluster-config-file", str(tmp_path / "nodes.conf"))
    config = tmp_path / "node.toml"
    config.write_text(_toml(tmp_path, free_port(), free_port(), 0, port))
    done = subprocess.run([*SURICATE, "serve", "--config", str(config)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0
    assert "Redis Cluster is not supported" in done.stderr, done.stderr


def test_sigterm_ends_a_node_whose_redis_does_not_answer(tmp_path: Path,
                                                         servers: Servers) -> None:
    """A node told to stop while its Redis is paused (SIGSTOP: connections open, no answer)
    exits in bounded time: its cluster parts give up waiting (admin.py STOP_WITHIN, the
    leave); the others reap its rows later as for a dead node."""
    port = servers.start()
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), 0, port))
    from tests.cluster.test_redis_nodes import start_node

    node = start_node(tmp_path, 0, "n", port)

    async def session() -> None:
        client = await connect(node, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
        client.send_presence()
        await eventually(lambda: len(_rows(0, "alice@localhost", port)) == 1)
        servers.procs[port].send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            node.proc.send_signal(signal.SIGTERM)
            node.proc.communicate(timeout=30)
            took = time.monotonic() - start
        finally:
            servers.procs[port].send_signal(signal.SIGCONT)
        print(f"stopped in {took:.2f} s with Redis paused")
        assert took < 8, took  # the last writes and the leave: 2 s each at most
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 1)

    try:
        asyncio.run(session())
    finally:
        stop_node(node)
