"""A phone that sleeps: XEP-0357 push walked the way Conversations, Monal and Siskin use it,
with slixmpp phones over STARTTLS (XEP-0198 on, their network cut without closing the stream),
a slixmpp XEP-0114 component playing the app server (XEP-0357 §3: the pubsub service that
receives each `publish` with the summary form), and several devices on one account, each
with its own node. What each test checks failed before the fix it names."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.c2s import STREAM_MANAGEMENT
from suricate.core.server import Server
from suricate.protocol.c2s import C2SState
from tests.e2e.harness import Client, connect, disconnect, eventually
from tests.e2e.test_component import SECRET
from tests.pusher.test_push import (
    APP,
    PUBSUB,
    PUSH,
    AppServer,
    _session,
    enable,
    push_server,
    summary,
)

OPTIONS = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
           "http://jabber.org/protocol/pubsub#publish-options</value></field>"
           "<field var='secret'><value>{}</value></field></x>")


async def asleep(server: Server, resource: str, node: str, form: str = "") -> Client:
    """alice's device ``resource``: SM on, present, push enabled with ``node``, then its
    network gone (the session waits to be resumed, XEP-0198 §5)."""
    jid = f"alice@localhost/{resource}"
    phone = await connect(server, jid, "secret", plugins=("xep_0198",))
    phone.send_presence()
    await eventually(lambda: STREAM_MANAGEMENT.get(_session(server, jid)) is not None)
    await enable(phone, node=node, form=form)
    phone.abort()
    await eventually(lambda: getattr(_session(server, jid), "state", None)
                     == C2SState.RESUME_SESSION)
    return phone


async def pushes(app: AppServer, wait: float = 0.6) -> list[tuple[str, str, str, Any]]:
    """(node, message-count, last-message-body, the IQ) of each publish until none comes
    for ``wait`` s, in node order (the nodes of one message are published concurrently)."""
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            _, iq = await asyncio.wait_for(app.published.get(), wait)
            publish = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
            form = summary(iq)
            got.append((publish.get("node"), form["message-count"],
                        form.get("last-message-body", ""), iq))
    return sorted(got, key=lambda p: (p[0], int(p[1])))


def short(got: list[tuple[str, str, str, Any]]) -> list[tuple[str, str, str]]:
    return [(node, count, body) for node, count, body, _ in got]


async def test_each_device_is_woken_once_for_what_it_missed(tmp_path: Path) -> None:
    # Before: a message to the bare JID reached both sleeping phones as two copies, each
    # notified to every node (4 publishes, counts 1 and 2 for one message); the tablet, connected,
    # was woken too; a message to one phone's full JID woke the other.
    async with push_server(tmp_path) as (server, app):
        await asleep(server, "phone1", "node1")
        await asleep(server, "phone2", "node2")
        tablet = await connect(server, "alice@localhost/tablet", "secret")
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            tablet.send_presence()
            await enable(tablet, node="node3")
            bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
            assert short(await pushes(app)) == [("node1", "1", "one"), ("node2", "1", "one")]
            bob.send_message(mto="alice@localhost/phone1", mbody="two", mtype="chat")
            assert short(await pushes(app)) == [("node1", "2", "two")]
            # The tablet's session ends: its registration is woken like any device away, once
            # for the two copies of the message the phones' sessions hold.
            await disconnect(tablet)
            await eventually(lambda: _session(server, "alice@localhost/tablet") is None)
            bob.send_message(mto="alice@localhost", mbody="three", mtype="chat")
            assert short(await pushes(app)) == [
                ("node1", "3", "three"), ("node2", "2", "three"), ("node3", "1", "three")]
        finally:
            await disconnect(bob)


async def test_what_wakes_a_phone_and_what_does_not(tmp_path: Path) -> None:
    # XEP-0357 §7 leaves it to the server. Before: an empty <body/> woke the phone (MUC
    # Light's affiliation notices carry one), and a MUC Light room's message to a member with
    # no session (not stored offline, as RFC 6121 §8.5.2.2.1 has groupchat) woke nobody,
    # where 6.4 notifies it.
    async with push_server(tmp_path, "[modules.mod_muc_light]\n") as (server, app):
        phone = await connect(server, "alice@localhost/phone", "secret")
        await enable(phone, node="node1")
        await disconnect(phone)
        await eventually(lambda: _session(server, "alice@localhost/phone") is None)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_presence()
            create = bob.Iq()
            create["type"], create["to"] = "set", "room@muclight.localhost"
            create.append(ET.fromstring(
                "<query xmlns='urn:xmpp:muclight:0#create'><configuration><roomname>R"
                "</roomname></configuration><occupants><user affiliation='member'>"
                "alice@localhost</user></occupants></query>"))
            await create.send(timeout=5)
            for raw in (
                "<message to='alice@localhost' type='chat'><body/></message>",
                "<message to='alice@localhost' type='chat'><composing "
                "xmlns='http://jabber.org/protocol/chatstates'/></message>",
                "<message to='alice@localhost' type='chat'><received xmlns='urn:xmpp:receipts' "
                "id='m1'/><store xmlns='urn:xmpp:hints'/></message>",
                "<message to='alice@localhost' type='chat'><displayed "
                "xmlns='urn:xmpp:chat-markers:0' id='m1'/><store xmlns='urn:xmpp:hints'/>"
                "</message>",
            ):
                bob.send_raw(raw)
            assert short(await pushes(app)) == []
            bob.send_message(mto="room@muclight.localhost", mbody="in the group",
                             mtype="groupchat")
            (node, count, body, iq), = await pushes(app)
            assert (node, count, body) == ("node1", "1", "in the group")
            assert summary(iq)["last-message-sender"].startswith("room@muclight.localhost")
            # OMEMO without a fallback body: no text to show, but a message to wake up for.
            bob.send_raw("<message to='alice@localhost' type='chat'><encrypted "
                         "xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>"
                         "AA==</key><iv>AA==</iv></header><payload>AA==</payload></encrypted>"
                         "<store xmlns='urn:xmpp:hints'/></message>")
            (node, count, body, iq), = await pushes(app)
            assert (node, count) == ("node1", "2")
            assert "last-message-body" not in summary(iq)
        finally:
            await disconnect(bob)


async def test_the_phone_back_with_a_new_login_stops_pushes_and_gets_each_message_once(
        tmp_path: Path) -> None:
    # Conversations after its resumption failed (or Monal after a restart): a new login with
    # the same resource, push enabled again (a new secret), while the old session still waits.
    async with push_server(tmp_path) as (server, app):
        await asleep(server, "phone", "node1", OPTIONS.format("old"))
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="m1", mtype="chat")
            bob.send_message(mto="alice@localhost", mbody="m2", mtype="chat")
            assert short(await pushes(app)) == [("node1", "1", "m1"), ("node1", "2", "m2")]
            phone = await connect(server, "alice@localhost/phone", "secret",
                                  plugins=("xep_0198",))
            await enable(phone, node="node1", form=OPTIONS.format("new"))
            phone.send_presence()
            bob.send_message(mto="alice@localhost", mbody="m3", mtype="chat")
            got: list[str] = []
            while len(got) < 3:
                got.append((await phone.next_message(5))["body"])
            # m1 and m2 come from offline storage (the old session handed them there, the new
            # one not yet available), m3 live: possibly first, each once.
            assert sorted(got) == ["m1", "m2", "m3"]
            assert await pushes(app) == []
            assert phone.messages.empty()  # nothing twice
            module = server.modules["mod_event_pusher"]
            assert len(await module.store.registrations("localhost", "alice")) == 1
            # Asleep again: counted from one, with the publish-options enabled last (§5).
            phone.abort()
            await eventually(lambda: getattr(_session(server, "alice@localhost/phone"),
                                             "state", None) == C2SState.RESUME_SESSION)
            bob.send_message(mto="alice@localhost", mbody="m4", mtype="chat")
            (node, count, body, iq), = await pushes(app)
            assert (node, count, body) == ("node1", "1", "m4")
            secret = iq.xml.find(f".//{{{PUBSUB}}}publish-options/{{jabber:x:data}}x/"
                                 "{jabber:x:data}field[@var='secret']")
            assert secret is not None and secret.findtext("{jabber:x:data}value") == "new"
        finally:
            await disconnect(bob)


def test_the_setup_of_mongooseim_issue_3812_loads_with_its_enhanced_plugin(
        tmp_path: Path) -> None:
    # The configuration of MongooseIM issue #3812 (PubSub-less push to MongoosePush) names
    # 6.4's enhanced plugin; before, only the default one was accepted.
    from suricate.config import parse_config

    cfg = parse_config("""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
