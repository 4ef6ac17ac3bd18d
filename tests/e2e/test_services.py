"""The small services, asked by real clients (slixmpp) over real sockets: disco, ping, version,
last activity, time, private XML storage, vCards; and a server ping a client never answers."""

from __future__ import annotations

import base64
import datetime
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.harness import (
    ALL_MODULES,
    RawClient,
    connect,
    disconnect,
    eventually,
    running_server,
)

PLUGINS = ("xep_0030", "xep_0199", "xep_0092", "xep_0012", "xep_0202", "xep_0049",
           "xep_0054")


async def register(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def test_disco_of_server_and_account(server: Server) -> None:
    await register(server, "alice", "bob")
    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    info = await alice.plugin["xep_0030"].get_info(jid="localhost")
    assert ("server", "im", None, "Suricate") in info["disco_info"]["identities"]
    features = info["disco_info"]["features"]
    for var in ("http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
                "urn:xmpp:ping", "jabber:iq:version", "jabber:iq:last", "urn:xmpp:time",
                "vcard-temp"):
        assert var in features
    items = await alice.plugin["xep_0030"].get_items(jid="localhost")
    assert items["type"] == "result"
    account = await alice.plugin["xep_0030"].get_info(jid="bob@localhost")
    assert ("account", "registered", None, None) in account["disco_info"]["identities"]
    assert "jabber:iq:private" in account["disco_info"]["features"]
    account_items = await alice.plugin["xep_0030"].get_items(jid="bob@localhost")
    assert account_items["disco_items"]["items"] == set()
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid="nobody@localhost")
    assert err.value.iq["error"]["condition"] == "service-unavailable"
    await disconnect(alice)


async def test_ping_version_time_of_the_server(server: Server) -> None:
    await register(server, "alice")
    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    assert await alice.plugin["xep_0199"].ping("localhost", timeout=5) >= 0
    assert await alice.plugin["xep_0199"].ping("alice@localhost", timeout=5) >= 0
    version = await alice.plugin["xep_0092"].get_version("localhost")
    assert version["software_version"]["name"] == "Suricate"
    assert version["software_version"]["version"]
    entity_time = await alice.plugin["xep_0202"].get_entity_time("localhost")
    # slixmpp's own accessors misparse "+00:00" and a "Z" suffix: read the raw elements.
    tzo = entity_time["entity_time"].xml.find("{urn:xmpp:time}tzo")
    assert tzo is not None and tzo.text == "+00:00"
    utc = entity_time["entity_time"].xml.find("{urn:xmpp:time}utc")
    assert utc is not None and utc.text is not None
    stamp = datetime.datetime.strptime(utc.text, "%Y-%m-%dT%H:%M:%SZ")
    assert abs(stamp.replace(tzinfo=datetime.UTC).timestamp() - time.time()) < 60
    uptime = await alice.plugin["xep_0012"].get_last_activity("localhost")
    assert uptime["last_activity"]["seconds"] >= 0
    await disconnect(alice)


async def test_last_activity_of_a_contact(server: Server) -> None:
    await register(server, "alice", "bob", "carol")
    # bob's roster lets alice see his presence (set directly: mod_roster is not needed here).
    await server.modules["mod_roster"].store.put_roster_item("localhost", "bob", RosterItem(
        "alice@localhost", subscription="both"))
    await server.modules["mod_last"].store.set_last("localhost", "bob", int(time.time()) - 903, "Heading Home")
    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    last = await alice.plugin["xep_0012"].get_last_activity("bob@localhost")
    assert 903 <= last["last_activity"]["seconds"] < 1000
    assert last["last_activity"]["status"] == "Heading Home"
    carol = await connect(server, "carol@localhost/home", "carol-pw", plugins=PLUGINS)
    with pytest.raises(IqError) as err:
        await carol.plugin["xep_0012"].get_last_activity("bob@localhost")
    assert err.value.iq["error"]["condition"] == "forbidden"
    await disconnect(alice, carol)


