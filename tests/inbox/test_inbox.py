"""mod_inbox and mod_smart_markers end to end: a real Suricate, real slixmpp clients over
direct TLS, the inbox protocol sent as raw IQs (slixmpp has no plugin for it)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_inbox import ModInbox
from suricate.modules.mod_inbox.store import Change
from tests.e2e.harness import Client, connect, disconnect, eventually

INBOX = "erlang-solutions.com:xmpp:inbox:0"
CONV = INBOX + "#conversation"
MARKERS = "urn:xmpp:chat-markers:0"
SMART = "esl:xmpp:smart-markers:0"
FORWARD = "urn:xmpp:forward:0"


async def login(srv: Server, jid: str) -> Client:
    client = await connect(srv, jid, "pw", direct_tls=True)
    client.send_presence()
    # Available once the server has processed the presence (on PostgreSQL its handlers wait
    # for the database): a message to the bare JID sent before that is stored offline and
    # may go to another device of the account at its login, not to this one.
    if isinstance(srv, Server):  # (tests/cluster log in to nodes in other processes too)
        full = JID.parse(str(client.boundjid))
        await eventually(lambda: getattr(srv.sessions.lookup(full), "available", False))
    results: asyncio.Queue[Any] = asyncio.Queue()
    client.register_handler(Callback(
        "inbox results", MatchXPath(f"{{jabber:client}}message/{{{INBOX}}}result"),
        lambda msg: results.put_nowait(msg.xml.find(f"{{{INBOX}}}result"))))
    client.inbox_results = results  # type: ignore[attr-defined]
    return client


async def iq(client: Client, payload: str, type_: str = "set") -> ET.Element:
    stanza = client.make_iq_set() if type_ == "set" else client.make_iq_get()
    stanza.xml.append(ET.fromstring(payload))
    result = await stanza.send(timeout=5)
    return result.xml


async def error_of(client: Client, payload: str, type_: str = "set", to: str | None = None
                   ) -> str:
    stanza = client.make_iq_set() if type_ == "set" else client.make_iq_get()
    if to is not None:
        stanza["to"] = to
    stanza.xml.append(ET.fromstring(payload))
    with pytest.raises(IqError) as err:
        await stanza.send(timeout=5)
    return str(err.value.iq["error"]["condition"])


async def error_text(client: Client, payload: str) -> tuple[str, str]:
    """The condition and text of the error a set IQ gets."""
    stanza = client.make_iq_set()
    stanza.xml.append(ET.fromstring(payload))
    with pytest.raises(IqError) as err:
        await stanza.send(timeout=5)
    return str(err.value.iq["error"]["condition"]), str(err.value.iq["error"]["text"])


def form(**fields: str) -> str:
    xml = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (f"<x xmlns='jabber:x:data' type='submit'><field type='hidden' var='FORM_TYPE'>"
            f"<value>{INBOX}</value></field>{xml}</x>")


async def inbox(client: Client, rsm: str = "", **fields: str) -> tuple[list[dict[str, Any]],
                                                                       dict[str, Any]]:
    """The client's inbox: one dict per <result/> (in the order received) and the fin."""
    body = (form(**fields) if fields else "") + rsm
    fin = await iq(client, f"<inbox xmlns='{INBOX}' queryid='q1'>{body}</inbox>")
    queue: asyncio.Queue[Any] = client.inbox_results  # type: ignore[attr-defined]
    entries = []
    while not queue.empty():
        r = queue.get_nowait()
        msg = r.find(f"{{{FORWARD}}}forwarded/{{jabber:client}}message")
        entries.append({"jid": JID.parse(msg.get("to")).bare if msg.get("from", "").startswith(
            str(client.boundjid.bare)) else JID.parse(msg.get("from")).bare,
            "unread": int(r.get("unread")), "queryid": r.get("queryid"),
            "body": msg.findtext("{jabber:client}body"), "box": r.findtext(f"{{{INBOX}}}box"),
            "mute": r.findtext(f"{{{INBOX}}}mute")})
    done = fin.find(f"{{{INBOX}}}fin")
    totals = {k: int(done.findtext(f"{{{INBOX}}}{k}")) for k in
              ("count", "unread-messages", "active-conversations")}
    rsm_set = done.find("{http://jabber.org/protocol/rsm}set")
    totals["set"] = rsm_set is not None
    if rsm_set is not None:
        totals["last"] = rsm_set.findtext("{http://jabber.org/protocol/rsm}last")
    return entries, totals


