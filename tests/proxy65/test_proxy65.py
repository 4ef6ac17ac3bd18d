"""mod_proxy65 (XEP-0065 §6): the service's IQs, the SOCKS5 listener spoken to byte by byte
(RFC 1928), the relay's pairing, activation errors, back-pressure, shaper, timeouts and
closes; then slixmpp's xep_0065 between two real clients over TLS moving 1 MB through it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from suricate.config import parse_config
from suricate.config.spec import ConfigError
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_proxy65 import BYTESTREAMS, ModProxy65
from suricate.modules.mod_proxy65.socks5 import WRITE_BUFFER, Socks5Connection
from suricate.xml import ns
from suricate.xml.element import Element
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    connect,
    disconnect,
    eventually,
    running_server,
)
from tests.modules.services_harness import FakeSession, error_condition, module_server

PROXY = "proxy.localhost"
PLUGINS = ("xep_0030", "xep_0065")
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def proxy_toml(**opts: object) -> str:
    lines = [f"{key} = {value!r}" if isinstance(value, int) else f'{key} = "{value}"'
             for key, value in {"ip": "127.0.0.1", "port": 0, **opts}.items()]
    return "[modules.mod_disco]\n[modules.mod_proxy65]\n" + "\n".join(lines) + "\n"


def key_of(sid: str, requester: str, target: str) -> str:
    return hashlib.sha1(f"{sid}{requester}{target}".encode()).hexdigest()


def proxy_of(server: Server) -> ModProxy65:
    module = server.modules["mod_proxy65"]
    assert isinstance(module, ModProxy65)
    return module


async def socks(port: int, key: str, bufsize: int | None = None) -> Stream:
    """A SOCKS5 client as XEP-0065 §6.3.2 has it: no authentication, CONNECT to the hash;
    ``bufsize``: its socket buffers (so that the kernel does not absorb what a test sends)."""
    sock = socket.socket()
    if bufsize is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"\x05\x01\x00")
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"
    writer.write(b"\x05\x01\x00\x03\x28" + key.encode() + b"\x00\x00")
    reply = await asyncio.wait_for(reader.readexactly(47), 5)
    # Success, and BND.ADDR/BND.PORT are what was asked for (XEP-0065 §5.3.2).
    assert reply == b"\x05\x00\x00\x03\x28" + key.encode() + b"\x00\x00"
    return reader, writer


async def raw(port: int, data: bytes) -> bytes:
    """Send ``data`` and read everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(100), 5) + await asyncio.wait_for(
            reader.read(100), 5)
    finally:
        writer.close()


def activate(sid: str, target: str) -> Element:
    query = Element("query", BYTESTREAMS, {"sid": sid})
    query.add("activate", BYTESTREAMS, text=target)
    return query


async def pair(server: Server, sid: str, requester: FakeSession, target: str,
               bufsize: int | None = None) -> tuple[Stream, Stream]:
    """Target then requester connected with the hash, and the bytestream activated."""
    port = proxy_of(server).port
    key = key_of(sid, str(requester.jid), target)
    tgt = await socks(port, key, bufsize)
    req = await socks(port, key, bufsize)
    answer = await requester.iq("set", activate(sid, target), PROXY)
    assert answer.get("type") == "result", answer
    return tgt, req


async def test_the_service_is_listed_and_announces_its_streamhost(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml(name="Relay")) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        items = await alice.iq("get", Element("query", ns.DISCO_ITEMS), "localhost")
        assert PROXY in [item.get("jid") for item in items.find("query").elements()]
        info = (await alice.iq("get", Element("query", ns.DISCO_INFO), PROXY)).find("query")
        identity = info.find("identity")
        assert (identity.get("category"), identity.get("type"), identity.get("name")) == (
            "proxy", "bytestreams", "Relay")
        assert BYTESTREAMS in [f.get("var") for f in info.find_all("feature")]
        answer = await alice.iq("get", Element("query", BYTESTREAMS), PROXY)
        host = answer.find("query").find("streamhost")
        assert host.attrs == {"jid": PROXY, "host": "127.0.0.1",
                              "port": str(proxy_of(server).port)}
        assert proxy_of(server).port > 0
    # A wildcard address announces the domain; hostname (NAT) wins over both.
    async with module_server(tmp_path, proxy_toml(ip="0.0.0.0")) as server:
        assert proxy_of(server).announced_host("localhost") == "localhost"
    async with module_server(tmp_path, proxy_toml(hostname="203.0.113.7")) as server:
        assert proxy_of(server).announced_host("localhost") == "203.0.113.7"


