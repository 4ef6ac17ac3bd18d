"""XEP-0479 (XMPP Compliance Suites 2023), the server columns, checked on the embedded default
(``suricate serve`` with no ``--config``) with a real client (slixmpp) over real TLS: each
required XEP is advertised where its spec says so and its basic flow works as the clients of
today (Conversations, Dino, Gajim, Monal, Converse.js) drive it. docs/compliance.md is the
table; each row names the test here (or elsewhere) that proves it."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_caps import session_features
from suricate.modules.mod_roster.store import RosterItem
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import Client, connect, disconnect, eventually, free_port, serving

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = "http://jabber.org/protocol/pubsub#event"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
DATA = "jabber:x:data"
BOOKMARKS = "urn:xmpp:bookmarks:1"
PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0059", "xep_0060", "xep_0115",
           "xep_0163", "xep_0199", "xep_0280", "xep_0297", "xep_0313", "xep_0359")


@contextlib.asynccontextmanager
async def default_server(tmp_path: Path) -> AsyncIterator[Server]:
    """The embedded default on free ports, with alice and bob (mutual subscription)."""
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port(), "http_port": free_port(),
             "https_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp_path / "suricate.db"),
                               **ports)
    async with serving(tmp_path, toml, **ports) as server:
        roster = server.modules["mod_roster"].store
        for user, contact in (("alice", "bob"), ("bob", "alice")):
            await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
            await roster.put_roster_item("localhost", user, RosterItem(
                f"{contact}@localhost", subscription="both"))
        yield server


async def online(server: Server, jid: str, notify: tuple[str, ...] = (),
                 plugins: tuple[str, ...] = PLUGINS) -> Client:
    """Log in over direct TLS (XEP-0368), announce ``notify`` interests in caps (XEP-0115,
    XEP-0163 §4.3.1), send available presence and wait until the server learnt the caps."""
    client = await connect(server, jid, "pw", direct_tls=True, plugins=plugins)
    client.auto_authorize = None
    client.auto_subscribe = False
    for namespace in notify:
        client.plugin["xep_0030"].add_feature(f"{namespace}+notify")
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    client.send_presence()
    full = JID.parse(jid)
    await eventually(lambda: (s := server.sessions.lookup(full)) is not None
                     and session_features(s))
    return client


async def features(client: Client, jid: str, node: str | None = None) -> set[str]:
    info = await client.plugin["xep_0030"].get_info(jid=jid, node=node, timeout=5)
    return set(info["disco_info"]["features"])


async def iq(client: Client, to: str, type_: str, xml: str) -> ET.Element:
    """Send raw IQ payload ``xml``; the result's XML (IqError on an error reply)."""
    stanza = client.make_iq(ito=to, itype=type_)
    stanza.xml.append(ET.fromstring(xml))
    result = await stanza.send(timeout=5)
    return result.xml


def publish_xml(node: str, item_id: str, payload: str, **options: str) -> str:
    """A XEP-0060 §7.1 publish with §7.1.5 publish-options, as the clients send it."""
    form = ""
    if options:
        fields = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>"
                         for k, v in options.items())
        form = (f"<publish-options><x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' "
                f"type='hidden'><value>{PUBSUB}#publish-options</value></field>{fields}</x>"
                "</publish-options>")
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item_id}'>{payload}"
            f"</item></publish>{form}</pubsub>")


async def next_event(queue: asyncio.Queue[Any], node: str, timeout: float = 5.0) -> Any:
    """The next pubsub event of ``node`` among the messages of ``queue``."""
    while True:
        msg = await asyncio.wait_for(queue.get(), timeout)
        items = msg.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
        if items is not None and items.get("node") == node:
            return items


