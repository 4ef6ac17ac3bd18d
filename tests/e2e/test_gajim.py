"""Gajim 1.7.3 and its library nbxmpp 4.2.2 (Debian 12's) on the embedded default: the exact
stanzas they send, replayed over real TLS, where the walk with the real client found the server
short of what the client expects (docs/compliance.md, "Gajim (nbxmpp)")."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import RawClient, serving_the_default

ROOM = "walk@conference.localhost"


@pytest.fixture
async def default(tmp_path: Path) -> AsyncIterator[Server]:
    """The embedded default's configuration on free ports, with alice and bob."""
    async with serving_the_default(tmp_path, ("alice", "bob")) as server:
        yield server


def reply(iq_id: str) -> str:
    """A regexp for the whole answer to our IQ ``iq_id``."""
    return rf"<iq(?=[^>]*id=.{iq_id}.)[^>]*?(/>|>.*?</iq>)"


async def session(server: Server, user: str) -> RawClient:
    """Log in as nbxmpp does on direct TLS (SCRAM is nbxmpp's choice; PLAIN is enough
    here: what follows does not depend on it), bind Gajim's resource, and return the
    stream features after authentication (``client.features``)."""
    client = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
    await client.open_stream()
    token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
    await client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{token}</auth>")
    await client.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await client.send("<stream:stream to='localhost' xmlns='jabber:client' "
                      "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    client.features = await client.expect(  # type: ignore[attr-defined]
        r"<stream:features.*?</stream:features>")
    await client.send("<iq xmlns='jabber:client' type='set' id='bind'>"
                      "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                      "<resource>gajim.walk</resource></bind></iq>")
    await client.expect(reply("bind"))
    return client


async def test_roster_versioning_on_the_default(default: Server) -> None:
    """Gajim asks for the roster with ``ver`` only when the stream features offer
    ``urn:xmpp:features:rosterver`` (nbxmpp ``Features.has_roster_version``); then a login
    with nothing changed costs an empty result (RFC 6121 §2.6.3)."""
    alice = await session(default, "alice")
    assert "urn:xmpp:features:rosterver" in alice.features  # type: ignore[attr-defined]
    await alice.send("<iq xmlns='jabber:client' type='set' id='add'><query "
                     "xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query>"
                     "</iq>")
    await alice.expect(reply("add"))
    await alice.send("<iq xmlns='jabber:client' type='get' id='r1'>"
                     "<query xmlns='jabber:iq:roster' ver=''/></iq>")
    first = await alice.expect(reply("r1"))
    assert "bob@localhost" in first
    version = re.search(r"ver=.([^'\"]+)", first)
    assert version is not None
    await alice.send(f"<iq xmlns='jabber:client' type='get' id='r2'>"
                     f"<query xmlns='jabber:iq:roster' ver='{version.group(1)}'/></iq>")
    second = await alice.expect(reply("r2"))
    assert "type=\"result\"" in second.replace("'", '"') and "<item" not in second
    await alice.close()


async def join(client: RawClient, nick: str) -> None:
    """Gajim's join (``MUC._join``): no history, the archive (MAM) gives it."""
    await client.send(f"<presence xmlns='jabber:client' to='{ROOM}/{nick}'>"
                      "<x xmlns='http://jabber.org/protocol/muc'><history maxchars='0'/></x>"
                      "</presence>")
    await client.expect(rf"<presence[^>]*from=.{ROOM}/{nick}.*?</presence>")


async def test_moderation_as_gajim_17_asks(default: Server) -> None:
    """Gajim 1.7.3 shows "Moderate" only in a room advertising
    ``urn:xmpp:message-moderate:0`` and sends XEP-0425 0.2's request (nbxmpp 4.2.2
    ``_make_retract_request``); the notice must have 0.2's ``<apply-to/>`` form, which
    nbxmpp parses (``Moderation._process_message``), next to 0.3's."""
    alice, bob = await session(default, "alice"), await session(default, "bob")
    await join(alice, "Alice")
    # An instant room (XEP-0045 §10.1.2), as Gajim accepts the defaults.
    await alice.send(f"<iq xmlns='jabber:client' type='set' id='inst' to='{ROOM}'><query "
                     "xmlns='http://jabber.org/protocol/muc#owner'>"
                     "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    await alice.expect(reply("inst"))
    await join(bob, "Bob")
    await bob.send(f"<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='m1'>"
                   "<body>spam</body><origin-id xmlns='urn:xmpp:sid:0' id='m1'/></message>")
    echoed = await alice.expect(r"<message[^>]*>(?:(?!</message>).)*?<body>spam</body>.*?"
                                r"</message>")
    stanza_id = re.search(rf"<stanza-id(?=[^>]*by=.{ROOM}.)[^>]*\sid=.(\d+)", echoed)
    assert stanza_id is not None, echoed
    await alice.send(f"<iq xmlns='jabber:client' type='get' id='info' to='{ROOM}'>"
                     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    assert "urn:xmpp:message-moderate:0" in await alice.expect(reply("info"))
    await alice.send(
        f"<iq xmlns='jabber:client' to='{ROOM}' type='set' id='mod'>"
        f"<apply-to xmlns='urn:xmpp:fasten:0' id='{stanza_id.group(1)}'>"
        "<moderate xmlns='urn:xmpp:message-moderate:0'>"
        "<retract xmlns='urn:xmpp:message-retract:0' /><reason>walk</reason></moderate>"
        "</apply-to></iq>")
    assert "type=\"result\"" in (await alice.expect(reply("mod"))).replace("'", '"')
    notice = await bob.expect(r"<message[^>]*>(?:(?!</message>).)*?apply-to.*?</message>")
    assert re.search(
        rf"<apply-to xmlns=.urn:xmpp:fasten:0. id=.{stanza_id.group(1)}.>"
        rf"<moderated xmlns=.urn:xmpp:message-moderate:0. by=.{ROOM}/Alice.>"
        r"<retract xmlns=.urn:xmpp:message-retract:0.\s*/><reason>walk</reason>"
        r"</moderated></apply-to>", notice), notice
    assert re.search(r"from=.walk@conference.localhost.", notice)  # nbxmpp: the bare room
    # ... and XEP-0425 0.3's form in the same notice, for today's clients.
    assert f"<retract xmlns=\"urn:xmpp:message-retract:1\" id=\"{stanza_id.group(1)}\"" \
        in notice.replace("'", '"')
    await alice.close()
    await bob.close()


async def test_gajim_17_finds_pep_native_bookmarks(default: Server) -> None:
    """Gajim 1.7.3 (``Bookmarks._bookmark_module``) uses XEP-0402 only when the account
    advertises ``urn:xmpp:bookmarks:1#compat-pep`` and ``pubsub#config-node-max``; else it
    keeps its bookmarks in private XML and hears of no change made elsewhere."""
    alice = await session(default, "alice")
    await alice.send("<iq xmlns='jabber:client' type='get' id='acct' to='alice@localhost'>"
                     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = await alice.expect(reply("acct"))
    for feature in ("urn:xmpp:bookmarks:1#compat-pep",
                    "http://jabber.org/protocol/pubsub#config-node-max",
                    "urn:xmpp:pep-vcard-conversion:0",  # XEP-0398: vCard avatars too
                    "urn:xmpp:mam:2"):
        assert f'var="{feature}"' in info.replace("'", '"'), feature
    await alice.close()


async def test_a_person_has_time_to_fill_in_the_registration_form(tmp_path: Path) -> None:
    """Gajim's sign-up page (and Dino's, Conversations') asks for the XEP-0077 form and
    keeps the stream open while the person types: the listener's state_timeout (5 s on the
    default then) closed it with <connection-timeout/> before they could submit. A client that
    may register gets FORM_FILL_SECONDS once it has the form."""
    # The default's listeners with a 0.3 s state_timeout: "a person is slow" in a test.
    async with serving_the_default(tmp_path, edit=lambda toml: toml.replace(
            "state_timeout = 60000", "state_timeout = 300")) as server:
        raw = await RawClient.open(server.tls_port, tls=True)
        await raw.open_stream()
        await raw.send("<iq xmlns='jabber:client' to='localhost' type='get' id='form'>"
                       "<query xmlns='jabber:iq:register'/></iq>")
        assert "jabber:x:data" in await raw.expect(reply("form"))
        await asyncio.sleep(1.0)  # the person types
        await raw.send(
            "<iq xmlns='jabber:client' to='localhost' type='set' id='sub'>"
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'><value>jabber:iq:register</value></field>"
            "<field var='username' type='text-single'><value>carol</value></field>"
            "<field var='password' type='text-private'><value>pw</value></field>"
            "</x></query></iq>")
        assert "type=\"result\"" in (await raw.expect(reply("sub"))).replace("'", '"')
        assert await server.user_exists(JID.parse("carol@localhost"))
        await raw.close()
        # Without the form, the listener's state_timeout still holds.
        idle = await RawClient.open(server.tls_port, tls=True)
        await idle.open_stream()
        assert b"connection-timeout" in await idle.closed(timeout=3)
