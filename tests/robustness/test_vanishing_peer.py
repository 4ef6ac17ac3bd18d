"""A client that vanishes without FIN or RST (a phone entering a tunnel): the c2s sockets carry
TCP keepalive and TCP_USER_TIMEOUT, so the kernel, not only mod_ping, ends such a connection.

The second test makes the vanishing real: in a network namespace of its own (skipped without
CAP_NET_ADMIN), the loopback gets a ``blackhole`` qdisc that drops every packet silently."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import eventually
from tests.robustness.conftest import Client, limited_server


def _server_socket(server: Server) -> socket.socket:
    """The server's end of the only connection on the plain c2s listener."""
    for listener in server.listeners:
        if listener.port == server.plain_port:  # type: ignore[attr-defined]
            (conn,) = listener.connections
            assert conn.transport is not None
            sock = conn.transport.get_extra_info("socket")
            # asyncio's TransportSocket: a real socket with the same descriptor, to read from.
            return socket.socket(fileno=os.dup(sock.fileno()))
    raise AssertionError("no plain listener")


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux socket options")
async def test_c2s_sockets_get_keepalive_and_user_timeout(tmp_path: Path) -> None:
    async with limited_server(tmp_path, listener="tcp_keepalive = 7\ntcp_user_timeout = 9") \
            as server:
        client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
        try:
            await client.login("alice")
            with _server_socket(server) as sock:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 9000
        finally:
            await client.close()
    # 0 turns both off: the kernel's own behaviour.
    async with limited_server(tmp_path / "off", listener="tcp_keepalive = 0\n"
                              "tcp_user_timeout = 0") as server:
        client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
        try:
            await client.login("alice")
            with _server_socket(server) as sock:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0
        finally:
            await client.close()


_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def _own_netns() -> Iterator[str]:
    """Run this thread in a new network namespace (loopback up); yields its name."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("needs root (CAP_NET_ADMIN), ip and tc")
    name = f"suricate-t-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode:
        pytest.skip("cannot make a network namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            pytest.skip("setns refused")
        try:
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            yield name
        finally:
            libc.setns(home, _CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


async def test_a_client_that_vanishes_silently_goes_offline(tmp_path: Path) -> None:
    with _own_netns() as ns:
        async with limited_server(tmp_path, listener="tcp_keepalive = 1\n"
                                  "tcp_user_timeout = 2") as server:
            client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
            try:
                await client.login("alice", resource="phone")
                await client.send("<presence/>")
                await client.ping()
                phone = JID.parse("alice@localhost/phone")
                assert server.sessions.lookup(phone) is not None
                # The tunnel: from now on every packet is dropped, no FIN, no RST either way.
                if subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root",
                                   "blackhole"], capture_output=True).returncode:
                    pytest.skip("no blackhole qdisc")
                start = time.monotonic()
                # Idle: a probe after 1 s, unanswered for 2 s. Without the socket options
                # nothing is ever sent and the session stays online for ever.
                await eventually(lambda: server.sessions.lookup(phone) is None, timeout=8)
                assert time.monotonic() - start < 6
            finally:
                client.writer.transport.abort()
