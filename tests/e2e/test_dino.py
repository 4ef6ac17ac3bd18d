"""Dino 0.4.2 (Debian 12's ``dino-im``, its own library xmpp-vala) on the embedded default: the
exact stanzas it sends, replayed over real TLS, where the walk with the real client found the
server short of what the client expects (docs/compliance.md, "Dino")."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from tests.e2e.harness import RawClient, serving_the_default

ROOM = "walk@conference.localhost"
LOCK_MS = 300  # the test's room_lock_timeout (the embedded default's is 300000)


def _short_room_lock(toml: str) -> str:
    assert "room_lock_timeout = 300000" in toml
    return toml.replace("room_lock_timeout = 300000", f"room_lock_timeout = {LOCK_MS}")


@pytest.fixture
async def default(tmp_path: Path) -> AsyncIterator[Server]:
    """The embedded default's configuration on free ports (its room lock shortened), with
    alice and bob."""
    async with serving_the_default(tmp_path, ("alice", "bob"), edit=_short_room_lock) as server:
        yield server


async def session(server: Server, user: str) -> RawClient:
    """A logged-in session with Dino's resource (xmpp-vala logs in with SCRAM-SHA-1 and
    binds ``dino.<8 hex>``; PLAIN is enough here, nothing below depends on it)."""
    client = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
    await client.open_stream()
    token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
    await client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{token}</auth>")
    await client.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await client.send("<stream:stream to='localhost' xmlns='jabber:client' "
                      "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    await client.expect(r"<stream:features.*?</stream:features>")
    await client.send("<iq xmlns='jabber:client' type='set' id='bind'>"
                      "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                      "<resource>dino.29c67b7a</resource></bind></iq>")
    await client.expect(r"<iq[^>]*id=.bind.*?</iq>")
    return client


def dino_join(nick: str) -> str:
    """What "Join Channel" sends (xmpp-vala ``Muc.Module.enter``): MUC's ``<x/>``, no history
    limit, Dino's caps."""
    return (f"<presence xmlns='jabber:client' id='j-{nick}' to='{ROOM}/{nick}'>"
            "<x xmlns='http://jabber.org/protocol/muc'/>"
            "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://dino.im' "
            "ver='6ggwrxA97IN314qDlU0ic5OWBEc='/></presence>")


async def test_a_room_dino_creates_and_never_configures_opens(default: Server) -> None:
    """Dino 0.4's "Join Channel" on a new name creates the room (status 201) and never sends
    the owner form (XEP-0045 §10.1.2/§10.1.3): the room stayed locked for good and bob's
    Dino said "Room does not exist". After room_lock_timeout (Prosody's
    muc_room_lock_timeout) it opens with the default configuration."""
    alice, bob = await session(default, "alice"), await session(default, "bob")
    await alice.send(dino_join("Alice"))
    created = await alice.expect(rf"<presence[^>]*from=.{ROOM}/Alice.*?</presence>")
    assert "code=\"201\"" in created.replace("'", '"')
    # Locked (§10.1.1): nobody but the owner may enter yet.
    await bob.send(dino_join("Bob"))
    refused = await bob.expect(rf"<presence[^>]*from=.{ROOM}/Bob.*?</presence>")
    assert "item-not-found" in refused
    await asyncio.sleep(LOCK_MS / 1000 + 0.3)
    await bob.send(dino_join("Bob"))
    joined = await bob.expect(rf"<presence[^>]*from=.{ROOM}/Bob[^>]*>(?:(?!</presence>).)*"
                              r"code=.110.*?</presence>")
    assert "error" not in joined
    # ...and it is a room like any other: its messages reach everyone.
    await bob.send(f"<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='m1'>"
                   "<body>hi</body></message>")
    await alice.expect(r"<message[^>]*>(?:(?!</message>).)*<body>hi</body>")
    await alice.close()
    await bob.close()