async def test_last_activity_follows_the_contacts_logout(server: Server) -> None:
    await register(server, "alice", "bob")
    await server.modules["mod_roster"].store.put_roster_item("localhost", "bob", RosterItem(
        "alice@localhost", subscription="from"))
    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    bob = await connect(server, "bob@localhost/desk", "bob-pw", plugins=PLUGINS)
    bob.send_presence()

    async def bob_online() -> bool:
        return any(s.available for s in server.sessions.resources(JID.parse("bob@localhost")))

    await eventually(bob_online)
    online = await alice.plugin["xep_0012"].get_last_activity("bob@localhost")
    assert online["last_activity"]["seconds"] == 0
    bob.send_presence(ptype="unavailable", pstatus="Heading Home")
    await disconnect(bob)

    async def recorded() -> bool:
        last = await server.modules["mod_last"].store.get_last("localhost", "bob")
        return last is not None and not await bob_online()

    await eventually(recorded)
    offline = await alice.plugin["xep_0012"].get_last_activity("bob@localhost")
    assert offline["last_activity"]["seconds"] < 60
    assert offline["last_activity"]["status"] == "Heading Home"
    await disconnect(alice)


async def test_private_storage_round_trip_and_forbidden_for_another(server: Server) -> None:
    await register(server, "hamlet", "macbeth")
    hamlet = await connect(server, "hamlet@localhost/denmark", "hamlet-pw", plugins=PLUGINS)
    store = hamlet.make_iq_set()
    store["private"].xml.append(ET.fromstring(
        "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>"))
    await store.send(timeout=5)
    fetch = hamlet.make_iq_get()
    fetch["private"].xml.append(ET.fromstring("<exodus xmlns='exodus:prefs'/>"))
    result = await fetch.send(timeout=5)
    nick = result["private"].xml.find("{exodus:prefs}exodus/{exodus:prefs}defaultnick")
    assert nick is not None and nick.text == "Hamlet"

    macbeth = await connect(server, "macbeth@localhost/castle", "macbeth-pw", plugins=PLUGINS)
    steal = macbeth.make_iq_get(ito="hamlet@localhost")
    steal["private"].xml.append(ET.fromstring("<exodus xmlns='exodus:prefs'/>"))
    with pytest.raises(IqError) as err:
        await steal.send(timeout=5)
    assert err.value.iq["error"]["condition"] == "forbidden"
    await disconnect(hamlet, macbeth)


async def test_vcards(server: Server) -> None:
    await register(server, "alice", "bob")
    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    bob = await connect(server, "bob@localhost/desk", "bob-pw", plugins=PLUGINS)
    card = alice.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    card["NICKNAME"] = "alice"
    await alice.plugin["xep_0054"].publish_vcard(card)
    own = await alice.plugin["xep_0054"].get_vcard("alice@localhost")
    assert own["vcard_temp"]["FN"] == "Alice Liddell"
    seen = await bob.plugin["xep_0054"].get_vcard("alice@localhost")
    assert seen["vcard_temp"]["NICKNAME"] == ["alice"]
    forged = bob.plugin["xep_0054"].make_vcard()
    forged["FN"] = "Not Alice"
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0054"].publish_vcard(forged, jid="alice@localhost")
    assert err.value.iq["error"]["condition"] == "forbidden"
    again = await bob.plugin["xep_0054"].get_vcard("alice@localhost")
    assert again["vcard_temp"]["FN"] == "Alice Liddell"
    await disconnect(alice, bob)


async def test_server_kills_a_client_that_ignores_pings(tmp_path: Path) -> None:
    modules = "\n".join(f"[modules.{m}]" for m in ALL_MODULES if m in MODULES and m != "mod_ping")
    modules += """
[modules.mod_ping]
send_pings = true
ping_interval = 1
ping_req_timeout = 1
timeout_action = "kill"
"""
    async with running_server(tmp_path, modules=modules) as server:
        await register(server, "mute")
        client = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
        await client.open_stream()
        token = base64.b64encode(b"\0mute\0mute-pw").decode()
        await client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                          f"mechanism='PLAIN'>{token}</auth>")
        await client.expect(r"<success[^>]*/>|<success[^>]*>.*?</success>")
        await client.open_stream()
        await client.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                          "<resource>quiet</resource></bind></iq>")
        await client.expect(r"<iq[^>]*id=['\"]b1['\"].*?</iq>")
        # The client stays silent: first the server's ping, then the end of the stream.
        await client.expect(r"<iq[^>]*type=['\"]get['\"][^>]*>\s*<ping xmlns=['\"]urn:xmpp:ping",
                            timeout=10)
        await client.expect(r"<connection-timeout", timeout=10)
        await client.closed()
        await client.close()
