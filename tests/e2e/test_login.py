"""The order of a login's answers over a real socket: the bind result (RFC 6120 §7.6.1) leaves
before the modules load the new session's state, and what the client sends next waits for
them."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from suricate.core import hooks as H
from suricate.jid import JID
from tests.e2e.harness import RawClient, running_server

HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)


async def test_bind_result_leaves_before_the_session_state_is_loaded(tmp_path: Path) -> None:
    async with running_server(
        tmp_path, modules="[modules.mod_roster]\n[modules.mod_presence]"
    ) as server:
        await server.auth.register(JID.parse("alice@localhost"), "pw")
        loading = asyncio.Event()
        loaded = asyncio.Event()

        async def slow_module(acc: None, c2s: object) -> None:
            # A module whose session state comes from a slow source (an LDAP vCard, a
            # network database): the bind result must not wait for it.
            loading.set()
            await loaded.wait()
            return acc

        server.hooks.add(H.SESSION_OPENED, slow_module, 90)
        raw = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
        try:
            await raw.send(HEADER)
            await raw.expect(r"</stream:features>")
            token = base64.b64encode(b"\0alice\0pw").decode()
            await raw.send(
                f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
            )
            await raw.expect(r"<success[^>]*(/>|>.*?</success>)")
            await raw.send(HEADER)
            await raw.expect(r"</stream:features>")
            await raw.send(
                "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
                "xmpp-bind'><resource>r</resource></bind></iq>"
            )
            bound = await raw.expect(r"<iq [^>]*id=.b1.*?</iq>", timeout=2)
            assert "alice@localhost/r" in bound
            # The handlers before it may wait for the database first (PostgreSQL).
            await asyncio.wait_for(loading.wait(), 5)
            assert not loaded.is_set()
            # The next stanza is handled once the modules are done with the session.
            await raw.send("<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>")
            await asyncio.sleep(0.1)
            assert b"g1" not in raw.buffer
            loaded.set()
            await raw.expect(r"<iq [^>]*id=.g1.")
        finally:
            loaded.set()
            await raw.close()
