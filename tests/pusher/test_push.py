"""XEP-0357 push through mod_event_pusher's push backend, end to end: a phone-like slixmpp
client (stream management on) enables push with an app server, loses its connection without
closing the stream, and a message to it makes the server publish a notification that a real
XEP-0114 component standing in for the app server records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.c2s import STREAM_MANAGEMENT
from suricate.core.server import Server
from suricate.protocol.c2s import C2SState
from tests.e2e.harness import Client, connect, disconnect, eventually, free_port, running_server
from tests.e2e.test_component import SECRET, Component, component_toml
from tests.mobile.conftest import add_user, modules_toml

PUBSUB = "http://jabber.org/protocol/pubsub"
PUSH = "urn:xmpp:push:0"
APP = "push.localhost"


class AppServer(Component):
    """An app server stand-in: records each publish, answers result (or the error it is told)."""

    def __init__(self, jid: str, secret: str) -> None:
        super().__init__(jid, secret)
        self.published: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.answer_error: str | None = None
        self.answer_error_type = "cancel"
        self.register_handler(Callback(
            "publish", MatchXPath(f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"),
            self._publish))

    def _publish(self, iq: Any) -> None:
        self.published.put_nowait((time.monotonic(), iq))
        reply = iq.reply()
        if self.answer_error:
            reply["type"] = "error"
            reply["error"]["condition"] = self.answer_error
            reply["error"]["type"] = self.answer_error_type
        reply.send()


def summary(iq: Any) -> dict[str, str]:
    """The XEP-0357 §7 summary form of a publish, as var -> value."""
    xml = iq.xml
    form = xml.find(f".//{{{PUSH}}}notification/{{jabber:x:data}}x")
    assert form is not None, ET.tostring(xml)
    return {f.get("var"): (f.findtext("{jabber:x:data}value") or "")
            for f in form.findall("{jabber:x:data}field")}


@contextlib.asynccontextmanager
async def push_server(tmp: Path, push_opts: str = "") -> AsyncIterator[tuple[Server, AppServer]]:
    plain, tls = free_port(), free_port()
    extra = component_toml(tmp, plain, tls)
    modules = modules_toml(f"[modules.mod_event_pusher.push]\n{push_opts}\n")
    async with running_server(tmp, extra=extra, modules=modules) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        app = AppServer(APP, SECRET)
        app.connect("127.0.0.1", plain)
        await asyncio.wait_for(asyncio.shield(app.started), 10)
        try:
            yield server, app
        finally:
            app.disconnect()


async def enable(client: Client, node: str = "phone-node", form: str = "") -> Any:
    iq = client.make_iq_set()
    iq.append(ET.fromstring(f"<enable xmlns='{PUSH}' jid='{APP}' node='{node}'>{form}</enable>"))
    return await iq.send(timeout=5)


def _session(server: Server, jid: str) -> Any:
    return next((s for s in server.sessions if str(s.jid) == jid), None)


async def test_suspended_phone_gets_a_notification_within_a_second(tmp_path: Path) -> None:
    options = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
               "http://jabber.org/protocol/pubsub#publish-options</value></field>"
               "<field var='secret'><value>app-secret</value></field></x>")
    async with push_server(tmp_path) as (server, app):
        phone = await connect(server, "alice@localhost/phone", "secret", plugins=("xep_0198",))
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            phone.send_presence()
            await eventually(lambda: STREAM_MANAGEMENT.get(
                _session(server, "alice@localhost/phone")) is not None)
            await enable(phone, form=options)
            phone.abort()  # the network is gone; the stream was never closed
            await eventually(lambda: getattr(_session(server, "alice@localhost/phone"),
                                             "state", None) == C2SState.RESUME_SESSION)
            sent = time.monotonic()
            bob.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
            arrived, iq = await asyncio.wait_for(app.published.get(), 5)
            assert arrived - sent < 1.0
            assert iq["from"] == "alice@localhost"
            publish = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
            assert publish is not None and publish.get("node") == "phone-node"
            form = summary(iq)
            assert form["FORM_TYPE"] == "urn:xmpp:push:summary"
            assert form["message-count"] == "1"
            assert form["last-message-sender"] == "bob@localhost/desk"
            assert form["last-message-body"] == "are you there?"
            # The client's publish-options travel with every notification (XEP-0357 §5).
            secret = iq.xml.find(f".//{{{PUBSUB}}}publish-options/{{jabber:x:data}}x/"
                                 "{jabber:x:data}field[@var='secret']")
            assert secret is not None and secret.findtext("{jabber:x:data}value") == "app-secret"
            bob.send_message(mto="alice@localhost", mbody="hello?", mtype="chat")
            _, second = await asyncio.wait_for(app.published.get(), 5)
            assert summary(second)["message-count"] == "2"
        finally:
            await disconnect(bob)


async def test_offline_message_notifies_without_body_when_configured(tmp_path: Path) -> None:
    async with push_server(tmp_path, "include_body = false") as (server, app):
        phone = await connect(server, "alice@localhost/phone", "secret")
        await enable(phone)
        await disconnect(phone)
        await eventually(lambda: _session(server, "alice@localhost/phone") is None)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="secret text", mtype="chat")
            _, iq = await asyncio.wait_for(app.published.get(), 5)
            form = summary(iq)
            assert form["message-count"] == "1"
            assert "last-message-body" not in form
            # A chat state alone is not worth waking a phone for.
            msg = bob.make_message(mto="alice@localhost", mtype="chat")
            msg.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
            msg.send()
            with contextlib.suppress(TimeoutError):
                _, extra = await asyncio.wait_for(app.published.get(), 0.5)
                raise AssertionError(f"unexpected notification {extra}")
        finally:
            await disconnect(bob)


async def test_app_server_error_disables_the_registration(tmp_path: Path) -> None:
    async with push_server(tmp_path) as (server, app):
        phone = await connect(server, "alice@localhost/phone", "secret")
        await enable(phone, node="n1")
        await enable(phone, node="n2")
        await disconnect(phone)
        module = server.modules["mod_event_pusher"]
        assert len(await module.store.registrations("localhost", "alice")) == 2
        app.answer_error = "item-not-found"
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
            for _ in range(2):
                await asyncio.wait_for(app.published.get(), 5)

            async def gone() -> bool:
                return await module.store.registrations("localhost", "alice") == []
            await eventually(gone)
        finally:
            await disconnect(bob)


async def test_enable_disable_and_bad_requests(tmp_path: Path) -> None:
    async with push_server(tmp_path) as (server, app):
        alice = await connect(server, "alice@localhost/phone", "secret",
                              plugins=("xep_0030",))
        try:
            info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost", timeout=5)
            assert PUSH in info["disco_info"]["features"]
            module = server.modules["mod_event_pusher"]
            await enable(alice, node="a")
            await enable(alice, node="b")
            iq = alice.make_iq_set()
            iq.append(ET.fromstring(f"<disable xmlns='{PUSH}' jid='{APP}' node='a'/>"))
            await iq.send(timeout=5)
            regs = await module.store.registrations("localhost", "alice")
            assert [r.node for r in regs] == ["b"]
            iq = alice.make_iq_set()
            iq.append(ET.fromstring(f"<disable xmlns='{PUSH}' jid='{APP}'/>"))
            await iq.send(timeout=5)
            assert await module.store.registrations("localhost", "alice") == []
            # A form of the wrong type, a missing node, someone else's account.
            for payload, to, condition in (
                (f"<enable xmlns='{PUSH}' jid='{APP}' node='x'><x xmlns='jabber:x:data' "
                 "type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>"
                 "</enable>", None, "bad-request"),
                (f"<enable xmlns='{PUSH}' jid='{APP}'/>", None, "bad-request"),
                (f"<enable xmlns='{PUSH}' jid='{APP}' node='x'/>", "bob@localhost",
                 "forbidden"),
            ):
                iq = alice.make_iq_set(ito=to)
                iq.append(ET.fromstring(payload))
                try:
                    await iq.send(timeout=5)
                except slixmpp.exceptions.IqError as err:
                    assert err.iq["error"]["condition"] == condition
                else:
                    raise AssertionError(f"accepted: {payload}")
        finally:
            await disconnect(alice)


async def test_virtual_pubsub_host_hands_notifications_to_the_hook(tmp_path: Path) -> None:
    from suricate.core import hooks as H

    async with push_server(tmp_path, 'virtual_pubsub_hosts = ["virtual.@HOST@"]') as (
            server, app):
        handed: list[tuple[Any, ...]] = []

        async def mongoosepush(accepted: bool, user: Any, service: str, node: str,
                               summary: dict[str, str], options: dict[str, str]) -> bool:
            handed.append((str(user), service, node, summary, options))
            return True

        server.hooks.add(H.PUSH_NOTIFICATIONS, mongoosepush)
        phone = await connect(server, "alice@localhost/phone", "secret")
        iq = phone.make_iq_set()
        iq.append(ET.fromstring(
            f"<enable xmlns='{PUSH}' jid='virtual.localhost' node='device-1'>"
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
            "http://jabber.org/protocol/pubsub#publish-options</value></field>"
            "<field var='device_id'><value>abc</value></field></x></enable>"))
        await iq.send(timeout=5)
        await disconnect(phone)
        await eventually(lambda: _session(server, "alice@localhost/phone") is None)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="wake up", mtype="chat")
            await eventually(lambda: bool(handed))
            assert handed == [("alice@localhost", "virtual.localhost", "device-1",
                               {"message-count": "1", "last-message-sender": "bob@localhost/desk",
                                "last-message-body": "wake up"}, {"device_id": "abc"})]
            assert app.published.empty()  # nothing went out over XMPP
        finally:
            await disconnect(bob)


async def drain(app: AppServer, wait: float) -> list[dict[str, str]]:
    """The summaries of what the app server receives until it gets nothing for ``wait`` s."""
    forms = []
    with contextlib.suppress(TimeoutError):
        while True:
            _, iq = await asyncio.wait_for(app.published.get(), wait)
            forms.append(summary(iq))
    return forms


async def suspended_phone(server: Server) -> Client:
    """alice's phone: SM on, push enabled, then its network gone (resumption pending)."""
    phone = await connect(server, "alice@localhost/phone", "secret", plugins=("xep_0198",))
    phone.send_presence()
    await eventually(lambda: STREAM_MANAGEMENT.get(
        _session(server, "alice@localhost/phone")) is not None)
    await enable(phone)
    phone.abort()
    await eventually(lambda: getattr(_session(server, "alice@localhost/phone"),
                                     "state", None) == C2SState.RESUME_SESSION)
    return phone


