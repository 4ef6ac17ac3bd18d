"""The server's side of the closing handshake (RFC 6120 §4.4): after its closing tag it sends a
FIN and keeps reading until the client closes, so a client that was still writing reads the
end of the stream instead of a reset that throws it away; a client that never closes is cut
off after CLOSE_TIMEOUT."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.net import connection as connection_module
from tests.e2e.harness import eventually
from tests.robustness.conftest import Client, limited_server

PING = b"<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"


async def _read_to_the_end(client: Client) -> bytes:
    got = b""
    while chunk := await asyncio.wait_for(client.reader.read(65536), 5):
        got += chunk
    return got


async def test_a_replaced_client_that_keeps_writing_still_reads_its_conflict(
        tmp_path: Path) -> None:
    async with limited_server(tmp_path) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        old = await Client.plain(port)
        await old.login("alice", resource="phone")
        writing = True

        async def keep_writing() -> None:
            # A phone on a slow link: its stanzas are on the way when the server closes.
            while writing and not old.writer.is_closing():
                old.writer.write(PING)
                await asyncio.sleep(0)

        task = asyncio.ensure_future(keep_writing())
        await asyncio.sleep(0.05)
        new = await Client.plain(port)
        await new.login("alice", resource="phone")
        try:
            # Without the half-close, the kernel answered the pings that arrived after the
            # close with a reset, and the client's kernel dropped the unread <conflict/>.
            got = await _read_to_the_end(old)
            assert b"<conflict" in got and got.endswith(b"</stream:stream>")
        finally:
            writing = False
            await task
            old.writer.transport.abort()
            await new.close()


def _connections(server: Server) -> int:
    port = server.plain_port  # type: ignore[attr-defined]
    return sum(len(listener.connections) for listener in server.listeners
               if listener.port == port)


async def test_a_client_that_never_closes_is_cut_off_after_close_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module, "CLOSE_TIMEOUT", 0.5)
    async with limited_server(tmp_path) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        polite = await Client.plain(port)
        await polite.login("alice", resource="polite")
        silent = await Client.plain(port)
        await silent.login("bob", resource="silent")
        for user, resource in (("alice", "polite"), ("bob", "silent")):
            session = server.sessions.lookup(JID.parse(f"{user}@localhost/{resource}"))
            assert session is not None
            session.close()
        start = time.monotonic()
        # The client that answers our FIN with its own goes at once...
        assert (await _read_to_the_end(polite)).endswith(b"</stream:stream>")
        polite.writer.close()
        await eventually(lambda: _connections(server) == 1, timeout=0.4)
        # ... the one that reads but never closes is aborted after CLOSE_TIMEOUT.
        assert (await _read_to_the_end(silent)).endswith(b"</stream:stream>")
        await eventually(lambda: _connections(server) == 0, timeout=3)
        assert time.monotonic() - start >= 0.45
        silent.writer.transport.abort()