def summary(entries: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(str(e["jid"]), e["unread"]) for e in entries]


async def chat(sender: Client, to: str, body: str, msg_id: str) -> None:
    msg = sender.make_message(mto=to, mbody=body, mtype="chat")
    msg["id"] = msg_id
    msg.send()


async def test_inbox_counts_markers_and_properties(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    carol = await login(server, "carol@localhost/c")
    for i in range(3):
        await chat(alice, "bob@localhost", f"a{i}", f"a{i}")
    for _ in range(3):
        await bob.next_message()
    await chat(carol, "bob@localhost", "c0", "c0")
    await bob.next_message()
    entries, totals = await inbox(bob)
    # Newest first: carol's message came last.
    assert summary(entries) == [("carol@localhost", 1), ("alice@localhost", 3)]
    assert [e["body"] for e in entries] == ["c0", "a2"]
    assert {e["queryid"] for e in entries} == {"q1"} and entries[0]["box"] == "inbox"
    assert totals == {"count": 2, "unread-messages": 4, "active-conversations": 2,
                      "set": True, "last": totals["last"]}
    # XEP-0333: bob displays an older message of alice's (nothing), then the last one.
    for marked in ("a0", "a2"):
        marker = bob.make_message(mto="alice@localhost/a", mtype="chat")
        marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='{marked}'/>"))
        marker.send()
        entries, _ = await inbox(bob)
        assert dict(summary(entries))["alice@localhost"] == (3 if marked == "a0" else 0)
    # bob answers carol: read for bob, one unread for carol; alice sees her own message read.
    await chat(bob, "carol@localhost", "hi carol", "b0")
    await carol.next_message()
    entries, totals = await inbox(bob, hidden_read="true")
    assert entries == [] and totals["count"] == 0
    entries, _ = await inbox(carol)
    assert summary(entries) == [("bob@localhost", 1)]
    entries, _ = await inbox(alice, order="asc")
    assert summary(entries) == [("bob@localhost", 0)] and entries[0]["body"] == "a2"

    # Conversation properties (#conversation): archive, mute, read, custom box.
    conv = f"<query xmlns='{CONV}' jid='alice@localhost'>"
    result = await iq(bob, conv + "<box>archive</box></query>")
    q = result.find(f"{{{CONV}}}query")
    assert q.findtext(f"{{{CONV}}}box") == "archive" and q.findtext(f"{{{CONV}}}archive") == "true"
    entries, _ = await inbox(bob, box="inbox")
    assert summary(entries) == [("carol@localhost", 0)]
    entries, _ = await inbox(bob, archive="true")
    assert summary(entries) == [("alice@localhost", 0)]
    result = await iq(bob, conv + "<mute>3600</mute><read>false</read></query>")
    q = result.find(f"{{{CONV}}}query")
    assert q.findtext(f"{{{CONV}}}mute", "0") != "0" and q.findtext(f"{{{CONV}}}read") == "false"
    props = (await iq(bob, f"<query xmlns='{CONV}' jid='alice@localhost' complete='true'/>",
                      "get")).find(f"{{{CONV}}}query")
    assert props.find(f"{{{FORWARD}}}forwarded") is not None
    assert props.get("jid") == "alice@localhost"  # 6.4 names the conversation
    form_type = (await iq(bob, f"<query xmlns='{CONV}'/>", "get")).find(
        ".//{jabber:x:data}field[@var='FORM_TYPE']/{jabber:x:data}value")
    assert form_type is not None and form_type.text == CONV  # XEP-0068, as 6.4
    assert props.findtext(f"{{{CONV}}}read") == "false"
    await iq(bob, conv + "<box>work</box><mute>0</mute></query>")
    entries, _ = await inbox(bob, box="work")
    assert summary(entries) == [("alice@localhost", 1)] and entries[0]["mute"] == "0"
    # Into the bin; a new message brings it back to the inbox; empty-bin empties it.
    await iq(bob, conv + "<box>bin</box></query>")
    entries, _ = await inbox(bob)
    assert summary(entries) == [("carol@localhost", 0)]  # "all" leaves the bin out
    await chat(alice, "bob@localhost", "back", "a3")
    await bob.next_message()
    entries, _ = await inbox(bob, box="inbox")
    assert summary(entries) == [("alice@localhost", 2), ("carol@localhost", 0)]
    await iq(bob, f"<query xmlns='{CONV}' jid='carol@localhost'><box>bin</box></query>")
    emptied = await iq(bob, f"<empty-bin xmlns='{INBOX}'/>")
    # 6.4's answer: <empty-bin><num>1</num></empty-bin> (and Suricate's num attribute).
    assert emptied.findtext(f"{{{INBOX}}}empty-bin/{{{INBOX}}}num") == "1"
    assert emptied.find(f"{{{INBOX}}}empty-bin").get("num") == "1"

    # Smart markers: bob's displayed marker to alice, seen by both.
    for client in (alice, bob):
        peer = "bob@localhost" if client is alice else "alice@localhost"
        answer = await iq(client, f"<query xmlns='{SMART}' peer='{peer}'/>", "get")
        markers = answer.findall(f"{{{SMART}}}query/{{{SMART}}}marker")
        assert [(m.get("from"), m.get("id"), m.get("type")) for m in markers] == [
            ("bob@localhost", "a2", "displayed")]
    await disconnect(alice, bob, carol)


def stanza_id_of(msg: Any, by: str) -> str:
    """The XEP-0359 stanza-id that ``by`` gave a message the client received."""
    for sid in msg.xml.findall("{urn:xmpp:sid:0}stanza-id"):
        if sid.get("by") == by:
            return str(sid.get("id"))
    raise AssertionError(f"no stanza-id by {by} in {msg}")


async def test_a_marker_naming_the_recipient_stanza_id(server: Server) -> None:
    """A client that knows messages by the stanza-id its own server gave them (XEP-0359, ``by``
    the account's bare JID: the archive id of mod_mam) marks them with it: the conversation
    is read when that names the last message, as when the marker names its id attribute."""
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    for i in range(2):
        await chat(alice, "bob@localhost", f"s{i}", f"s{i}")
    ids = [stanza_id_of(await bob.next_message(), "bob@localhost") for _ in range(2)]
    for marked, unread in ((ids[0], 2), (ids[1], 0)):
        marker = bob.make_message(mto="alice@localhost/a", mtype="chat")
        marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='{marked}'/>"))
        marker.send()
        entries, _ = await inbox(bob)
        assert dict(summary(entries))["alice@localhost"] == unread
    await disconnect(alice, bob)


async def test_a_blocked_sender_gets_no_inbox_entry(server: Server) -> None:
    """XEP-0191 §3.3: a blocked JID's message is not delivered, so it is not unread news
    either; the sender's own entry stays. The same for a message a XEP-0016 privacy list
    denies (§2.9): bob's active list drops carol's messages."""
    bob = await login(server, "bob@localhost/b")
    await iq(bob, "<block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block>")
    await iq(bob, "<query xmlns='jabber:iq:privacy'><list name='quiet'><item type='jid' "
                  "value='carol@localhost' action='deny' order='1'><message/></item>"
                  "<item action='allow' order='2'/></list></query>")
    await iq(bob, "<query xmlns='jabber:iq:privacy'><active name='quiet'/></query>")
    alice = await login(server, "alice@localhost/a")
    carol = await login(server, "carol@localhost/c")
    await chat(alice, "bob@localhost", "you there?", "m1")
    await chat(alice, "carol@localhost", "hi carol", "m2")
    await chat(carol, "bob@localhost", "denied", "m3")
    # Ordered after alice's and carol's messages to bob on the same streams: once their
    # inboxes show the conversations, bob's side was judged.
    for _ in range(50):
        entries, _totals = await inbox(alice)
        if len(entries) == 2 and len((await inbox(carol))[0]) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(str(e["jid"]) for e in entries) == ["bob@localhost", "carol@localhost"]
    entries, totals = await inbox(bob)
    assert entries == [] and totals["unread-messages"] == 0
    await disconnect(alice, bob, carol)


async def test_properties_reach_every_device(server: Server) -> None:
    """The extension's "Setting properties": bob's phone reads the conversation; his desktop
    is told (a message with the new properties, the request's queryid as in 6.4) and its
    inbox shows the same count. Bad requests get 6.4's texts."""
    from slixmpp.xmlstream.handler import Callback as Handler

    alice = await login(server, "alice@localhost/a")
    phone = await login(server, "bob@localhost/phone")
    desk = await login(server, "bob@localhost/desk")
    notices: asyncio.Queue[Any] = asyncio.Queue()
    desk.register_handler(Handler("notices", MatchXPath(f"{{jabber:client}}message/{{{CONV}}}x"),
                                  lambda m: notices.put_nowait(m.xml)))
    for i in range(2):
        await chat(alice, "bob@localhost", f"p{i}", f"p{i}")
        await phone.next_message()
    assert summary((await inbox(desk))[0]) == [("alice@localhost", 2)]
    await iq(phone, f"<query xmlns='{CONV}' jid='alice@localhost' queryid='r1'>"
                    "<read>true</read></query>")
    notice = (await asyncio.wait_for(notices.get(), 5)).find(f"{{{CONV}}}x")
    assert (notice.get("jid"), notice.get("queryid"), notice.findtext(f"{{{CONV}}}read")) == (
        "alice@localhost", "r1", "true")
    assert summary((await inbox(desk))[0]) == [("alice@localhost", 0)]
    conv = f"<query xmlns='{CONV}' jid='alice@localhost'>"
    for payload, expected in (
            (conv + "</query>", ("bad-request", "no-property")),
            (conv + "<box>nowhere</box></query>", ("bad-request", "invalid-box")),
            (f"<query xmlns='{CONV}'><read>true</read></query>", ("bad-request", "jid-required")),
            (f"<query xmlns='{CONV}' jid='nobody@localhost'><read>true</read></query>",
             ("item-not-found", "Entry not found"))):
        assert await error_text(phone, payload) == expected
    await disconnect(alice, phone, desk)


async def test_a_message_not_to_be_stored_is_not_kept(server: Server) -> None:
    """XEP-0334 §4: a message with a no-store hint is kept neither by offline storage nor by
    the archive, so not by the inbox either (6.4's is_archivable_message): to offline dave it
    would be an unread message that no client can ever fetch."""
    alice = await login(server, "alice@localhost/a")
    await chat(alice, "dave@localhost", "kept", "k1")
    for hint in ("no-store", "no-permanent-store"):
        msg = alice.make_message(mto="dave@localhost", mbody=f"{hint}!", mtype="chat")
        msg.xml.append(ET.fromstring(f"<{hint} xmlns='urn:xmpp:hints'/>"))
        msg.send()
    entries, _ = await inbox(alice)  # after the three messages on alice's stream
    assert [(str(e["jid"]), e["body"]) for e in entries] == [("dave@localhost", "kept")]
    # Offline dave's entry is written by the offline path, a task of its own that waits for
    # the database: done before dave logs in (on PostgreSQL under load it could still run).
    await server.drain()
    dave = await login(server, "dave@localhost/d")
    entries, _ = await inbox(dave)
    assert [(e["unread"], e["body"]) for e in entries] == [(1, "kept")]
    await disconnect(alice, dave)


async def test_bad_input_paging_and_offline(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    module = server.modules["mod_inbox"]
    assert isinstance(module, ModInbox)
    # Twelve conversations written as the message path would: max_result_limit (10) caps.
    module.writer.pending.clear()  # type: ignore[union-attr]
    await module.store.apply([Change("localhost", "alice", f"p{i}@remote.example",
                                     f"<message from='p{i}@remote.example' id='m{i}'>"
                                     f"<body>{i}</body></message>", f"m{i}", 1000 + i,
                                     unread=1) for i in range(12)])
    entries, totals = await inbox(alice, rsm="<set xmlns='http://jabber.org/protocol/rsm'>"
                                             "<max>100</max></set>")
    assert len(entries) == 10 and totals["count"] == 12 and totals["unread-messages"] == 12
    # XEP-0059 paging with the fin's <last/>: no gap, no duplicate.
    seen: list[str] = []
    after = ""
    while True:
        entries, totals = await inbox(
            alice, rsm=f"<set xmlns='http://jabber.org/protocol/rsm'><max>5</max>{after}</set>")
        if not entries:
            assert totals["set"] and totals.get("last") is None  # 6.4: an empty <set/>
            break
        seen += [str(e["jid"]) for e in entries]
        after = f"<after>{totals['last']}</after>"
    assert seen == [f"p{i}@remote.example" for i in range(11, -1, -1)]
    # XEP-0059 §2.5: an empty <before/> is the last page (the oldest, still newest first).
    entries, _ = await inbox(alice, rsm="<set xmlns='http://jabber.org/protocol/rsm'>"
                                        "<max>2</max><before/></set>")
    assert [str(e["jid"]) for e in entries] == ["p1@remote.example", "p0@remote.example"]
    # 6.4's texts for an unknown form field and an RSM index.
    assert await error_text(alice, f"<inbox xmlns='{INBOX}'>{form(colour='red')}</inbox>") \
        == ("bad-request", "Unknown inbox form field=colour, value=red")
    assert await error_text(alice, f"<inbox xmlns='{INBOX}'><set xmlns='http://jabber.org/"
                                   "protocol/rsm'><index>1</index></set></inbox>") \
        == ("feature-not-implemented", "Inbox does not expose a total count and indexes")
    # Bad input: each a stanza error, nothing changed.
    for bad in (form(start="yesterday"), form(colour="red"), form(box="nowhere"),
                form(order="sideways"), "<set xmlns='http://jabber.org/protocol/rsm'>"
                                         "<max>-1</max></set>", "<bogus/>"):
        assert await error_of(alice, f"<inbox xmlns='{INBOX}'>{bad}</inbox>") == "bad-request"
    conv = f"<query xmlns='{CONV}' jid='p1@remote.example'>"
    assert await error_of(alice, conv + "<box>nowhere</box></query>") == "bad-request"
    assert await error_of(alice, conv + "<mute>-5</mute></query>") == "bad-request"
    assert await error_of(alice, conv + "<mute>99999999999999</mute></query>") == "bad-request"
    assert await error_of(alice, f"<query xmlns='{CONV}' jid='nobody@localhost'>"
                                 "<read>true</read></query>") == "item-not-found"
    assert await error_of(alice, f"<inbox xmlns='{INBOX}'/>", to="bob@localhost") == "forbidden"
    entries, totals = await inbox(alice)
    assert totals["count"] == 12 and all(e["box"] == "inbox" for e in entries)
    # The form a client asks for first.
    got = await iq(alice, f"<query xmlns='{INBOX}'/>", "get")
    fields = {f.get("var") for f in got.iter("{jabber:x:data}field")}
    assert {"start", "end", "order", "hidden_read", "box", "archive"} <= fields

    # An offline recipient: its entry is there when it comes online.
    await chat(alice, "dave@localhost", "while you were away", "off1")
    dave = await login(server, "dave@localhost/d")
    # Once dave has it, the server has handled it (its inbox entry is pending at least):
    # alice's stream may be read after dave's login on a loaded machine.
    assert (await dave.next_message())["body"] == "while you were away"
    entries, _ = await inbox(dave)
    assert summary(entries) == [("alice@localhost", 1)]
    # Removing the account removes its inbox and markers (user_tables and the hook).
    marker = dave.make_message(mto="alice@localhost", mtype="chat")
    marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='off1'/>"))
    marker.send()
    entries, _ = await inbox(dave)  # the marker was handled before this query
    assert summary(entries) == [("alice@localhost", 0)]
    await disconnect(dave)
    await server.auth.remove(JID.parse("dave@localhost"))
    assert await module.store.all_entries("localhost", "dave") == []
    markers = server.modules["mod_smart_markers"]
    assert await markers.store.of_user("localhost", "dave") == []  # type: ignore[attr-defined]
    await disconnect(alice)


async def test_groupchat_muc(tmp_path: Any) -> None:
    from slixmpp import JID as SJID

    from tests.e2e.harness import running_server
    from tests.inbox.conftest import INBOX_TOML
    from tests.muc.conftest import create_instant, muc_toml, next_groupchat

    async with running_server(tmp_path, modules=muc_toml() + INBOX_TOML) as srv:
        clients = []
        for name in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
            client = await connect(srv, f"{name}@localhost/r", "pw", direct_tls=True,
                                   plugins=("xep_0030", "xep_0004", "xep_0045"))
            client.send_presence()
            clients.append(client)
        alice, bob = clients
        room = "room@conference.localhost"
        await create_instant(alice, room, "al")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(room), "bo", timeout=5)
        for i in range(2):
            msg = alice.make_message(mto=room, mbody=f"g{i}", mtype="groupchat")
            msg["id"] = f"g{i}"
            msg.send()
            await next_groupchat(bob)
            await next_groupchat(alice)
        for client, unread in ((alice, 0), (bob, 2)):
            results: asyncio.Queue[Any] = asyncio.Queue()
            client.register_handler(Callback(
                "inbox results", MatchXPath(f"{{jabber:client}}message/{{{INBOX}}}result"),
                lambda m, q=results: q.put_nowait(m.xml.find(f"{{{INBOX}}}result"))))
            client.inbox_results = results  # type: ignore[attr-defined]
            entries, _ = await inbox(client)
            assert [(e["unread"], e["body"]) for e in entries] == [(unread, "g1")], client
        # XEP-0333 in the room: bob marks the last message displayed and has read the room.
        marker = bob.make_message(mto=room, mtype="groupchat")
        marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='g1'/>"))
        marker.send()
        entries, _ = await inbox(bob)
        assert [(e["unread"], e["body"]) for e in entries] == [(0, "g1")]
        # 6.4's can_access_room: carol, not in the room, sends it a marker; the room refuses
        # it (XEP-0045 §7.4) and it is not kept among the occupants' smart markers.
        await srv.auth.register(JID.parse("carol@localhost"), "pw")
        carol = await login(srv, "carol@localhost/c")
        errors: asyncio.Queue[Any] = asyncio.Queue()
        carol.add_event_handler("message_error", errors.put_nowait)
        marker = carol.make_message(mto=room, mtype="groupchat")
        marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='g1'/>"))
        marker.send()
        await asyncio.wait_for(errors.get(), 5)
        answer = await iq(alice, f"<query xmlns='{SMART}' peer='{room}'/>", "get")
        assert sorted(m.get("from") for m in answer.iter(f"{{{SMART}}}marker")) == [
            "bob@localhost"]
        await disconnect(alice, bob, carol)


async def test_groupchat_muc_marker_naming_the_room_stanza_id(tmp_path: Any) -> None:
    """XEP-0333 in a group chat: clients (Conversations, Gajim, ...) name the message they
    displayed by the XEP-0359 stanza-id the room gave it (``by`` the room's JID), not by its
    id attribute: that marker reads the room too when it names the last message."""
    from slixmpp import JID as SJID

    from tests.e2e.harness import running_server
    from tests.inbox.conftest import INBOX_TOML
    from tests.muc.conftest import create_instant, muc_toml, next_groupchat

    async with running_server(tmp_path, modules=muc_toml() + INBOX_TOML) as srv:
        clients = []
        for name in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
            client = await login(srv, f"{name}@localhost/r")
            for plugin in ("xep_0030", "xep_0004", "xep_0045"):
                client.register_plugin(plugin)
            clients.append(client)
        alice, bob = clients
        room = "room@conference.localhost"
        await create_instant(alice, room, "al")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(room), "bo", timeout=5)
        ids = []
        for i in range(2):
            msg = alice.make_message(mto=room, mbody=f"g{i}", mtype="groupchat")
            msg["id"] = f"g{i}"
            msg.send()
            ids.append(stanza_id_of(await next_groupchat(bob), room))
            await next_groupchat(alice)
        # A marker naming an older message leaves the count (as one naming its id does).
        for marked, unread in ((ids[0], 2), (ids[1], 0)):
            marker = bob.make_message(mto=room, mtype="groupchat")
            marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='{marked}'/>"))
            marker.send()
            entries, _ = await inbox(bob)
            assert [(e["unread"], e["body"]) for e in entries] == [(unread, "g1")]
        await disconnect(alice, bob)