async def test_activation_errors(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml()) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        mallory = FakeSession(server, "mallory@localhost/pc")
        port = proxy_of(server).port
        bob = "bob@localhost/phone"

        async def activate_as(who: FakeSession, query: Element) -> str | None:
            return error_condition(await who.iq("set", query, PROXY))

        # XEP-0065 §6.3.4: nobody connected with the hash
        assert await activate_as(alice, activate("s1", bob)) == "item-not-found"
        tgt = await socks(port, key_of("s1", str(alice.jid), bob))
        # only one party connected
        assert await activate_as(alice, activate("s1", bob)) == "not-allowed"
        req = await socks(port, key_of("s1", str(alice.jid), bob))
        # a third connection with the same hash is refused (RFC 1928 X'02')
        assert await raw(port, b"\x05\x01\x00\x05\x01\x00\x03\x28"
                         + key_of("s1", str(alice.jid), bob).encode() + b"\x00\x00"
                         ) == b"\x05\x00\x05\x02\x00\x01" + bytes(6)
        # the hash is the requester's: someone else naming the same sid and target finds
        # nothing to activate
        assert await activate_as(mallory, activate("s1", bob)) == "item-not-found"
        assert await activate_as(alice, Element("query", BYTESTREAMS, {"sid": "s1"})) \
            == "bad-request"
        assert await activate_as(alice, activate("", bob)) == "bad-request"
        assert await activate_as(alice, activate("s1", "@@bad")) == "jid-malformed"
        assert await activate_as(alice, activate("s1", bob)) is None
        req[1].write(b"ping")
        assert await asyncio.wait_for(tgt[0].readexactly(4), 5) == b"ping"
        # activated: nothing left to activate, and no third party joins the relay
        assert await activate_as(alice, activate("s1", bob)) == "item-not-found"
        assert await raw(port, b"\x05\x01\x00\x05\x01\x00\x03\x28"
                         + key_of("s1", str(alice.jid), bob).encode() + b"\x00\x00"
                         ) == b"\x05\x00\x05\x02\x00\x01" + bytes(6)
        for _, writer in (tgt, req):
            writer.close()


async def test_access_and_max_connections(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml(access="none")) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        for type_, query in (("get", Element("query", BYTESTREAMS)),
                             ("set", activate("s", "bob@localhost/b"))):
            assert error_condition(await alice.iq(type_, query, PROXY)) == "forbidden"
    async with module_server(tmp_path, proxy_toml(max_connections=1)) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        other = FakeSession(server, "alice@localhost/laptop")
        first = await pair(server, "a", alice, "bob@localhost/b")
        port = proxy_of(server).port
        key = key_of("b", str(other.jid), "bob@localhost/b")
        second = (await socks(port, key), await socks(port, key))
        # one bytestream at a time per account, whichever of its resources asks
        answer = await other.iq("set", activate("b", "bob@localhost/b"), PROXY)
        assert error_condition(answer) == "resource-constraint"
        for _, writer in first:
            writer.close()
        await asyncio.sleep(0.1)
        answer = await other.iq("set", activate("b", "bob@localhost/b"), PROXY)
        assert answer.get("type") == "result"
        for _, writer in second:
            writer.close()


async def test_relay_both_ways_and_close(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml()) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        (t_reader, t_writer), (r_reader, r_writer) = await pair(
            server, "x", alice, "bob@localhost/b")
        payload = os.urandom(300_000)
        r_writer.write(payload)
        r_writer.write_eof()  # the requester is done: the target reads everything, then EOF
        assert await asyncio.wait_for(t_reader.read(), 5) == payload
        t_writer.write(b"thanks")  # the other direction still works after a half-close
        t_writer.close()
        assert await asyncio.wait_for(r_reader.read(), 5) == b"thanks"
        assert not proxy_of(server).streamhost.relays
        assert not proxy_of(server).active


async def test_a_lost_side_closes_the_other(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml()) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        (t_reader, _), (_, r_writer) = await pair(server, "x", alice, "bob@localhost/b")
        r_writer.transport.abort()  # a reset, not a goodbye
        assert await asyncio.wait_for(t_reader.read(), 5) == b""
        assert not proxy_of(server).streamhost.relays


