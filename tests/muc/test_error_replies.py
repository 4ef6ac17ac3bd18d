"""An occupant whose address answers the room's stanzas with a delivery error leaves the room
(status 333, XEP-0045 §15.6: "removed because of an error reply (for example when an s2s link
fails between the MUC and the removed user's server)"). The case is federation's: the user's
server crashed or restarted and never sent the room the occupant's unavailable presence, so
each groupchat message comes back (RFC 6121 §8.5.3.2.1: service-unavailable for a groupchat
to a full JID with no session; RFC 6120 §8.3.3.16: remote-server-not-found from our own s2s
layer). Without this the ghost occupant stays forever. In the first two tests bob's client
plays his server; the last one has a real s2s link that fails."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from slixmpp import JID as SJID
from slixmpp.xmlstream import ET

from suricate.core.server import Server
from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element
from tests.e2e.harness import disconnect, free_port
from tests.muc.conftest import (
    SERVICE,
    codes,
    create_instant,
    error_message,
    next_groupchat,
    presence_from,
    user,
)
from tests.s2s.harness import federated_server, federated_toml, login, register

ROOM = f"errors@{SERVICE}"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _bounce(client: object, to: str, condition: str) -> None:
    """A message error from ``client`` to ``to``, as a server returns it (RFC 6120 §8.3)."""
    msg = client.make_message(mto=to, mtype="error")  # type: ignore[attr-defined]
    error = ET.SubElement(msg.xml, "{jabber:client}error", type="cancel")
    ET.SubElement(error, f"{{{STANZAS}}}{condition}")
    msg.send()


async def test_delivery_error_from_an_occupant_removes_it_with_333(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    await presence_from(alice, f"{ROOM}/Bob")
    # An error that says nothing about delivery (a client refusing one private message)
    # leaves the occupant in.
    _bounce(bob, f"{ROOM}/Alice", "not-acceptable")
    alice.send_message(mto=ROOM, mbody="still with us", mtype="groupchat")
    assert (await next_groupchat(bob))["body"] == "still with us"
    # The error to a groupchat copy: it comes back to the sender's occupant JID.
    _bounce(bob, f"{ROOM}/Alice", "service-unavailable")
    gone = await presence_from(alice, f"{ROOM}/Bob", "unavailable")
    assert codes(gone) == {"333"}
    assert gone["muc"]["role"] == "none"
    # The room forgot him: a message from his address is refused (§7.4, occupants only).
    bob.send_message(mto=ROOM, mbody="still here?", mtype="groupchat")
    refused = await error_message(bob)
    assert refused["error"]["condition"] == "not-acceptable"
    await disconnect(alice, bob)


async def test_delivery_error_to_the_room_jid_removes_the_occupant(server: Server) -> None:
    """Errors to the room's bare JID (to a message the room sent itself, §7.2.16 subject,
    invitations) count too: remote-server-not-found is what our s2s layer bounces."""
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    await presence_from(alice, f"{ROOM}/Bob")
    _bounce(bob, ROOM, "remote-server-not-found")
    gone = await presence_from(alice, f"{ROOM}/Bob", "unavailable")
    assert codes(gone) == {"333"}
    await disconnect(alice, bob)


async def test_an_unreachable_remote_occupant_leaves_once(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """bob@beta.test joins over s2s, then beta.test cannot be reached (nothing listens): the
    room's presences to him bounce (remote-server-not-found), he leaves with 333; the copy of
    that unavailable presence sent to him bounces at once too (the link is in its back-off),
    and that error must not start his removal again: before, it recursed until Python's
    limit, and alice got one unavailable presence per level."""
    c2s, s2s = free_port(), free_port()
    toml = federated_toml(tmp_path, "alpha.test", c2s, s2s, {"beta.test": ("127.0.0.1",
                                                                            free_port())},
                          "dialback", None, extra="[modules.mod_muc]",
                          outgoing_extra="state_timeout = 1000\n")
    room = "lounge@conference.alpha.test"
    async with federated_server(tmp_path, "alpha.test", toml, c2s, s2s) as server:
        await register(server, "alice")
        alice = await login(server, "alice@alpha.test/a", plugins=("xep_0030", "xep_0004",
                                                                    "xep_0045"))
        alice.muc_presences = asyncio.Queue()  # type: ignore[attr-defined]
        alice.add_event_handler("groupchat_presence", alice.muc_presences.put_nowait)
        await create_instant(alice, room, "Alice")
        # bob's join, as beta.test's s2s stream would deliver it
        join = Element("presence", ns.CLIENT, {"from": "bob@beta.test/b",
                                                "to": f"{room}/Bob"})
        join.add("x", "http://jabber.org/protocol/muc")
        server.router.route(JID.parse("bob@beta.test/b"), JID.parse(f"{room}/Bob"), join)
        await presence_from(alice, f"{room}/Bob")
        gone = await presence_from(alice, f"{room}/Bob", "unavailable", timeout=10)
        assert codes(gone) == {"333"}
        await asyncio.sleep(0.3)
        assert alice.muc_presences.empty()  # type: ignore[attr-defined]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        await disconnect(alice)