[outgoing_pools.http.mongoose_push_http.connection]
host = "https://localhost:8443"
[modules.mod_event_pusher.push]
wpool.workers = 200
plugin_module = "mod_event_pusher_push_plugin_enhanced"
virtual_pubsub_hosts = ["pubsub.@HOST@"]
[modules.mod_push_service_mongoosepush]
pool_name = "mongoose_push_http"
api_version = "v3"
""", tmp_path)
    assert cfg["modules"]["mod_event_pusher"]["push"]["plugin_module"] \
        == "mod_event_pusher_push_plugin_enhanced"


async def test_a_client_that_enabled_once_is_woken_under_its_next_resource(
        tmp_path: Path) -> None:
    # Push enabled in one session, not again after a later login under another resource (a
    # Bind 2 server gives a new one at each login): the registration is the device's still.
    async with push_server(tmp_path) as (server, app):
        first = await connect(server, "alice@localhost/first", "secret")
        await enable(first, node="node1")
        await disconnect(first)
        await eventually(lambda: _session(server, "alice@localhost/first") is None)
        jid = "alice@localhost/second"
        phone = await connect(server, jid, "secret", plugins=("xep_0198",))
        phone.send_presence()
        await eventually(lambda: STREAM_MANAGEMENT.get(_session(server, jid)) is not None)
        phone.abort()
        await eventually(lambda: getattr(_session(server, jid), "state", None)
                         == C2SState.RESUME_SESSION)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="still there?", mtype="chat")
            assert short(await pushes(app)) == [("node1", "1", "still there?")]
        finally:
            await disconnect(bob)


async def test_an_app_server_away_for_a_while_keeps_its_registrations(
        tmp_path: Path, monkeypatch: Any) -> None:
    # XEP-0357 §7.1: an error SHOULD disable the registration, but one deemed transient MAY
    # keep it "until a sufficient number of errors have been received in a row". Before, the
    # app server's component restarting made the first notification fail with our own
    # remote-server-not-found, which removed the registration: a phone that only push wakes
    # (iOS) was never woken again.
    from suricate.modules.mod_event_pusher import push

    monkeypatch.setattr(push, "UNREACHABLE_IN_A_ROW", 2, raising=False)
    async with push_server(tmp_path) as (server, app):
        phone = await connect(server, "alice@localhost/phone", "secret")
        await enable(phone, node="node1")
        iq = phone.make_iq_set()
        iq.append(ET.fromstring(f"<enable xmlns='{PUSH}' jid='push.nowhere.invalid' "
                                "node='typo'/>"))
        await iq.send(timeout=5)
        await disconnect(phone)
        await eventually(lambda: _session(server, "alice@localhost/phone") is None)
        module = server.modules["mod_event_pusher"]

        async def registered() -> list[tuple[str, str]]:
            return [(r.service, r.node)
                    for r in await module.store.registrations("localhost", "alice")]

        app.disconnect()
        await asyncio.wait_for(asyncio.shield(app.ended), 5)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="m1", mtype="chat")
            await asyncio.sleep(2.5)  # both fail: remote-server-not-found (DNS, 1 s)
            assert await registered() == [(APP, "node1"), ("push.nowhere.invalid", "typo")]
            back = AppServer(APP, SECRET)
            back.connect("127.0.0.1", server.cfg["listen"]["component"][0]["port"])
            await asyncio.wait_for(asyncio.shield(back.started), 10)
            try:
                bob.send_message(mto="alice@localhost", mbody="m2", mtype="chat")
                (node, count, body, _), = await pushes(back)
                assert (node, count, body) == ("node1", "2", "m2")
                # The JID nobody serves: gone at its second failure in a row.

                async def typo_gone() -> bool:
                    return await registered() == [(APP, "node1")]
                await eventually(typo_gone, timeout=5)
            finally:
                back.disconnect()
        finally:
            await disconnect(bob)


async def test_an_app_server_that_never_answers_loses_its_registration(
        tmp_path: Path, monkeypatch: Any) -> None:
    # Before, a registration whose app server never answered was kept for ever, each
    # notification waiting 10 s for nothing (as 6.4 does).
    from suricate.modules.mod_event_pusher import push

    monkeypatch.setattr(push, "UNREACHABLE_IN_A_ROW", 2, raising=False)
    monkeypatch.setattr(push, "PUBLISH_TIMEOUT", 0.3)
    async with push_server(tmp_path) as (server, app):
        app.remove_handler("publish")
        silent: list[Any] = []
        app.register_handler(Callback("silent", MatchXPath(
            f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"), silent.append))
        phone = await connect(server, "alice@localhost/phone", "secret")
        await enable(phone, node="node1")
        await disconnect(phone)
        await eventually(lambda: _session(server, "alice@localhost/phone") is None)
        module = server.modules["mod_event_pusher"]
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="m1", mtype="chat")
            await eventually(lambda: len(silent) == 1)
            await asyncio.sleep(0.6)
            assert len(await module.store.registrations("localhost", "alice")) == 1
            bob.send_message(mto="alice@localhost", mbody="m2", mtype="chat")

            async def gone() -> bool:
                return await module.store.registrations("localhost", "alice") == []
            await eventually(gone)
        finally:
            await disconnect(bob)


async def test_a_sleeping_phone_through_mongoosepush(tmp_path: Path) -> None:
    # The PubSub-less setup (virtual_pubsub_hosts + mod_push_service_mongoosepush), with the
    # phone waiting for resumption: one POST per message, the badge counting, and (before: no
    # tag at all unless the client gave one) the conversation's tag, so that Android keeps one
    # notification per chat.
    from tests.pusher.test_mongoosepush import mongoosepush_server, options_form

    async with mongoosepush_server(tmp_path) as (server, fake):
        jid = "alice@localhost/phone"
        phone = await connect(server, jid, "secret", plugins=("xep_0198",))
        phone.send_presence()
        await eventually(lambda: STREAM_MANAGEMENT.get(_session(server, jid)) is not None)
        iq = phone.make_iq_set()
        iq.append(ET.fromstring(f"<enable xmlns='{PUSH}' jid='push.localhost' node='n1'>"
                                f"{options_form(device_id='tok', service='fcm')}</enable>"))
        await iq.send(timeout=5)
        phone.abort()
        await eventually(lambda: getattr(_session(server, jid), "state", None)
                         == C2SState.RESUME_SESSION)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            for text in ("one", "two"):
                bob.send_message(mto="alice@localhost", mbody=text, mtype="chat")
                path, body = await asyncio.wait_for(fake.requests.get(), 5)
                assert path == "/push/v3/notification/tok"
                assert body["alert"]["body"] == text
                assert (body["alert"]["badge"], body["alert"]["tag"]) == (
                    1 if text == "one" else 2, "bob@localhost")
        finally:
            await disconnect(bob)