async def test_resumption_timeout_does_not_notify_the_same_messages_again(
        tmp_path: Path) -> None:
    async with push_server(tmp_path) as (server, app):
        server.modules["mod_stream_management"].resume_timeout = 1
        await suspended_phone(server)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="m1", mtype="chat")
            bob.send_message(mto="alice@localhost", mbody="m2", mtype="chat")
            # Notified while queued; then the session times out (1 s) and the two messages go
            # to offline storage: the phone was told about them already, the count stays 2.
            forms = await drain(app, 2.5)
            await eventually(lambda: _session(server, "alice@localhost/phone") is None)
            assert [(f["message-count"], f["last-message-body"]) for f in forms] == [
                ("1", "m1"), ("2", "m2")]
            bob.send_message(mto="alice@localhost", mbody="m3", mtype="chat")
            _, iq = await asyncio.wait_for(app.published.get(), 5)
            assert (summary(iq)["message-count"], summary(iq)["last-message-body"]) == (
                "3", "m3")
        finally:
            await disconnect(bob)


async def test_online_sessions_active_or_inactive_get_no_push(tmp_path: Path) -> None:
    async with push_server(tmp_path) as (server, app):
        phone = await connect(server, "alice@localhost/phone", "secret", plugins=("xep_0198",))
        bob = await connect(server, "bob@localhost/desk", "secret")
        got: list[str] = []
        phone.add_event_handler("message", lambda m: got.append(m["body"]))
        try:
            phone.send_presence()
            await enable(phone)
            bob.send_message(mto="alice@localhost", mbody="live", mtype="chat")
            await eventually(lambda: got == ["live"])
            # XEP-0352: inactive, but connected: a message with a body is delivered at once.
            phone.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
            await eventually(lambda: server.modules["mod_csi"]._state(
                _session(server, "alice@localhost/phone")).inactive)
            bob.send_message(mto="alice@localhost", mbody="pocket", mtype="chat")
            await eventually(lambda: got == ["live", "pocket"])
            assert await drain(app, 0.5) == []
        finally:
            await disconnect(phone, bob)