async def test_groupchat_muc_two_sessions_count_once(tmp_path: Any) -> None:
    """alice is in the room from two devices under one nick (XEP-0045 multi-session): the
    room delivers each message to both sessions, her inbox counts it once."""
    from slixmpp import JID as SJID

    from tests.e2e.harness import running_server
    from tests.inbox.conftest import INBOX_TOML
    from tests.muc.conftest import create_instant, muc_toml, next_groupchat

    async with running_server(tmp_path, modules=muc_toml() + INBOX_TOML) as srv:
        for name in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
        clients = []
        for jid in ("bob@localhost/r", "alice@localhost/phone", "alice@localhost/laptop"):
            client = await login(srv, jid)
            for plugin in ("xep_0030", "xep_0004", "xep_0045"):
                client.register_plugin(plugin)
            clients.append(client)
        bob, phone, laptop = clients
        room = "room@conference.localhost"
        await create_instant(bob, room, "bo")
        for client in (phone, laptop):
            await client.plugin["xep_0045"].join_muc_wait(SJID(room), "al", timeout=5)
        for i in range(2):
            msg = bob.make_message(mto=room, mbody=f"g{i}", mtype="groupchat")
            msg["id"] = f"g{i}"
            msg.send()
            for client in clients:
                await next_groupchat(client)
        entries, _ = await inbox(phone)
        assert [(e["unread"], e["body"]) for e in entries] == [(2, "g1")]
        # Her own message (from the phone) comes back to both sessions: read, not unread.
        msg = phone.make_message(mto=room, mbody="mine", mtype="groupchat")
        msg["id"] = "mine"
        msg.send()
        for client in clients:
            await next_groupchat(client)
        bob.send_message(mto=room, mbody="after", mtype="groupchat")
        for client in clients:
            await next_groupchat(client)
        entries, _ = await inbox(laptop)
        assert [(e["unread"], e["body"]) for e in entries] == [(1, "after")]
        await disconnect(bob, phone, laptop)


