"""A phone logging in while PostgreSQL is a few milliseconds away (docs/delivery.md, "A
database a few milliseconds away").

Production databases are on another host, 1 to 5 ms from the server; the other tests use
PostgreSQL on loopback (about 50 µs), where a database read is over before a client's next
stanza is read, and races between the two stay hidden. Here the server's pool goes through
``tests.latency_relay`` (2 ms each way), and real slixmpp clients over TLS do what a modern
mobile client does at login, all at once: initial presence, MAM catch-up, inbox, PEP
bookmarks and device list, two rooms, carbons; while messages wait in offline storage and a
contact keeps writing. Then a second device, and a stream cut with messages in flight.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from suricate.core.defaults import DEFAULT_MODULES
from suricate.core.server import Server
from suricate.jid import JID
from suricate.protocol.c2s import C2SState
from tests.e2e.harness import Client, connect, disconnect, eventually, running_server
from tests.latency_relay import postgresql_behind_relay
from tests.storage.conftest import pg_admin_or_skip

pytestmark = pytest.mark.postgres

DELAY = 0.002  # seconds each way: a database on another host in the same data centre
MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
INBOX = "erlang-solutions.com:xmpp:inbox:0"  # MongooseIM's, as mod_inbox speaks it
PUBSUB = "http://jabber.org/protocol/pubsub"
MUC = "http://jabber.org/protocol/muc"
SID = "urn:xmpp:sid:0"
CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
BOOKMARKS = "urn:xmpp:bookmarks:1"
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
ROOMS = ("one@conference.localhost", "two@conference.localhost")
PLUGINS = ("xep_0030", "xep_0045", "xep_0198")

# The embedded default's modules (suricate/core/defaults.py) with its options that matter
# here, without the web listeners' (mod_bosh), plus the inbox and smart markers of a
# Conversations/Monal-oriented deployment.
MODULES = "\n".join(f"[modules.{m}]" for m in DEFAULT_MODULES
                    if m not in ("mod_bosh", "mod_pubsub", "mod_muc", "mod_mam")) + """
