"""Each limit acting over real sockets: the shaper's measured rate, a client that does not read
cut off, an endless tag refused, max_connections, the PROXY protocol feeding per-IP limits."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from pathlib import Path

import pytest

from suricate.jid import JID
from suricate.net import connection as connection_module
from suricate.net.proxy_protocol import v1_header, v2_header
from tests.e2e.harness import eventually
from tests.robustness.conftest import HEADER, Client, limited_server

RATE = 100_000  # bytes per second


async def _time_to_read(port: int, total: int, user: str = "alice") -> float:
    """Seconds the server takes to read ``total`` bytes from one logged-in client, sent in
    10 kB rounds of whitespace, each followed by a ping the client waits for (so no round
    is read before the previous one is answered, and the shaper's last debt is small)."""
    client = await Client.plain(port)
    try:
        await client.login(user)
        chunk = 10_000
        start = time.monotonic()
        for i in range(total // chunk):
            # Whitespace between top-level elements is allowed (RFC 6120 §11.7) and costs the
            # parser nothing: what is measured is the reading.
            await client.send(b" " * (chunk - 100))
            await client.ping(f"p{i}")
        return time.monotonic() - start
    finally:
        await client.close()


async def test_the_shaper_holds_a_connection_to_max_rate(tmp_path: Path) -> None:
    async with limited_server(tmp_path, listener='shaper = "limited"',
                              extra=f"[shaper.limited]\nmax_rate = {RATE}") as server:
        port = server.plain_port  # type: ignore[attr-defined]
        total = 3 * RATE
        elapsed = await _time_to_read(port, total)
        # The bucket holds one second of traffic (the login spent a little of it): the rest
        # goes at max_rate.
        measured = (total - RATE) / elapsed
        assert 0.85 * RATE < measured < 1.15 * RATE, (elapsed, measured)
        # The shaper is per connection: two clients at once each get the full rate.
        both = await asyncio.gather(_time_to_read(port, 2 * RATE, "alice"),
                                    _time_to_read(port, 2 * RATE, "bob"))
        assert all(0.8 < t < 1.3 for t in both), both


async def test_without_a_shaper_reading_is_not_limited(tmp_path: Path) -> None:
    async with limited_server(tmp_path) as server:
        elapsed = await _time_to_read(server.plain_port, 3 * RATE)  # type: ignore[attr-defined]
        assert elapsed < 1.0


async def test_a_client_that_does_not_read_is_cut_off(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "suricate")
    monkeypatch.setattr(connection_module, "MAX_WRITE_BUFFER", 256 * 1024)
    monkeypatch.setattr(connection_module, "CLOSE_TIMEOUT", 0.5)
    async with limited_server(tmp_path) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        reader = await Client.plain(port, rcvbuf=4096)
        await reader.login("bob")
        sender = await Client.plain(port)
        await sender.login("alice")
        body = "x" * 4000
        # bob never reads again; alice keeps writing to him until the server gives up on him.
        deadline = time.monotonic() + 20
        while any(c.handler is not None and getattr(c.handler, "jid", None) is not None
                  and c.handler.jid.local == "bob"
                  for listener in server.listeners for c in listener.connections):
            assert time.monotonic() < deadline, "bob was never cut off"
            await sender.send("".join(f"<message to='bob@localhost/r' type='chat'><body>{body}"
                                      "</body></message>" for _ in range(20)))
            await asyncio.sleep(0.01)
        # alice is not punished for bob's socket
        await sender.ping()
        assert server.sessions.lookup(JID.parse("bob@localhost/r")) is None
        assert any("policy-violation" in r.getMessage() and "bob@localhost" in r.getMessage()
                   for r in caplog.records)
        await sender.close()
        await reader.close()


async def test_one_stanza_larger_than_the_output_cap_reaches_a_client_that_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap is for a client that does not read. A single message larger than it (accepted:
    # no max_stanza_size) waits in our buffer however fast the client reads; cutting the
    # client off for it would do so again at every login (archive, offline storage).
    monkeypatch.setattr(connection_module, "MAX_WRITE_BUFFER", 64 * 1024)
    async with limited_server(tmp_path) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        reader = await Client.plain(port)
        await reader.login("bob")
        # A small kernel send buffer, as when the network and not loopback is the bottleneck:
        # most of the message waits in the server's own buffer while bob reads it.
        for listener in server.listeners:
            for conn in listener.connections:
                conn.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sender = await Client.plain(port)
        await sender.login("alice")
        body = "x" * 1_000_000
        await sender.send(f"<message to='bob@localhost/r' type='chat'><body>{body}</body>"
                          "</message>")
        await reader.expect(f"<body>{body}</body>", timeout=10)
        await reader.ping()  # still connected
        await sender.close()
        await reader.close()


async def test_an_endless_start_tag_is_refused(tmp_path: Path) -> None:
    async with limited_server(tmp_path, listener="max_stanza_size = 10000") as server:
        client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
        await client.login("alice")
        # One tag that never ends: expat reports nothing until it does, yet it is refused as
        # soon as it is larger than a stanza may be.
        await client.send("<message to='bob@localhost' x='" + "y" * 11000)
        text = (await client.closed()).decode()
        assert "<policy-violation" in text and text.endswith("</stream:stream>")


async def test_an_endless_stream_header_is_refused(tmp_path: Path) -> None:
    async with limited_server(tmp_path, listener="max_stanza_size = 10000") as server:
        client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
        await client.send("<?xml version='1.0'?><stream:stream to='localhost' a='" + "y" * 11000)
        text = (await client.closed()).decode()
        assert "<policy-violation" in text


async def test_max_connections_refuses_the_newest(tmp_path: Path) -> None:
    async with limited_server(tmp_path, listener="max_connections = 3") as server:
        port = server.plain_port  # type: ignore[attr-defined]
        kept = [await Client.plain(port) for _ in range(3)]
        for client in kept:
            await client.open_stream()
        refused = await Client.plain(port)
        assert await refused.closed(timeout=5) == b""
        for client in kept:
            await client.close()
        await eventually(lambda: not any(listener.connections for listener in server.listeners))
        again = await Client.plain(port)  # the slots are free again
        await again.open_stream()
        await again.close()


@pytest.mark.parametrize("version", [1, 2])
async def test_proxy_protocol_gives_the_real_address(tmp_path: Path, version: int) -> None:
    async with limited_server(tmp_path, listener="proxy_protocol = true") as server:
        port = server.plain_port  # type: ignore[attr-defined]
        src, dst = ("203.0.113.7", 51000), ("198.51.100.1", 5222)
        header = v1_header(src, dst) if version == 1 else v2_header(src, dst)
        client = await Client.plain(port, preamble=header)
        await client.login("alice")
        peers = {c.peer for listener in server.listeners for c in listener.connections}
        assert src in peers
        # LOCAL (a health check of the proxy): the socket's own address is kept
        local = await Client.plain(port, preamble=v2_header(None, None))
        await local.open_stream()
        await local.close()
        await client.close()


@pytest.mark.parametrize("preamble", [
    HEADER.encode(),  # straight to the server, around the proxy
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    b"PROXY TCP4 1.2.3.4\r\n",
    b"PROXY " + b"x" * 200,
    b"\r\n\r\n\x00\r\nQUIT\n\x23\x11\x00\x0c" + b"\x00" * 12,  # v2, unknown command
])
async def test_proxy_protocol_refuses_a_bad_or_missing_header(tmp_path: Path,
                                                              preamble: bytes) -> None:
    async with limited_server(tmp_path, listener="proxy_protocol = true") as server:
        client = await Client.plain(server.plain_port, preamble=preamble)  # type: ignore[attr-defined]
        assert await client.closed(timeout=5) == b""


async def test_registration_rate_limit_per_proxied_address(tmp_path: Path) -> None:
    async with limited_server(tmp_path, listener="proxy_protocol = true",
                              extra="") as server:
        port = server.plain_port  # type: ignore[attr-defined]

        async def register(ip: str, user: str) -> str:
            client = await Client.plain(port, preamble=v1_header((ip, 4000), ("10.0.0.1", 5222)))
            try:
                await client.open_stream()
                await client.send(f"<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
                                  f"<username>{user}</username><password>secret-{user}</password>"
                                  "</query></iq>")
                return await client.expect(r"<iq [^>]*id=.reg.*?(/>|</iq>)")
            finally:
                await client.close()

        assert "type=\"result\"" in await register("203.0.113.10", "carol")
        # general.registration_timeout (600 s): the same address is refused, another is not
        assert "resource-constraint" in await register("203.0.113.10", "dave")
        assert "type=\"result\"" in await register("203.0.113.11", "erin")


async def test_silent_or_slow_http_connections_do_not_hold_the_listener(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from suricate.net.http import web as web_module
    from tests.web.conftest import web_server

    # Cowboy's request_timeout and read_body period, made short for the test.
    monkeypatch.setattr(web_module, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(web_module, "BODY_TIMEOUT", 0.5)
    bosh = '[[listen.http.handlers.mod_bosh]]\nhost = "_"\npath = "/http-bind"\n'
    async with web_server(tmp_path, handlers=bosh, modules_extra="[modules.mod_bosh]\n",
                          listener_extra="transport.max_connections = 3\n") as server:
        port = server.http_port  # type: ignore[attr-defined]
        # Every slot of max_connections taken: one silent socket, one sending its headers a
        # byte at a time, one sending its body so.
        silent = await asyncio.open_connection("127.0.0.1", port)
        slow_head = await asyncio.open_connection("127.0.0.1", port)
        slow_body = await asyncio.open_connection("127.0.0.1", port)
        slow_body[1].write(b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\n"
                           b"Content-Length: 1000\r\n\r\n<body")

        async def dribble() -> None:
            for _ in range(40):
                for _reader, writer in (slow_head, slow_body):
                    writer.write(b"x")
                await asyncio.sleep(0.1)

        slow_head[1].write(b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        dribbling = asyncio.create_task(dribble())
        try:
            # Each is closed by the server (the slow body with 408), well before the hour
            # aiohttp would have given them.
            assert await asyncio.wait_for(silent[0].read(), 5) == b""
            got = await asyncio.wait_for(slow_head[0].read(), 5)
            assert got == b"", got
            answer = await asyncio.wait_for(slow_body[0].read(), 5)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            # ... and a BOSH client gets in.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            body = (b"<body rid='1' to='localhost' wait='1' hold='1' ver='1.6' "
                    b"xmlns='http://jabber.org/protocol/httpbind'/>")
            writer.write(b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            answer = await asyncio.wait_for(reader.read(4096), 5)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            writer.close()
        finally:
            dribbling.cancel()
            for _, writer in (silent, slow_head, slow_body):
                writer.close()


async def test_a_bosh_client_that_stops_asking_is_held_to_the_output_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aiohttp

    from suricate.net.http import bosh as bosh_module
    from tests.e2e.harness import connect, disconnect
    from tests.web.conftest import web_server
    from tests.web.test_bosh import BOSH, HTTPBIND, Bosh

    monkeypatch.setattr(bosh_module, "MAX_WRITE_BUFFER", 64 * 1024)
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n"
                          "inactivity = 600\n") as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        created = await c.post(
            f"<body xmlns='{HTTPBIND}' content='text/xml; charset=utf-8' hold='1' rid='1000'"
            " to='localhost' ver='1.6' wait='5' xml:lang='en' xmpp:version='1.0'"
            " xmlns:xmpp='urn:xmpp:xbosh'/>")
        c.sid = created.split("sid='", 1)[1].split("'", 1)[0]
        creds = base64.b64encode(b"\0alice\0secret").decode()
        assert "<success" in await c.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")
        await c.send(xmpp_restart="true", xmlns_xmpp="urn:xmpp:xbosh", to="localhost")
        await c.send("<iq xmlns='jabber:client' type='set' id='b1'>"
                     "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource>"
                     "</bind></iq>")
        alice = JID.parse("alice@localhost/web")
        assert server.sessions.lookup(alice) is not None
        # alice's client stops asking (no request held); bob writes to her.
        bob = await connect(server, "bob@localhost/c2s", "secret")
        for i in range(100):
            bob.send_message(mto=str(alice), mbody=f"{i} " + "x" * 1000, mtype="chat")
        # Past the cap her session ends (policy-violation), as on TCP, instead of every
        # message waiting in memory for a request that may come only after `inactivity`.
        await eventually(lambda: server.sessions.lookup(alice) is None, timeout=10)
        answer = await c.send()
        assert "type='terminate'" in answer and "policy-violation" in answer, answer[-300:]
        await disconnect(bob)