async def test_private_markers(tmp_path: Any) -> None:
    from tests.e2e.harness import MODULES_TOML, running_server

    modules = MODULES_TOML + "\n[modules.mod_smart_markers]\nkeep_private = true\n"
    async with running_server(tmp_path, modules=modules) as srv:
        for name in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
        alice = await login(srv, "alice@localhost/a")
        bob = await login(srv, "bob@localhost/b")
        marker = alice.make_message(mto="bob@localhost", mtype="chat")
        marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='x1'/>"))
        marker.xml.append(ET.fromstring("<thread>t1</thread>"))
        marker.send()
        await chat(alice, "bob@localhost", "after the marker", "m1")
        # keep_private: the marker stays with alice; the next message is what bob gets.
        assert (await bob.next_message())["body"] == "after the marker"
        answer = await iq(alice, f"<query xmlns='{SMART}' peer='bob@localhost' thread='t1'/>",
                          "get")
        markers = answer.findall(f"{{{SMART}}}query/{{{SMART}}}marker")
        assert [(m.get("from"), m.get("id"), m.get("thread")) for m in markers] == [
            ("alice@localhost", "x1", "t1")]
        answer = await iq(bob, f"<query xmlns='{SMART}' peer='alice@localhost'/>", "get")
        assert answer.findall(f"{{{SMART}}}query/{{{SMART}}}marker") == []
        assert await error_of(bob, f"<query xmlns='{SMART}'/>", "get") == "bad-request"
        await disconnect(alice, bob)


