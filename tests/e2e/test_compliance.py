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
from slixmpp.xmlstream import ElementBase

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


class Note(ElementBase):
    """A private payload for XEP-0223 (slixmpp's plugin publishes stanza objects)."""

    name = "note"
    namespace = "urn:example:notes"
    plugin_attrib = "note"


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


def events_queue(client: Client, kind: str = "message") -> asyncio.Queue[Any]:
    """Every stanza of ``kind`` that ``client`` receives, before slixmpp's plugins take some
    away from its events (pubsub headlines, carbons, invitations, room presence)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def incoming(stanza: Any) -> Any:
        if stanza.xml.tag == f"{{jabber:client}}{kind}":
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
        # What Conversations does then: reconfigure the node (XEP-0060 §8.2.4) and publish
        # again. Here a node made with the PEP defaults (presence access) becomes open.
        await iq(alice, "alice@localhost", "set", publish_xml(
            "urn:xmpp:example", "current", "<x xmlns='urn:xmpp:example'/>"))
        with pytest.raises(IqError):
            await iq(alice, "alice@localhost", "set", publish_xml(
                "urn:xmpp:example", "current", "<x xmlns='urn:xmpp:example'/>",
                access_model="open"))
        await iq(alice, "alice@localhost", "set", (
            f"<pubsub xmlns='{PUBSUB}#owner'><configure node='urn:xmpp:example'>"
            f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>"
            f"{PUBSUB}#node_config</value></field><field var='pubsub#access_model'><value>"
            "open</value></field></x></configure></pubsub>"))
        await iq(alice, "alice@localhost", "set", publish_xml(
            "urn:xmpp:example", "current", "<x xmlns='urn:xmpp:example'/>", access_model="open"))

        # A device that comes online later is sent the last item of each node it has +notify
        # for (XEP-0163 §4.3.2), as soon as the server learnt its caps: the contact's avatar
        # and device list, not the bookmarks (send_last_published_item=never).
        phone = await connect(server, "bob@localhost/phone", "pw", direct_tls=True,
                              plugins=PLUGINS)
        phone_events = events_queue(phone)
        for namespace in notify:
            phone.plugin["xep_0030"].add_feature(f"{namespace}+notify")
        await phone.plugin["xep_0115"].update_caps(broadcast=False)
        phone.send_presence()
        seen: set[str] = set()
        while not {avatar_meta, legacy_devices, devices} <= seen:
            msg = await asyncio.wait_for(phone_events.get(), 5)
            items = msg.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
            if items is not None and str(msg["from"]) == "alice@localhost":
                seen.add(items.get("node"))
        assert BOOKMARKS not in seen
        await disconnect(alice, alice_laptop, bob, phone)


async def test_im_suite(tmp_path: Path) -> None:
    """IM (Advanced Server): vcard-temp (XEP-0054) and its conversion to and from PEP
    avatars (XEP-0398, XEP-0153 hash in presence), carbons (XEP-0280), blocking (XEP-0191),
    private storage (XEP-0049) with XEP-0048 bookmarks seen as XEP-0402 ones, private PEP
    nodes (XEP-0223), the archive (XEP-0313) and its preferences (XEP-0441)."""
    async with default_server(tmp_path) as server:
        plugins = (*PLUGINS, "xep_0054", "xep_0191", "xep_0049", "xep_0048", "xep_0223",
                   "xep_0441")
        alice = await online(server, "alice@localhost/phone", (BOOKMARKS,), plugins)
        laptop = await online(server, "alice@localhost/laptop", (BOOKMARKS,), plugins)
        bob = await online(server, "bob@localhost/laptop", (), plugins)
        laptop_events = events_queue(laptop)
        account = await features(alice, "alice@localhost")
        assert {"urn:xmpp:mam:2", "urn:xmpp:bookmarks:1#compat", "jabber:iq:private",
                "urn:xmpp:pep-vcard-conversion:0"} <= account
        assert {"vcard-temp", "urn:xmpp:carbons:2", "urn:xmpp:blocking"} <= await features(
            alice, "localhost")

        # vCard with a photo: bob reads it; it became the PEP avatar (XEP-0398 §3).
        vcard = alice.plugin["xep_0054"].make_vcard()
        vcard["FN"] = "Alice"
        vcard["PHOTO"]["TYPE"] = "image/png"
        vcard["PHOTO"]["BINVAL"] = b"\x89PNG fake"
        await alice.plugin["xep_0054"].publish_vcard(vcard, timeout=5)
        got = await bob.plugin["xep_0054"].get_vcard("alice@localhost", cached=False,
                                                     local=False, timeout=5)
        assert got["vcard_temp"]["FN"] == "Alice"
        meta = await iq(bob, "alice@localhost", "get",
                        f"<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:avatar:metadata'/>"
                        "</pubsub>")
        assert meta.find(".//{urn:xmpp:avatar:metadata}info") is not None

        # Carbons: enabled on both devices, bob's message to the phone is copied to the laptop.
        for client in (alice, laptop):
            await client.plugin["xep_0280"].enable(timeout=5)
        bob.send_message(mto="alice@localhost/phone", mbody="carbon?", mtype="chat")
        while True:
            msg = await asyncio.wait_for(laptop_events.get(), 5)
            fwd = msg.xml.find(".//{urn:xmpp:forward:0}forwarded/{jabber:client}message")
            if fwd is not None:
                assert fwd.findtext("{jabber:client}body") == "carbon?"
                break

        # Private storage: XEP-0048 bookmarks stored the old way appear as XEP-0402 items.
        storage = alice.plugin["xep_0048"].stanza.Bookmarks()
        storage.add_conference("tea@conference.localhost", "al", autojoin=True, name="Tea")
        await alice.plugin["xep_0048"].set_bookmarks(storage, method="xep_0049", timeout=5)
        items = await next_event(laptop_events, BOOKMARKS)
        assert items.find(f"{{{EVENT}}}item").get("id") == "tea@conference.localhost"
        stored = await laptop.plugin["xep_0048"].get_bookmarks(method="xep_0049", timeout=5)
        assert stored["private"]["bookmarks"]["conferences"][0]["jid"] == \
            "tea@conference.localhost"

        # XEP-0223: a private PEP node (whitelist, persistent) kept and read back.
        note = Note()
        note.xml.text = "secret"
        await alice.plugin["xep_0223"].store(note, node="urn:example:notes", id="current",
                                             timeout=5)
        back = await laptop.plugin["xep_0223"].retrieve("urn:example:notes", timeout=5)
        assert "secret" in str(back)
        with pytest.raises(IqError):
            await iq(bob, "alice@localhost", "get", f"<pubsub xmlns='{PUBSUB}'><items "
                     "node='urn:example:notes'/></pubsub>")

        # Blocking: bob blocked, his messages no longer arrive; unblocked, they do.
        await alice.plugin["xep_0191"].block("bob@localhost", timeout=5)
        blocked = await alice.plugin["xep_0191"].get_blocked(timeout=5)
        assert [i.get("jid") for i in blocked.xml.iter("{urn:xmpp:blocking}item")] == [
            "bob@localhost"]
        # §3.3: not delivered (mod_blocking drops messages from a blocked JID in silence).
        bob.send_message(mto="alice@localhost/phone", mbody="blocked?", mtype="chat")
        await alice.plugin["xep_0191"].unblock("bob@localhost", timeout=5)
        bob.send_message(mto="alice@localhost/phone", mbody="unblocked", mtype="chat")
        assert (await alice.next_message())["body"] == "carbon?"
        assert (await alice.next_message())["body"] == "unblocked"

        # Archive and its preferences (XEP-0441).
        await alice.plugin["xep_0441"].set_preferences("roster", never=[JID.parse(
            "spam@localhost")], timeout=5)
        default, _, never = await alice.plugin["xep_0441"].get_preferences(timeout=5)
        assert default == "roster" and [str(j) for j in never] == ["spam@localhost"]
        archived = [m async for m in alice.plugin["xep_0313"].iterate(
            jid="alice@localhost", rsm={"max": 50})]
        assert "carbon?" in [str(m["mam_result"]["forwarded"]["stanza"]["body"])
                             for m in archived]
        await disconnect(alice, laptop, bob)


async def test_group_chat_suite(tmp_path: Path) -> None:
    """Group Chat and Advanced Group Chat: XEP-0045 (entity and occupant use cases), XEP-0249
    direct invitations, the room's own archive (XEP-0313 §6.1.2, "history from a MUC archive
    as opposed to from the user's account"), XEP-0410 self-ping."""
    async with default_server(tmp_path) as server:
        plugins = (*PLUGINS, "xep_0249", "xep_0410")
        alice = await online(server, "alice@localhost/phone", (), plugins)
        bob = await online(server, "bob@localhost/laptop", (), plugins)
        bob_messages, bob_presences = events_queue(bob), events_queue(bob, "presence")
        room = "tea@conference.localhost"
        service = await features(alice, "conference.localhost")
        assert "http://jabber.org/protocol/muc" in service
        await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=10, maxstanzas=0)
        form = await alice.plugin["xep_0045"].get_room_config(room)
        await alice.plugin["xep_0045"].set_room_config(room, form)
        room_features = await features(bob, room)
        assert {"http://jabber.org/protocol/muc", "urn:xmpp:mam:2", "urn:xmpp:sid:0",
                "urn:xmpp:occupant-id:0"} <= room_features

        # XEP-0249: the invitation goes from user to user, untouched.
        alice.plugin["xep_0249"].send_invitation("bob@localhost", room, reason="tea")
        while True:
            msg = await asyncio.wait_for(bob_messages.get(), 5)
            invite = msg.xml.find("{jabber:x:conference}x")
            if invite is not None:
                assert invite.get("jid") == room
                break
        await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=10, maxstanzas=0)
        for n in range(3):
            alice.send_message(mto=room, mbody=f"cup {n}", mtype="groupchat")
        while True:
            msg = await bob.next_message()
            if msg["type"] == "groupchat" and msg["body"] == "cup 2":
                break
        # The room's archive, queried at the room (not at the account).
        archived = [m async for m in bob.plugin["xep_0313"].iterate(jid=room, rsm={"max": 2})]
        assert [str(m["mam_result"]["forwarded"]["stanza"]["body"]) for m in archived] == [
            "cup 0", "cup 1", "cup 2"]
        # XEP-0410 §3: a ping to one's own occupant JID is answered while joined ...
        await bob.plugin["xep_0199"].ping(jid=f"{room}/bob", timeout=5)
        # ... and refused with not-acceptable once the occupant is gone.
        bob.plugin["xep_0045"].leave_muc(room, "bob")
        while True:
            pres = await asyncio.wait_for(bob_presences.get(), 5)
            if pres["type"] == "unavailable" and str(pres["from"]) == f"{room}/bob":
                break
        with pytest.raises(IqError) as gone:
            await bob.plugin["xep_0199"].ping(jid=f"{room}/bob", timeout=5)
        assert gone.value.condition == "not-acceptable"
        await disconnect(alice, bob)