async def test_bad_socks_input_gets_the_rfc_1928_reply(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml()) as server:
        port = proxy_of(server).port
        hello = b"\x05\x01\x00"
        failure = bytes((0, 1)) + bytes(6)  # RSV, ATYP IPv4, 0.0.0.0:0
        # SOCKS4 (or anything not version 5): RFC 1928 has no reply, the connection ends
        assert await raw(port, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00") == b""
        # no acceptable method (only username/password offered): X'FF'
        assert await raw(port, b"\x05\x01\x02") == b"\x05\xff"
        key = b"\x28" + b"a" * 40 + b"\x00\x00"
        assert await raw(port, hello + b"\x05\x02\x00\x03" + key) == b"\x05\x00\x05\x07" + failure
        assert await raw(port, hello + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50") == \
            b"\x05\x00\x05\x08" + failure
        assert await raw(port, hello + b"\x05\x01\x00\x03\x09localhost\x00\x00") == \
            b"\x05\x00\x05\x04" + failure
        assert await raw(port, hello + b"\x04\x01\x00\x03" + key) == b"\x05\x00\x05\x01" + failure
        assert await raw(port, b"\x05\xff" + os.urandom(700)) == b""  # no end: cut
        # the handshake split over many reads is fine, and the others were not harmed
        alice = FakeSession(server, "alice@localhost/pc")
        (t_reader, t_writer), (_, r_writer) = await pair(server, "y", alice, "bob@localhost/b")
        r_writer.write(b"still here")
        assert await asyncio.wait_for(t_reader.readexactly(10), 5) == b"still here"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in b"\x05\x01\x00":
            writer.write(bytes((byte,)))
            await writer.drain()
            await asyncio.sleep(0.01)
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"
        for writer_ in (writer, t_writer, r_writer):
            writer_.close()


async def test_connections_not_activated_time_out(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml(activation_timeout=1)) as server:
        port = proxy_of(server).port
        started = time.monotonic()
        silent = await asyncio.open_connection("127.0.0.1", port)  # never says hello
        unpaired, _ = await socks(port, "b" * 40)
        paired = [await socks(port, "c" * 40), await socks(port, "c" * 40)]  # never activated
        for reader in (silent[0], unpaired, *(r for r, _ in paired)):
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.9 < time.monotonic() - started < 4
        assert not proxy_of(server).streamhost.pending
        assert not proxy_of(server).streamhost.waiting


async def test_max_pending_closes_what_is_over(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml(max_pending=2)) as server:
        port = proxy_of(server).port
        first = await socks(port, "d" * 40)
        second = await asyncio.open_connection("127.0.0.1", port)
        assert await raw(port, b"\x05\x01\x00") == b""  # the third waiting: closed at once
        second[1].close()
        await asyncio.sleep(0.1)
        third = await socks(port, "d" * 40)  # room again once one went
        for _, writer in (first, third):
            writer.close()


async def test_an_idle_bytestream_is_closed(tmp_path: Path) -> None:
    async with module_server(tmp_path, proxy_toml(idle_timeout=1)) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        (t_reader, _), (r_reader, r_writer) = await pair(server, "i", alice, "bob@localhost/b")
        started = time.monotonic()
        await asyncio.sleep(0.6)
        r_writer.write(b"x")  # traffic moves the deadline
        assert await t_reader.readexactly(1) == b"x"
        assert await asyncio.wait_for(t_reader.read(), 5) == b""
        assert await asyncio.wait_for(r_reader.read(), 5) == b""
        assert 1.5 < time.monotonic() - started < 4.5


async def test_a_slow_receiver_holds_the_sender_back(tmp_path: Path) -> None:
    # Small socket buffers so that the kernel does not absorb the test's megabytes.
    async with module_server(tmp_path, proxy_toml(recbuf=16384, sndbuf=16384)) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        (t_reader, t_writer), (_, r_writer) = await pair(server, "p", alice, "bob@localhost/b",
                                                         bufsize=16384)
        t_writer.transport.set_write_buffer_limits(0)
        payload = os.urandom(3 * 1024 * 1024)
        r_writer.transport.set_write_buffer_limits(high=65536)
        r_writer.write(payload)
        with pytest.raises(TimeoutError):  # the target does not read: the requester stalls
            await asyncio.wait_for(r_writer.drain(), 0.5)
        # What the server holds for the target stays bounded, and the requester is not read.
        conns = [c for relay in proxy_of(server).streamhost.relays for c in (relay.a, relay.b)]
        target_side = next(c for c in conns if c.transport.get_write_buffer_size())
        assert isinstance(target_side, Socks5Connection)
        assert target_side.transport.get_write_buffer_size() <= WRITE_BUFFER + 262144
        assert target_side.peer is not None and not target_side.peer.transport.is_reading()
        assert r_writer.transport.get_write_buffer_size() > 1024 * 1024
        # The target reads at last: everything arrives, in order.
        received = await asyncio.wait_for(t_reader.readexactly(len(payload)), 20)
        assert received == payload
        await asyncio.wait_for(r_writer.drain(), 5)
        r_writer.close()
        t_writer.close()


async def test_the_shaper_limits_each_side(tmp_path: Path) -> None:
    toml = '[shaper.slow]\nmax_rate = 200000\n' + proxy_toml(shaper="slow", recbuf=16384)
    async with module_server(tmp_path, toml) as server:
        alice = FakeSession(server, "alice@localhost/pc")
        (t_reader, t_writer), (_, r_writer) = await pair(server, "s", alice, "bob@localhost/b")
        started = time.monotonic()
        # A second's worth at once (the burst after a quiet time), then 200 kB/s: a read
        # is forwarded, then paid for by not reading, so the last read is not waited for.
        r_writer.write(bytes(500_000))
        await asyncio.wait_for(t_reader.readexactly(500_000), 10)
        assert 1.2 < time.monotonic() - started < 4
        r_writer.close()
        t_writer.close()


def test_check_config_names_access_rules_and_shapers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failure:
        parse_config('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'
                     '[modules.mod_proxy65]\naccess = "friends"\nshaper = "turbo"\n', tmp_path)
    assert str(failure.value).splitlines() == [
        "modules.mod_proxy65.access: access rule 'friends' is not defined in [access]",
        "modules.mod_proxy65.shaper: shaper 'turbo' is not defined in [shaper]"]


async def transfer(requester: Client, target: Client, size: int) -> int:
    """slixmpp's xep_0065 from ``requester`` to ``target`` through the proxy it discovers:
    ``size`` random bytes one way, checked byte for byte, an answer the other way, then the
    requester closes. Returns the port the proxy announced."""
    target.plugin["xep_0065"].auto_accept = True
    got, answer = bytearray(), bytearray()
    closed = asyncio.get_running_loop().create_future()
    conns: list[Any] = []
    handlers = {"socks5_data": got.extend, "socks5_stream": conns.append,
                "socks5_closed": lambda _: closed.done() or closed.set_result(True)}
    for event, handler in handlers.items():
        target.add_event_handler(event, handler)
    requester.add_event_handler("socks5_data", answer.extend)
    try:
        proxies = await requester.plugin["xep_0065"].discover_proxies(timeout=5)
        assert [str(jid) for jid in proxies] == [PROXY]
        host, port = proxies[next(iter(proxies))]
        assert host == "127.0.0.1"
        sock = await asyncio.wait_for(
            requester.plugin["xep_0065"].handshake(target.boundjid.full, timeout=5), 10)
        assert sock is not None
        payload = os.urandom(size)
        for at in range(0, len(payload), 65536):
            await sock.write(payload[at:at + 65536])
        await eventually(lambda: len(got) >= len(payload), 10)
        assert bytes(got) == payload
        await conns[0].write(b"received")
        await eventually(lambda: bytes(answer) == b"received")
        sock.transport.close()  # (the plugin's deactivate() calls a close() it lacks)
        await asyncio.wait_for(closed, 5)
        return int(port)
    finally:
        for event, handler in handlers.items():
            target.del_event_handler(event, handler)
        requester.del_event_handler("socks5_data", answer.extend)


async def test_slixmpp_file_transfer_through_the_proxy(tmp_path: Path) -> None:
    """XEP-0065 as slixmpp's plugin does it, both clients over direct TLS: proxy discovery
    from the server's disco#items, the target connects, the requester connects and activates;
    1 MB goes one way and an answer the other, then the requester closes."""
    modules = MODULES_TOML + "\n" + proxy_toml().replace("[modules.mod_disco]\n", "")
    async with running_server(tmp_path, modules=modules) as server:
        for user in ("alice", "bob"):
            await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
        alice = await connect(server, "alice@localhost/pc", "pw", direct_tls=True,
                              plugins=PLUGINS)
        bob = await connect(server, "bob@localhost/phone", "pw", direct_tls=True,
                            plugins=PLUGINS)
        try:
            assert await transfer(alice, bob, 1024 * 1024) == proxy_of(server).port
        finally:
            await disconnect(alice, bob)