async def test_smart_markers_per_type_and_thread(server: Server) -> None:
    """MongooseIM 6.4 keeps one marker per (sender, peer, thread, type) (its smart_markers
    key) and, without `thread`, answers for the main thread only (encode_thread(undefined)
    is ''); a set is not-allowed."""
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    for type_, msg_id, thread in (("received", "r1", ""), ("displayed", "d1", ""),
                                  ("displayed", "t1", "<thread>sub</thread>")):
        marker = alice.make_message(mto="bob@localhost/b", mtype="chat")
        marker.xml.append(ET.fromstring(f"<{type_} xmlns='{MARKERS}' id='{msg_id}'/>"))
        if thread:
            marker.xml.append(ET.fromstring(thread))
        marker.send()
    # alice's next IQ comes after her markers on her stream: they have been taken.
    await iq(alice, f"<query xmlns='{SMART}' peer='bob@localhost'/>", "get")

    def seen(answer: ET.Element) -> set[tuple[str | None, ...]]:
        return {(m.get("from"), m.get("type"), m.get("id"), m.get("thread"))
                for m in answer.findall(f"{{{SMART}}}query/{{{SMART}}}marker")}

    main = await iq(bob, f"<query xmlns='{SMART}' peer='alice@localhost'/>", "get")
    assert seen(main) == {("alice@localhost", "received", "r1", None),
                          ("alice@localhost", "displayed", "d1", None)}
    sub = await iq(bob, f"<query xmlns='{SMART}' peer='alice@localhost' thread='sub'/>", "get")
    assert seen(sub) == {("alice@localhost", "displayed", "t1", "sub")}
    assert await error_of(bob, f"<query xmlns='{SMART}' peer='alice@localhost'/>") == \
        "not-allowed"
    await disconnect(alice, bob)


