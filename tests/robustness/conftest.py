"""A server with a plain-TCP c2s listener carrying the limits under test, and a raw async
client that logs in with PLAIN over it (a listener without a TLS table offers PLAIN: the
operator's explicit choice, fine on loopback)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import RawClient, free_port, running_server

HEADER = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


@contextlib.asynccontextmanager
async def limited_server(tmp: Path, listener: str = "", extra: str = "",
                         users: tuple[str, ...] = ("alice", "bob")) -> AsyncIterator[Server]:
    """``running_server`` plus a plain listener (``server.plain_port``) with ``listener``
    options; ``extra`` is more TOML (shapers, access rules)."""
    port = free_port()
    plain = f"""
[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
{listener}
"""
    async with running_server(tmp, extra=plain + "\n" + extra) as server:
        server.plain_port = port  # type: ignore[attr-defined]
        for user in users:
            await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
        yield server


class Client(RawClient):
    @classmethod
    async def plain(cls, port: int, rcvbuf: int | None = None,
                    preamble: bytes = b"") -> Client:
        """A TCP connection; ``rcvbuf`` shrinks the receive buffer (a client that stops reading
        then fills up fast); ``preamble`` goes first (a PROXY header)."""
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's own sockets
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        client = cls(reader, writer)
        if preamble:
            await client.send(preamble)
        return client

    async def login(self, user: str, password: str = "pw", resource: str = "r") -> None:
        await self.open_stream()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                        f"{token}</auth>")
        await self.expect(r"<success[^>]*/>")
        await self.open_stream()
        await self.send(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:"
                        f"xmpp-bind'><resource>{resource}</resource></bind></iq>")
        await self.expect(r"</jid>")

    async def ping(self, ident: str = "ping", timeout: float = 10.0) -> None:
        """A round trip: everything sent before it has been processed when it returns."""
        await self.send(f"<iq type='get' id='{ident}' to='localhost'>"
                        "<ping xmlns='urn:xmpp:ping'/></iq>")
        await self.expect(f"id=\"{ident}\"|id='{ident}'", timeout)