async def test_mobile_suite_and_file_upload(tmp_path: Path) -> None:
    """Mobile: stream management with resumption (XEP-0198), CSI (XEP-0352) holding what can
    wait; IM: file upload (XEP-0363) with the default's own HTTPS store."""
    import aiohttp

    async with default_server(tmp_path) as server:
        alice = await online(server, "alice@localhost/phone", (),
                             (*PLUGINS, "xep_0198", "xep_0352", "xep_0085"))
        bob = await online(server, "bob@localhost/laptop", (), (*PLUGINS, "xep_0085"))
        full = JID.parse("alice@localhost/phone")
        alice_messages = events_queue(alice)
        await eventually(lambda: alice.plugin["xep_0198"].enabled_in)
        assert alice.plugin["xep_0198"].sm_id

        # CSI: inactive, a chat state waits; a message with a body brings both, in order.
        alice.plugin["xep_0352"].send_inactive()
        session = server.sessions.lookup(full)
        await eventually(lambda: session.module_state.get("mod_csi") is not None
                         and session.module_state["mod_csi"].inactive)
        composing = bob.make_message(mto=str(full), mtype="chat")
        composing["chat_state"] = "composing"
        composing.send()
        await eventually(lambda: len(session.module_state["mod_csi"].queue) == 1)
        assert alice_messages.empty()
        bob.send_message(mto=str(full), mbody="wake up", mtype="chat")
        first, second = [await asyncio.wait_for(alice_messages.get(), 5) for _ in range(2)]
        assert first["chat_state"] == "composing" and not first["body"]
        assert second["body"] == "wake up"
        alice.plugin["xep_0352"].send_active()

        # SM: the socket dies, messages meanwhile, the stream is resumed and they arrive.
        resumed = asyncio.get_running_loop().create_future()
        alice.add_event_handler("session_resumed",
                                lambda _: resumed.done() or resumed.set_result(True))
        alice.abort()
        bob.send_message(mto=str(full), mbody="while away", mtype="chat")
        await eventually(lambda: (s := server.sessions.lookup(full)) is not None
                         and s.state.name == "RESUME_SESSION")
        alice.connect("127.0.0.1", server.tls_port)  # type: ignore[attr-defined]
        await asyncio.wait_for(resumed, 10)
        assert (await asyncio.wait_for(alice_messages.get(), 5))["body"] == "while away"

        # Upload: a slot at upload.localhost (its limit advertised, XEP-0363 §2), PUT, GET.
        info = await alice.plugin["xep_0030"].get_info(jid="upload.localhost", timeout=5)
        form = info.xml.find(".//{jabber:x:data}x")
        assert form is not None and "max-file-size" in ET.tostring(form, encoding="unicode")
        slot = await iq(alice, "upload.localhost", "get",
                        "<request xmlns='urn:xmpp:http:upload:0' filename='cat.png' size='4' "
                        "content-type='image/png'/>")
        put = slot.find(".//{urn:xmpp:http:upload:0}put").get("url")
        get = slot.find(".//{urn:xmpp:http:upload:0}get").get("url")
        headers = {h.get("name"): h.text or "" for h in slot.iter(
            "{urn:xmpp:http:upload:0}header")}
        async with aiohttp.ClientSession() as http:
            async with http.put(put, data=b"meow", ssl=False,
                                headers={**headers, "Content-Type": "image/png"}) as resp:
                assert resp.status in (200, 201)
            async with http.get(get, ssl=False) as resp:
                assert resp.status == 200 and await resp.read() == b"meow"
        await disconnect(alice, bob)