async def test_retracting_the_last_message_leaves_no_trace_of_it(server: Server) -> None:
    """XEP-0424: alice retracts her last message to bob. The entries of both show the
    retraction (its <retract/> names the message, its fallback body is for clients without
    XEP-0424), never the retracted text; the retraction is the conversation's latest message,
    as any message with a body is."""
    retract = "urn:xmpp:message-retract:1"
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    try:
        alice.send_message(mto="bob@localhost", mbody="hello", mtype="chat")
        msg = alice.make_message(mto="bob@localhost", mbody="the secret", mtype="chat")
        msg["id"] = "m2"
        msg.xml.append(ET.fromstring("<origin-id xmlns='urn:xmpp:sid:0' id='m2'/>"))
        msg.send()

        async def seen() -> bool:
            entries, _ = await inbox(bob)
            return [(e["body"], e["unread"]) for e in entries] == [("the secret", 2)]

        await eventually(seen)
        undo = alice.make_message(mto="bob@localhost", mtype="chat",
                                  mbody="This person attempted to retract a previous message.")
        undo.xml.append(ET.fromstring(f"<retract xmlns='{retract}' id='m2'/>"))
        undo.xml.append(ET.fromstring(f"<fallback xmlns='urn:xmpp:fallback:0' for='{retract}'/>"))
        undo.xml.append(ET.fromstring("<store xmlns='urn:xmpp:hints'/>"))
        undo.send()

        async def latest(client: Any) -> Any:
            fin = await iq(client, f"<inbox xmlns='{INBOX}' queryid='q1'/>")
            assert fin.find(f"{{{INBOX}}}fin") is not None
            queue: asyncio.Queue[Any] = client.inbox_results  # type: ignore[attr-defined]
            (result,) = [queue.get_nowait() for _ in range(queue.qsize())]
            return result

        async def retracted(client: Any) -> bool:
            # The inbox is written as the retraction is routed (to each side in its turn):
            # asked until both entries show it, rather than after a fixed wait.
            last = (await latest(client)).find(f"{{{FORWARD}}}forwarded/{{jabber:client}}message")
            found = last.find(f"{{{retract}}}retract")
            return found is not None and found.get("id") == "m2"

        for client in (bob, alice):
            await eventually(lambda client=client: retracted(client))
            result = await latest(client)
            last = result.find(f"{{{FORWARD}}}forwarded/{{jabber:client}}message")
            assert last.find(f"{{{retract}}}retract").get("id") == "m2"
            assert "the secret" not in ET.tostring(last, encoding="unicode")
            assert result.get("unread") == ("3" if client is bob else "0")
    finally:
        await disconnect(alice, bob)