def events_queue(client: Client) -> asyncio.Queue[Any]:
    """Every message ``client`` receives, headlines too (slixmpp's xep_0060 takes pubsub
    events away from its ``message`` event)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def incoming(stanza: Any) -> Any:
        if stanza.xml.tag == "{jabber:client}message":
            queue.put_nowait(stanza)
        return stanza

    client.add_filter("in", incoming)
    return queue


async def test_core_suite(tmp_path: Path) -> None:
    """Core: RFC 6120 over TLS and direct TLS (XEP-0368), disco (XEP-0030) and the server's
    own caps (XEP-0115 §6.3), PEP (XEP-0163)."""
    async with default_server(tmp_path) as server:
        alice = await online(server, "alice@localhost/phone")
        starttls = await connect(server, "bob@localhost/laptop", "pw", plugins=("xep_0030",))
        server_features = await features(alice, "localhost")
        assert {"http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items"} <= server_features
        account = await alice.plugin["xep_0030"].get_info(jid="alice@localhost", timeout=5)
        identities = {(i[0], i[1]) for i in account["disco_info"]["identities"]}
        assert ("pubsub", "pep") in identities
        assert {PUBSUB, f"{PUBSUB}#publish", f"{PUBSUB}#publish-options",
                f"{PUBSUB}#auto-create"} <= set(account["disco_info"]["features"])
        await disconnect(alice, starttls)


async def test_pep_as_clients_use_it(tmp_path: Path) -> None:
    """XEP-0163 with XEP-0060 §7.1.5 publish-options, the way clients publish avatars
    (XEP-0084), OMEMO device lists and bundles (XEP-0384, both generations) and bookmarks
    (XEP-0402), and caps-based +notify (XEP-0163 §4.3.1) for what a contact publishes."""
    avatar_meta = "urn:xmpp:avatar:metadata"
    avatar_data = "urn:xmpp:avatar:data"
    legacy_devices = "eu.siacs.conversations.axolotl.devicelist"
    devices = "urn:xmpp:omemo:2:devices"
    bundles = "urn:xmpp:omemo:2:bundles"
    async with default_server(tmp_path) as server:
        notify = (avatar_meta, legacy_devices, devices, BOOKMARKS)
        alice = await online(server, "alice@localhost/phone", notify)
        alice_laptop = await online(server, "alice@localhost/laptop", notify)
        bob = await online(server, "bob@localhost/laptop", notify)
        bob_events, laptop_events = events_queue(bob), events_queue(alice_laptop)

        # Avatars: the data first, then the metadata; a contact with +notify hears of it.
        for _ in range(2):  # the second time the nodes exist: the options must still match
            await iq(alice, "alice@localhost", "set", publish_xml(
                avatar_data, "abc", f"<data xmlns='{avatar_data}'>AAAA</data>",
                access_model="open"))
            await iq(alice, "alice@localhost", "set", publish_xml(
                avatar_meta, "abc", f"<metadata xmlns='{avatar_meta}'><info id='abc' "
                "bytes='3' type='image/png' width='1' height='1'/></metadata>",
                access_model="open"))
            items = await next_event(bob_events, avatar_meta)
            assert items.find(f"{{{EVENT}}}item").get("id") == "abc"
        got = await iq(bob, "alice@localhost", "get",
                       f"<pubsub xmlns='{PUBSUB}'><items node='{avatar_data}'/></pubsub>")
        assert got.find(f".//{{{avatar_data}}}data").text == "AAAA"

        # OMEMO: device lists readable by anyone (open), bundles one item per device.
        for node in (legacy_devices, devices):
            payload = ("<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>"
                       if node == legacy_devices else
                       "<devices xmlns='urn:xmpp:omemo:2'><device id='1'/></devices>")
            await iq(alice, "alice@localhost", "set", publish_xml(
                node, "current", payload, access_model="open"))
            assert (await next_event(bob_events, node)).find(f"{{{EVENT}}}item") is not None
        for device in ("1", "2"):
            await iq(alice, "alice@localhost", "set", publish_xml(
                bundles, device, "<bundle xmlns='urn:xmpp:omemo:2'/>", access_model="open",
                max_items="max"))
        got = await iq(bob, "alice@localhost", "get",
                       f"<pubsub xmlns='{PUBSUB}'><items node='{bundles}'/></pubsub>")
        assert {i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")} == {"1", "2"}
        await iq(alice, "alice@localhost", "set", publish_xml(
            "eu.siacs.conversations.axolotl.bundles:1", "current",
            "<bundle xmlns='eu.siacs.conversations.axolotl'/>", access_model="open"))

        # Bookmarks (XEP-0402 §3): whitelist, the account's other devices hear of each one,
        # contacts do not; every room is kept (max_items=max).
        options = {"persist_items": "true", "max_items": "max",
                   "send_last_published_item": "never", "access_model": "whitelist"}
        for n in range(12):
            await iq(alice, "alice@localhost", "set", publish_xml(
                BOOKMARKS, f"room{n}@conference.localhost",
                f"<conference xmlns='{BOOKMARKS}' autojoin='true'><nick>al</nick></conference>",
                **options))
            await next_event(laptop_events, BOOKMARKS)
        got = await iq(alice_laptop, "alice@localhost", "get",
                       f"<pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS}'/></pubsub>")
        assert len(list(got.iter(f"{{{PUBSUB}}}item"))) == 12
        with pytest.raises(IqError) as refused:
            await iq(bob, "alice@localhost", "get",
                     f"<pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS}'/></pubsub>")
        # XEP-0060 §6.5.9.11: whitelist node, not on the list.
        assert refused.value.condition == "not-allowed"
        assert refused.value.iq.xml.find(f".//{{{ERRORS}}}closed-node") is not None
        with pytest.raises(asyncio.TimeoutError):
            await next_event(bob_events, BOOKMARKS, timeout=0.5)

        # A publish-options precondition the node does not meet (XEP-0060 §7.1.5).
        with pytest.raises(IqError) as mismatch:
            await iq(alice, "alice@localhost", "set", publish_xml(
                BOOKMARKS, "x@conference.localhost", f"<conference xmlns='{BOOKMARKS}'/>",
                access_model="open"))
        assert mismatch.value.condition == "conflict"
        assert mismatch.value.iq.xml.find(f".//{{{ERRORS}}}precondition-not-met") is not None
        await disconnect(alice, alice_laptop, bob)