async def test_services_and_web(tmp_path: Path) -> None:
    """The small services clients query (XEP-0012 last activity, XEP-0092 version, XEP-0199
    ping, XEP-0202 time), and the Web suite: BOSH (XEP-0124/0206) and WebSocket (RFC 7395)
    announced by XEP-0156 host-meta."""
    import aiohttp

    async with default_server(tmp_path) as server:
        plugins = (*PLUGINS, "xep_0012", "xep_0092", "xep_0202")
        alice = await online(server, "alice@localhost/phone", (), plugins)
        await alice.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        version = await alice.plugin["xep_0092"].get_version("localhost", timeout=5)
        assert version["software_version"]["name"]
        await alice.plugin["xep_0202"].get_entity_time("localhost", timeout=5)
        await alice.plugin["xep_0012"].get_last_activity("localhost", timeout=5)
        # A contact who was online and left: how long ago, and the status he left with.
        bob = await online(server, "bob@localhost/laptop")
        bob.send_presence(ptype="unavailable", pstatus="gone fishing")
        await disconnect(bob)
        last = await alice.plugin["xep_0012"].get_last_activity("bob@localhost", timeout=5)
        assert last["last_activity"]["status"] == "gone fishing"
        await disconnect(alice)

        base = f"http://127.0.0.1:{server.http_port}"  # type: ignore[attr-defined]
        # Host names the domain, as a browser on http://localhost:5280 does.
        host = {"Host": f"localhost:{server.http_port}"}  # type: ignore[attr-defined]
        async with aiohttp.ClientSession(headers=host) as http:
            async with http.get(f"{base}/.well-known/host-meta") as resp:
                host_meta = await resp.text()
            assert "urn:xmpp:alt-connections:xbosh" in host_meta
            assert "urn:xmpp:alt-connections:websocket" in host_meta
            body = ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost' "
                    "wait='1' hold='1' ver='1.6' xml:lang='en' xmpp:version='1.0' "
                    "xmlns:xmpp='urn:xmpp:xbosh'/>")
            async with http.post(f"{base}/http-bind", data=body) as resp:
                session = await resp.text()
            assert "sid=" in session and "mechanisms" in session