async def test_messages_of_a_timed_out_phone_session_count_once(tmp_path: Any) -> None:
    """bob's phone loses its connection (XEP-0198 session waiting to be resumed); alice
    writes twice, the session times out and hands the two messages to offline storage:
    they were counted when they reached bob, and are not counted again."""
    from pathlib import Path

    from suricate.core.c2s import STREAM_MANAGEMENT
    from suricate.protocol.c2s import C2SState
    from tests.e2e.harness import running_server
    from tests.inbox.conftest import INBOX_TOML
    from tests.mobile.conftest import modules_toml

    # modules_toml has mod_mam and mod_offline already
    modules = modules_toml(INBOX_TOML.replace("[modules.mod_mam]\n[modules.mod_mam.pm]\n", ""))
    async with running_server(Path(tmp_path), modules=modules) as server:
        for name in ("alice", "bob"):
            await server.auth.register(JID.parse(f"{name}@localhost"), "pw")
        server.modules["mod_stream_management"].resume_timeout = 1

        def phone_session() -> Any:
            return next((s for s in server.sessions if str(s.jid) == "bob@localhost/phone"),
                        None)
        phone = await connect(server, "bob@localhost/phone", "pw", plugins=("xep_0198",))
        phone.send_presence()
        await eventually(lambda: STREAM_MANAGEMENT.get(phone_session()) is not None)
        phone.abort()
        await eventually(lambda: getattr(phone_session(), "state", None)
                         == C2SState.RESUME_SESSION)
        alice = await login(server, "alice@localhost/a")
        try:
            alice.send_message(mto="bob@localhost", mbody="m1", mtype="chat")
            alice.send_message(mto="bob@localhost", mbody="m2", mtype="chat")
            await eventually(lambda: phone_session() is None)  # timed out, handed on
            bob = await login(server, "bob@localhost/b")  # gets them from offline storage
            entries, totals = await inbox(bob)
            assert [(e["body"], e["unread"]) for e in entries] == [("m2", 2)]
            assert totals["unread-messages"] == 2
            await disconnect(bob)
        finally:
            await disconnect(alice)