[modules.mod_pubsub]
max_items_node = 1000
ignore_pep_from_offline = false
[modules.mod_muc]
room_lock_timeout = 300000
[modules.mod_mam]
[modules.mod_mam.pm]
[modules.mod_mam.muc]
[modules.mod_inbox]
groupchat = ["muc"]
[modules.mod_smart_markers]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """The server on its own PostgreSQL database, through a relay adding ``DELAY`` each way
    (skipped without PostgreSQL, except under CI=true)."""
    await pg_admin_or_skip("SELECT 1")
    async with postgresql_behind_relay(DELAY) as pool, running_server(
            tmp_path, modules=MODULES, pool_toml=pool) as srv:
        for user in ("alice", "bob", "carol"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        yield srv


class Device:
    """A slixmpp client that keeps every stanza it receives, in the order received (an
    'in' filter runs before any handler), so that the test can check what came before
    what."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.log: list[ET.Element] = []
        client.add_filter("in", self._keep)

    def _keep(self, stanza: Any) -> Any:
        self.log.append(stanza.xml)
        return stanza

    def iq(self, type_: str, payload: str, to: str | None = None) -> str:
        """Send an IQ without waiting for its answer; returns its id."""
        stanza = self.client.make_iq_set() if type_ == "set" else self.client.make_iq_get()
        if to is not None:
            stanza["to"] = to
        stanza.xml.append(ET.fromstring(payload))
        stanza.send()
        return str(stanza["id"])

    def answer(self, iq_id: str) -> ET.Element | None:
        for el in self.log:
            if el.tag == "{jabber:client}iq" and el.get("id") == iq_id:
                return el
        return None

    async def answered(self, *ids: str) -> list[ET.Element]:
        await eventually(lambda: all(self.answer(i) is not None for i in ids), timeout=10)
        answers = [self.answer(i) for i in ids]
        for a in answers:
            assert a is not None and a.get("type") == "result", a is not None and \
                ET.tostring(a)
        return [a for a in answers if a is not None]

    def results(self, tag: str, queryid: str, iq_id: str) -> tuple[list[ET.Element], int]:
        """The ``tag`` results of ``queryid`` that came before the IQ result ``iq_id``, and
        how many came after it (a client collecting results until the IQ result misses
        those)."""
        before: list[ET.Element] = []
        late = 0
        answered = False
        for el in self.log:
            if el.tag == "{jabber:client}iq" and el.get("id") == iq_id:
                answered = True
            r = el.find(tag)
            if el.tag == "{jabber:client}message" and r is not None \
                    and r.get("queryid") == queryid:
                if answered:
                    late += 1
                else:
                    before.append(r)
        return before, late

    def chats_from(self, bare: str) -> list[str]:
        """Bodies of the chat messages (not wrapped: no carbon, no archive result) from
        ``bare``, as received."""
        return [el.findtext("{jabber:client}body") or "" for el in self.log
                if el.tag == "{jabber:client}message" and el.get("type") == "chat"
                and el.get("from", "").split("/")[0] == bare
                and el.find("{jabber:client}body") is not None]

    def carbons(self, kind: str) -> list[str]:
        return [el.findtext(f"{{{CARBONS}}}{kind}/{{{FORWARD}}}forwarded/"
                            "{jabber:client}message/{jabber:client}body") or ""
                for el in self.log if el.find(f"{{{CARBONS}}}{kind}") is not None]

    def errors(self) -> list[bytes]:
        return [ET.tostring(el) for el in self.log if el.get("type") == "error"]


def forwarded_body(result: ET.Element) -> str:
    return result.findtext(f"{{{FORWARD}}}forwarded/{{jabber:client}}message/"
                           "{jabber:client}body") or ""


async def device(server: Server, jid: str, sm: bool = False) -> Device:
    plugins = PLUGINS if sm else tuple(p for p in PLUGINS if p != "xep_0198")
    return Device(await connect(server, jid, "pw", direct_tls=True, plugins=plugins))


def sessions(server: Server, jid: str) -> list[Any]:
    return [s for s in server.sessions if str(s.jid) == jid]


def publish_options(**fields: str) -> str:
    return ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'>"
            f"<value>{PUBSUB}#publish-options</value></field>"
            + "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>"
                      for k, v in fields.items()) + "</x></publish-options>")


# XEP-0402 §3: the publish-options a client sends with each bookmark.
BOOKMARK_OPTIONS = publish_options(persist_items="true", max_items="max",
                                   send_last_published_item="never", access_model="whitelist")


def publish(phone: Device, node: str, item_id: str, payload: str, options: str = "") -> str:
    """Publish without waiting for the result (as a client saving two bookmarks does)."""
    return phone.iq("set", f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
                           f"<item id='{item_id}'>{payload}</item></publish>{options}</pubsub>")


def join(dev: Device, room: str, nick: str, history: int) -> None:
    presence = dev.client.make_presence(pto=f"{room}/{nick}")
    presence.xml.append(ET.fromstring(
        f"<x xmlns='{MUC}'><history maxstanzas='{history}'/></x>"))
    presence.send()


def room_bodies(dev: Device, room: str) -> tuple[list[str], bool]:
    """The room's messages with a body as received, and whether its subject came (the end
    of the history, XEP-0045 §7.2.15)."""
    bodies, subject = [], False
    for el in dev.log:
        if el.tag == "{jabber:client}message" and el.get("type") == "groupchat" \
                and el.get("from", "").split("/")[0] == room:
            if el.find("{jabber:client}subject") is not None:
                subject = True
            elif el.find("{jabber:client}body") is not None:
                bodies.append(el.findtext("{jabber:client}body") or "")
    return bodies, subject


async def when(check: Callable[[], bool]) -> None:
    await eventually(check, timeout=10)


async def test_a_phone_logs_in_to_a_database_two_milliseconds_away(server: Server) -> None:
    bob = await device(server, "bob@localhost/desk")
    carol = await device(server, "carol@localhost/pc")
    for dev in (bob, carol):
        dev.client.send_presence()
    # Carol's rooms, each with three messages.
    for room in ROOMS:
        join(carol, room, "carol", 0)
        await when(lambda room=room: any(
            el.get("from") == f"{room}/carol" and el.tag == "{jabber:client}presence"
            for el in carol.log))
        # An instant room (XEP-0045 §10.1.2): unlocked with the default configuration.
        await carol.answered(carol.iq("set", f"<query xmlns='{MUC}#owner'>"
                                      "<x xmlns='jabber:x:data' type='submit'/></query>",
                                      to=room))
        for n in range(3):
            carol.client.send_message(mto=room, mbody=f"{room[:3]} {n}", mtype="groupchat")
    # Yesterday: the phone read "earlier" and saved its bookmarks and OMEMO device list.
    phone = await device(server, "alice@localhost/phone", sm=True)
    phone.client.send_presence()
    bob.client.send_message(mto="alice@localhost", mbody="earlier", mtype="chat")
    await when(lambda: phone.chats_from("bob@localhost") == ["earlier"])
    seen = [el for el in phone.log if el.findtext("{jabber:client}body") == "earlier"][0]
    last_id = [s.get("id") for s in seen.findall(f"{{{SID}}}stanza-id")
               if s.get("by") == "alice@localhost"][0]
    published = [publish(phone, BOOKMARKS, room, f"<conference xmlns='{BOOKMARKS}' "
                         "autojoin='true'><nick>alice</nick></conference>", BOOKMARK_OPTIONS)
                 for room in ROOMS]
    published.append(publish(phone, DEVICELIST, "current",
                             "<list xmlns='eu.siacs.conversations.axolotl'>"
                             "<device id='4223'/></list>"))
    await phone.answered(*published)
    await disconnect(phone.client)
    await when(lambda: not sessions(server, "alice@localhost/phone"))
    # The night: bob writes five messages, stored.
    stored = [f"stored {n}" for n in range(5)]
    for body in stored:
        bob.client.send_message(mto="alice@localhost", mbody=body, mtype="chat")
    offline = server.modules["mod_offline"].store

    async def all_stored() -> bool:
        return await offline.count_offline("localhost", "alice") == len(stored)

    await eventually(all_stored, timeout=10)

    # The morning: the phone logs in and asks for everything at once, while bob writes on.
    phone = await device(server, "alice@localhost/phone", sm=True)
    live = [f"live {n}" for n in range(5)]
    phone.client.send_presence()
    for body in live:
        bob.client.send_message(mto="alice@localhost", mbody=body, mtype="chat")
    carbons = phone.iq("set", f"<enable xmlns='{CARBONS}'/>")
    catch_up = phone.iq("set", f"<query xmlns='{MAM}' queryid='mam1'>"
                        f"<x xmlns='jabber:x:data' type='submit'>"
                        f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
                        f"<field var='after-id'><value>{last_id}</value></field></x>"
                        f"<set xmlns='{RSM}'><max>3</max></set></query>")
    inbox = phone.iq("set", f"<inbox xmlns='{INBOX}' queryid='inbox1'/>")
    bookmarks = phone.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS}'/></pubsub>")
    devices = phone.iq("get", f"<pubsub xmlns='{PUBSUB}'><items node='{DEVICELIST}'/></pubsub>")
    for room in ROOMS:
        join(phone, room, "alice", 20)
    room_mam = phone.iq("set", f"<query xmlns='{MAM}' queryid='muc1'/>", to=ROOMS[0])
    answers = dict(zip(("carbons", "mam", "inbox", "bookmarks", "devices", "room_mam"),
                       await phone.answered(carbons, catch_up, inbox, bookmarks, devices,
                                            room_mam), strict=True))
    # The catch-up, page after page (RSM <after/> the page's last id) until complete.
    pages: list[list[str]] = []
    page_ids: list[str] = []
    queryid, iq_id, fin_iq = "mam1", catch_up, answers["mam"]
    while True:
        got, late = phone.results(f"{{{MAM}}}result", queryid, iq_id)
        assert late == 0, f"{late} results of {queryid} came after its IQ result"
        pages.append([forwarded_body(r) for r in got])
        page_ids += [str(r.get("id")) for r in got]
        fin = fin_iq.find(f"{{{MAM}}}fin")
        assert fin is not None
        if fin.get("complete") == "true":
            break
        queryid = f"mam{len(pages) + 1}"
        last = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last")
        iq_id = phone.iq("set", f"<query xmlns='{MAM}' queryid='{queryid}'><set xmlns='{RSM}'>"
                                f"<max>3</max><after>{last}</after></set></query>")
        (fin_iq,) = await phone.answered(iq_id)
    # Every message from bob arrives once, the stored ones first (docs/offline.md).
    await when(lambda: len(phone.chats_from("bob@localhost")) >= len(stored + live))
    assert phone.chats_from("bob@localhost") == stored + live
    # The archive after "earlier": the stored messages, then what of the live ones was
    # archived when each page was read; each once, in order, whole pages before the result.
    caught = [b for page in pages for b in page]
    assert caught == (stored + live)[:len(caught)] and len(caught) >= len(stored), pages
    assert all(len(page) == 3 for page in pages[:-1]) and len(set(page_ids)) == len(caught)
    # The inbox: one conversation with bob, its results before the IQ result.
    entries, late = phone.results(f"{{{INBOX}}}result", "inbox1", inbox)
    assert late == 0
    senders = [(r.find(f"{{{FORWARD}}}forwarded/{{jabber:client}}message").get("from")
                or "").split("/")[0] for r in entries]
    assert senders.count("bob@localhost") == 1, senders
    # PEP: yesterday's bookmarks and device list.
    items = answers["bookmarks"].findall(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items/{{{PUBSUB}}}item")
    assert sorted(str(i.get("id")) for i in items) == sorted(ROOMS)
    assert answers["devices"].find(".//{eu.siacs.conversations.axolotl}device") is not None
    # Each room: its three messages once as history, before the subject; the first room's
    # archive (XEP-0313 §5) whole before its IQ result.
    for room in ROOMS:
        await when(lambda room=room: room_bodies(phone, room)[1])
        assert room_bodies(phone, room) == ([f"{room[:3]} {n}" for n in range(3)], True)
    got, late = phone.results(f"{{{MAM}}}result", "muc1", room_mam)
    assert late == 0 and [forwarded_body(r) for r in got] == [f"one {n}" for n in range(3)]

    # A second device: carbons (XEP-0280) of what the other device sends and receives, each
    # once, and nothing of what the phone already had.
    laptop = await device(server, "alice@localhost/laptop")
    laptop.client.send_presence()
    await laptop.answered(laptop.iq("set", f"<enable xmlns='{CARBONS}'/>"))
    bob.client.send_message(mto="alice@localhost/phone", mbody="to the phone", mtype="chat")
    phone.client.send_message(mto="bob@localhost", mbody="from the phone", mtype="chat")
    await when(lambda: len(laptop.carbons("received") + laptop.carbons("sent")) >= 2)
    await when(lambda: "from the phone" in bob.chats_from("alice@localhost"))
    assert laptop.carbons("received") == ["to the phone"]
    assert laptop.carbons("sent") == ["from the phone"]
    assert laptop.chats_from("bob@localhost") == []

    # The phone's connection dies with messages in flight; it resumes (XEP-0198 §5) and
    # gets each once, in order; the laptop gets each carbon once.
    resumed = asyncio.get_running_loop().create_future()
    phone.client.add_event_handler("session_resumed",
                                   lambda _: resumed.done() or resumed.set_result(True))
    cut = [f"cut {n}" for n in range(4)]
    for body in cut[:2]:
        bob.client.send_message(mto="alice@localhost/phone", mbody=body, mtype="chat")
    phone.client.abort()
    for body in cut[2:]:
        bob.client.send_message(mto="alice@localhost/phone", mbody=body, mtype="chat")
    await when(lambda: [s.state for s in sessions(server, "alice@localhost/phone")]
               == [C2SState.RESUME_SESSION])
    phone.client.connect("127.0.0.1", server.tls_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(resumed, 10)
    expected = stored + live + ["to the phone"] + cut
    await when(lambda: len(phone.chats_from("bob@localhost")) >= len(expected))
    await when(lambda: len(laptop.carbons("received")) >= 1 + len(cut))
    # One more round trip each way: anything duplicated would be in by now.
    await phone.answered(phone.iq("get", "<ping xmlns='urn:xmpp:ping'/>"))
    await laptop.answered(laptop.iq("get", "<ping xmlns='urn:xmpp:ping'/>"))
    assert phone.chats_from("bob@localhost") == expected
    assert laptop.carbons("received") == ["to the phone"] + cut
    # Nothing bounced, nothing left in storage.
    for dev in (phone, laptop, bob, carol):
        assert dev.errors() == []
    assert await offline.count_offline("localhost", "alice") == 0
    await disconnect(phone.client, laptop.client, bob.client, carol.client)