async def test_temporary_app_server_error_keeps_the_registration(tmp_path: Path) -> None:
    async with push_server(tmp_path) as (server, app):
        app.answer_error, app.answer_error_type = "resource-constraint", "wait"
        await suspended_phone(server)
        module = server.modules["mod_event_pusher"]
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
            await asyncio.wait_for(app.published.get(), 5)
            # RFC 6120 §8.3.2 "wait": retry later. XEP-0357 §7.1 lets a server keep the
            # registration after a temporary error; 6.4 disables only after "cancel".
            app.answer_error = None
            bob.send_message(mto="alice@localhost", mbody="two", mtype="chat")
            _, iq = await asyncio.wait_for(app.published.get(), 5)
            assert summary(iq)["last-message-body"] == "two"
            assert [r.node for r in await module.store.registrations("localhost", "alice")] \
                == ["phone-node"]
        finally:
            await disconnect(bob)


async def test_a_resumed_phone_counts_from_one_again(tmp_path: Path) -> None:
    # XEP-0357 §7 summary: message-count is "the number of unread or undelivered messages".
    # A phone that resumed its stream (XEP-0198 §5) got every queued message: when it is
    # suspended again, the next notification counts from one, not on from before.
    async with push_server(tmp_path) as (server, app):
        phone = await suspended_phone(server)
        bob = await connect(server, "bob@localhost/desk", "secret")
        resumed = asyncio.get_running_loop().create_future()
        phone.add_event_handler("session_resumed",
                                lambda _: resumed.done() or resumed.set_result(True))
        try:
            bob.send_message(mto="alice@localhost", mbody="m1", mtype="chat")
            bob.send_message(mto="alice@localhost", mbody="m2", mtype="chat")
            assert [f["message-count"] for f in await drain(app, 1.0)] == ["1", "2"]
            phone.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
            await asyncio.wait_for(resumed, 10)
            await eventually(lambda: getattr(_session(server, "alice@localhost/phone"),
                                             "state", None) == C2SState.SESSION_ESTABLISHED)
            phone.abort()
            await eventually(lambda: getattr(_session(server, "alice@localhost/phone"),
                                             "state", None) == C2SState.RESUME_SESSION)
            bob.send_message(mto="alice@localhost", mbody="m3", mtype="chat")
            _, iq = await asyncio.wait_for(app.published.get(), 5)
            assert (summary(iq)["message-count"], summary(iq)["last-message-body"]) == (
                "1", "m3")
        finally:
            await disconnect(bob)


async def test_a_call_wakes_a_suspended_phone_a_chat_state_does_not(tmp_path: Path) -> None:
    # XEP-0357 §7: the server picks what is worth a push. A call (XEP-0353 <propose/>, no
    # body) must ring on an iPhone whose app sleeps; a chat state must not wake it.
    async with push_server(tmp_path) as (server, app):
        await suspended_phone(server)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_raw("<message to='alice@localhost/phone' type='chat'><composing "
                         "xmlns='http://jabber.org/protocol/chatstates'/></message>")
            bob.send_raw("<message to='alice@localhost/phone' type='chat'><propose "
                         "xmlns='urn:xmpp:jingle-message:0' id='call1'><description "
                         "xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>"
                         "<store xmlns='urn:xmpp:hints'/></message>")
            forms = await drain(app, 1.0)
            assert [(f["message-count"], f["last-message-sender"]) for f in forms] == [
                ("1", "bob@localhost/desk")]
        finally:
            await disconnect(bob)
