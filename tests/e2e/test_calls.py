"""Audio/video calls as Conversations, Dino and Monal place them (XEP-0479 §2.5, A/V Calling):
Jingle Message Initiation (XEP-0353) over messages to bare JIDs, with two devices per account
and carbons (XEP-0280), the archive (XEP-0313), offline storage, a phone waiting for stream
resumption (XEP-0198) and its push (XEP-0357); the Jingle IQs to the chosen device; and
XEP-0215 with a real TURN server (Debian's coturn, `use-auth-secret`): the time-limited
credentials mod_extdisco derives from the shared secret open a real TURN allocation
(RFC 8656), and expired ones do not."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, connect, disconnect, eventually, running_server
from tests.e2e.turn import ALLOCATE_ERROR, ALLOCATE_SUCCESS, allocate, coturn
from tests.mobile.conftest import add_user, modules_toml

JMI = "urn:xmpp:jingle-message:0"
JINGLE = "urn:xmpp:jingle:1"
CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
EXTDISCO = "urn:xmpp:extdisco:2"
CLIENT = "jabber:client"
MAM_MODULES = "[modules.mod_mam]\n[modules.mod_mam.pm]\n"


def jmi(kind: str, to: str, sid: str) -> str:
    """A JMI message as XEP-0353 §3 says: type chat, with a <store/> hint (XEP-0334)."""
    inner = {
        "propose": "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>",
        "retract": f"<reason xmlns='{JINGLE}'><cancel/></reason>",
        "reject": f"<reason xmlns='{JINGLE}'><busy/></reason>",
        "finish": f"<reason xmlns='{JINGLE}'><success/></reason>",
    }.get(kind, "")
    # Conversations also asks for a receipt (XEP-0184) of the propose, its "ringing" for
    # clients that send no <ringing/>, and names it jm-propose-<sid>.
    receipt = "<request xmlns='urn:xmpp:receipts'/>" if kind == "propose" else ""
    return (f"<message to='{to}' type='chat' id='jm-{kind}-{sid}'><{kind} xmlns='{JMI}' "
            f"id='{sid}'>{inner}</{kind}>{receipt}<store xmlns='urn:xmpp:hints'/></message>")


class Device:
    """A slixmpp client whose every incoming message is kept as raw XML, before slixmpp's
    carbons plugin unwraps or swallows any."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.inbox: asyncio.Queue[ET.Element] = asyncio.Queue()

        def incoming(stanza: Any) -> Any:
            if stanza.xml.tag == f"{{{CLIENT}}}message" \
                    and stanza.xml.find("{urn:xmpp:mam:2}result") is None:
                self.inbox.put_nowait(stanza.xml)
            return stanza

        client.add_filter("in", incoming)

    def send(self, xml: str) -> None:
        self.client.send_raw(xml)

    async def call_event(self, timeout: float = 5.0) -> tuple[str, str, str, str]:
        """The next JMI message: (how it came: direct/sent/received, kind, sid, from)."""
        message = await asyncio.wait_for(self.inbox.get(), timeout)
        how = "direct"
        for direction in ("sent", "received"):
            wrapper = message.find(f"{{{CARBONS}}}{direction}")
            if wrapper is not None:
                how = direction
                inner = wrapper.find(f"{{{FORWARD}}}forwarded/{{{CLIENT}}}message")
                assert inner is not None, ET.tostring(message)
                message = inner
        for child in message:
            if child.tag.startswith(f"{{{JMI}}}"):
                return how, child.tag.split("}")[1], child.get("id", ""), message.get("from", "")
        raise AssertionError(f"not a JMI message: {ET.tostring(message)!r}")

    async def nothing_more(self, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        assert self.inbox.empty(), ET.tostring(self.inbox.get_nowait())


async def device(server: Server, jid: str, plugins: tuple[str, ...] = ()) -> Device:
    """Logged in, carbons enabled (XEP-0280 §4) and available: as these clients start."""
    client = await connect(server, jid, "secret", plugins=("xep_0280", *plugins))
    await client.plugin["xep_0280"].enable(timeout=5)
    kept = Device(client)  # before the presence that makes stored messages come
    client.send_presence()
    full = JID.parse(jid)
    await eventually(lambda: (s := server.sessions.lookup(full)) is not None
                     and s.presence is not None)
    return kept


async def archived_calls(client: Client, owner: str) -> list[tuple[str, str]]:
    """The JMI messages of ``owner``'s archive (XEP-0313), as (kind, sid)."""
    found = []
    async for result in client.plugin["xep_0313"].iterate(jid=owner, rsm={"max": 50}):
        xml = result.xml.find(f".//{{{FORWARD}}}forwarded/{{{CLIENT}}}message")
        assert xml is not None
        found += [(c.tag.split("}")[1], c.get("id", "")) for c in xml
                  if c.tag.startswith(f"{{{JMI}}}")]
    return found


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=modules_toml(MAM_MODULES)) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        yield srv


async def test_a_call_rings_everywhere_and_is_answered_on_one_device(server: Server) -> None:
    # XEP-0353 §3.1-§3.6 with two devices on each side.
    a_phone = await device(server, "alice@localhost/phone", ("xep_0313",))
    a_laptop = await device(server, "alice@localhost/laptop")
    b_phone = await device(server, "bob@localhost/phone")
    b_tablet = await device(server, "bob@localhost/tablet", ("xep_0313",))
    everyone = (a_phone, a_laptop, b_phone, b_tablet)
    try:
        # §3.1: the propose to the bare JID reaches each of bob's available resources; alice's
        # other device learns of the call through a <sent/> carbon.
        a_phone.send(jmi("propose", "bob@localhost", "c1"))
        assert await b_phone.call_event() == ("direct", "propose", "c1", "alice@localhost/phone")
        assert await b_tablet.call_event() == ("direct", "propose", "c1",
                                               "alice@localhost/phone")
        assert await a_laptop.call_event() == ("sent", "propose", "c1", "alice@localhost/phone")
        # §3.2: each of bob's devices rings; alice's devices see it, bob's other one by carbon.
        b_phone.send(jmi("ringing", "alice@localhost", "c1"))
        for d in (a_phone, a_laptop):
            assert await d.call_event() == ("direct", "ringing", "c1", "bob@localhost/phone")
        assert await b_tablet.call_event() == ("sent", "ringing", "c1", "bob@localhost/phone")
        # §3.4: taken on the tablet: the phone stops ringing (carbon of the proceed), both of
        # alice's devices learn where (the laptop, which did not call, may update its UI).
        b_tablet.send(jmi("proceed", "alice@localhost", "c1"))
        for d in (a_phone, a_laptop):
            assert await d.call_event() == ("direct", "proceed", "c1", "bob@localhost/tablet")
        assert await b_phone.call_event() == ("sent", "proceed", "c1", "bob@localhost/tablet")
        # What the pre-0.4 protocol did instead, and Conversations still does: an <accept/>
        # to the account's own bare JID, which each of its available resources gets.
        b_tablet.send(jmi("accept", "bob@localhost", "c1"))
        for d in (b_phone, b_tablet):
            assert await d.call_event() == ("direct", "accept", "c1", "bob@localhost/tablet")
        # §3.6: the Jingle session itself, IQs between the two chosen full JIDs only.
        iq = a_phone.client.make_iq_set(ito="bob@localhost/tablet")
        iq.append(ET.fromstring(
            f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='c1' "
            "initiator='alice@localhost/phone'><content creator='initiator' name='voice'>"
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/><transport "
            "xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'/></content>"
            "</jingle>"))
        initiated = asyncio.ensure_future(iq.send(timeout=5))
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        b_tablet.client.register_handler(_iq_handler(
            "jingle", lambda stanza: got.done() or got.set_result(stanza)))
        received = await asyncio.wait_for(got, 5)
        assert received["from"] == "alice@localhost/phone"
        received.reply().send()
        assert (await initiated)["type"] == "result"
        # §3.7: both finish; the other devices of each side see it (archive and carbons).
        a_phone.send(jmi("finish", "bob@localhost", "c1"))
        b_tablet.send(jmi("finish", "alice@localhost", "c1"))
        assert await b_tablet.call_event() == ("direct", "finish", "c1", "alice@localhost/phone")
        assert await a_phone.call_event() == ("direct", "finish", "c1", "bob@localhost/tablet")
        assert await events(b_phone, 2) == [
            ("direct", "finish", "c1", "alice@localhost/phone"),
            ("sent", "finish", "c1", "bob@localhost/tablet")]
        assert await events(a_laptop, 2) == [
            ("direct", "finish", "c1", "bob@localhost/tablet"),
            ("sent", "finish", "c1", "alice@localhost/phone")]
        for d in everyone:
            await d.nothing_more(0.1)
        # §1, §4: every step is in both archives, so a device that was off catches up.
        expected = [("propose", "c1"), ("ringing", "c1"), ("proceed", "c1"), ("finish", "c1"),
                    ("finish", "c1")]
        for client, owner, own in ((a_phone.client, "alice@localhost", []),
                                   (b_tablet.client, "bob@localhost", [("accept", "c1")])):
            # (The accept to itself is in bob's archive once.)
            await eventually(lambda c=client, o=owner, e=expected + own:
                             _sorted_eq(archived_calls(c, o), e), timeout=5, interval=0.2)
        # A rejected call (§3.5) and a retracted one (§3.3) reach the same devices.
        a_phone.send(jmi("propose", "bob@localhost", "c2"))
        b_phone.send(jmi("reject", "alice@localhost", "c2"))
        a_phone.send(jmi("propose", "bob@localhost", "c3"))
        a_phone.send(jmi("retract", "bob@localhost", "c3"))
        assert await events(a_phone, 1) == [("direct", "reject", "c2", "bob@localhost/phone")]
        assert await events(a_laptop, 4) == [
            ("direct", "reject", "c2", "bob@localhost/phone"),
            ("sent", "propose", "c2", "alice@localhost/phone"),
            ("sent", "propose", "c3", "alice@localhost/phone"),
            ("sent", "retract", "c3", "alice@localhost/phone")]
        assert await events(b_tablet, 4) == [
            ("direct", "propose", "c2", "alice@localhost/phone"),
            ("direct", "propose", "c3", "alice@localhost/phone"),
            ("direct", "retract", "c3", "alice@localhost/phone"),
            ("sent", "reject", "c2", "bob@localhost/phone")]
    finally:
        await disconnect(*(d.client for d in everyone))


async def events(d: Device, n: int) -> list[tuple[str, str, str, str]]:
    return sorted([await d.call_event() for _ in range(n)])


async def _sorted_eq(found: Any, expected: list[tuple[str, str]]) -> bool:
    return sorted(await found) == sorted(expected)


def _iq_handler(name: str, callback: Callable[[Any], Any]) -> Any:
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    return Callback(name, MatchXPath(f"{{{CLIENT}}}iq/{{{JINGLE}}}jingle"), callback)


async def test_a_call_to_an_offline_callee_is_kept_and_found_at_login(server: Server) -> None:
    # XEP-0353 §2 ("work with offline devices") and §3.3: a call placed and retracted while
    # bob was away is a missed call: his next login gets both from offline storage (the
    # <store/> hint keeps bodiless messages, XEP-0334 §4), and his archive has both.
    a_phone = await device(server, "alice@localhost/phone")
    b_phone: Device | None = None
    try:
        a_phone.send(jmi("propose", "bob@localhost", "c4"))
        a_phone.send(jmi("retract", "bob@localhost", "c4"))
        store = server.modules["mod_offline"].store
        await eventually(lambda: _count(store.count_offline("localhost", "bob"), 2))
        b_phone = await device(server, "bob@localhost/phone", ("xep_0313",))
        assert [await b_phone.call_event() for _ in range(2)] == [
            ("direct", "propose", "c4", "alice@localhost/phone"),
            ("direct", "retract", "c4", "alice@localhost/phone")]
        await eventually(lambda: _sorted_eq(archived_calls(b_phone.client, "bob@localhost"),
                                            [("propose", "c4"), ("retract", "c4")]),
                         timeout=5, interval=0.2)
    finally:
        await disconnect(a_phone.client, *([b_phone.client] if b_phone else []))


async def test_a_device_with_a_negative_priority_rings_too(server: Server) -> None:
    # XEP-0353 §2: calls "work with devices that use negative resource priorities". RFC 6121
    # §8.5.2.1.1 gives a message to the bare JID to none of them; XEP-0280 §7 gives a copy to
    # each carbons-enabled resource that did not receive it, also when none did.
    a_phone = await device(server, "alice@localhost/phone")
    watch = await connect(server, "bob@localhost/watch", "secret", plugins=("xep_0280",))
    await watch.plugin["xep_0280"].enable(timeout=5)
    b_watch = Device(watch)
    watch.send_presence(ppriority=-1)
    await eventually(lambda: (s := server.sessions.lookup(JID.parse("bob@localhost/watch")))
                     is not None and s.presence is not None)
    b_phone: Device | None = None
    try:
        a_phone.send(jmi("propose", "bob@localhost", "c7"))
        assert await b_watch.call_event() == ("received", "propose", "c7",
                                              "alice@localhost/phone")
        # And with a phone at priority 0 as well: the phone gets the propose, the watch its copy.
        b_phone = await device(server, "bob@localhost/phone")
        assert await b_phone.call_event() == ("direct", "propose", "c7",
                                              "alice@localhost/phone")  # (stored, at login)
        a_phone.send(jmi("retract", "bob@localhost", "c7"))
        assert await b_phone.call_event() == ("direct", "retract", "c7",
                                              "alice@localhost/phone")
        # (The watch also gets a copy of the stored propose the phone took at login.)
        assert await events(b_watch, 2) == [
            ("received", "propose", "c7", "alice@localhost/phone"),
            ("received", "retract", "c7", "alice@localhost/phone")]
        await a_phone.nothing_more(0.1)
    finally:
        await disconnect(a_phone.client, watch, *([b_phone.client] if b_phone else []))


async def _count(pending: Any, n: int) -> bool:
    return bool(await pending == n)


async def test_a_call_wakes_a_suspended_phone_that_resumes_and_answers(tmp_path: Path) -> None:
    # XEP-0353 §2 ("work with push notifications"): the phone's connection is gone, its
    # session waits for resumption (XEP-0198 §5). The propose to the bare JID is queued for
    # it and pushed (XEP-0357 §7); the phone resumes, answers, and the Jingle IQ reaches it
    # at its full JID over the resumed stream. Likewise a propose while no session is left
    # at all is pushed and stored, and delivered at the next login.
    from tests.pusher.test_push import _session, drain, enable, push_server, suspended_phone

    async with push_server(tmp_path) as (server, app):
        bob = await device(server, "bob@localhost/desk")
        phone = Device(await suspended_phone(server))
        resumed = asyncio.get_running_loop().create_future()
        phone.client.add_event_handler(
            "session_resumed", lambda _: resumed.done() or resumed.set_result(True))
        try:
            bob.send(jmi("propose", "alice@localhost", "c5"))
            assert [f["last-message-sender"] for f in await drain(app, 0.5)] == [
                "bob@localhost/desk"]
            phone.client.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
            await asyncio.wait_for(resumed, 10)
            assert await phone.call_event() == ("direct", "propose", "c5", "bob@localhost/desk")
            phone.send(jmi("proceed", "bob@localhost", "c5"))
            assert await bob.call_event() == ("direct", "proceed", "c5",
                                              "alice@localhost/phone")
            got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            phone.client.register_handler(_iq_handler(
                "jingle", lambda stanza: got.done() or got.set_result(stanza)))
            iq = bob.client.make_iq_set(ito="alice@localhost/phone")
            iq.append(ET.fromstring(f"<jingle xmlns='{JINGLE}' action='session-initiate' "
                                    "sid='c5' initiator='bob@localhost/desk'/>"))
            initiated = asyncio.ensure_future(iq.send(timeout=5))
            (await asyncio.wait_for(got, 5)).reply().send()
            assert (await initiated)["type"] == "result"

            # Offline altogether: the phone closed its stream, push stays enabled.
            await disconnect(phone.client)
            await eventually(lambda: _session(server, "alice@localhost/phone") is None)
            bob.send(jmi("propose", "alice@localhost", "c6"))
            assert [f["last-message-sender"] for f in await drain(app, 0.5)] == [
                "bob@localhost/desk"]
            again = await device(server, "alice@localhost/phone")
            assert await again.call_event() == ("direct", "propose", "c6",
                                                "bob@localhost/desk")
            await enable(again.client)  # (keeps the helper's registration current)
            await disconnect(again.client)
        finally:
            await disconnect(bob.client)


TURN_SECRET = "a shared secret"


def extdisco_toml(turn_port: int) -> str:
    """Two views of one coturn: credentials for a day (the default) and for one second."""
    return f"""
[modules.mod_extdisco]
  [[modules.mod_extdisco.service]]
    type = "stun"
    host = "127.0.0.1"
    port = {turn_port}
    transport = "udp"
  [[modules.mod_extdisco.service]]
    type = "turn"
    host = "127.0.0.1"
    port = {turn_port}
    transport = "udp"
    secret = "{TURN_SECRET}"
  [[modules.mod_extdisco.service]]
    type = "turn"
    host = "localhost"
    port = {turn_port}
    transport = "udp"
    secret = "{TURN_SECRET}"
    credentials_lifetime = 1
"""


async def ask(client: Client, payload: str) -> list[dict[str, str]]:
    iq = client.make_iq_get(ito="localhost")
    iq.append(ET.fromstring(payload))
    result = await iq.send(timeout=5)
    return [dict(s.attrib) for s in result.xml.iter(f"{{{EXTDISCO}}}service")]


async def test_turn_credentials_from_the_shared_secret_open_a_real_allocation(
        tmp_path: Path) -> None:
    # XEP-0215 §3.1 and §3.3 with coturn's `use-auth-secret` (TURN REST API): the server
    # derives a time-limited username and password from the secret it shares with coturn,
    # coturn allocates a relay with them (RFC 8656 §7.2), and refuses them once expired.
    with coturn(tmp_path, TURN_SECRET) as turn_port:
        modules = modules_toml(MAM_MODULES + extdisco_toml(turn_port))
        async with running_server(tmp_path, modules=modules) as server:
            await add_user(server, "alice")
            alice = await connect(server, "alice@localhost/phone", "secret",
                                  plugins=("xep_0030",))
            try:
                # What these clients look for before they offer calls (XEP-0479 §2.5):
                # extdisco on the server (Conversations, Monal and Dino ask it for STUN and
                # TURN), carbons, and the archive and push on the account (XEP-0353 §2).
                info = await alice.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
                assert {EXTDISCO, CARBONS} <= set(info["disco_info"]["features"])
                own = await alice.plugin["xep_0030"].get_info(jid="alice@localhost", timeout=5)
                assert "urn:xmpp:mam:2" in own["disco_info"]["features"]

                # §3.1, as Conversations and Dino ask: the credentials are in the list.
                listed = await ask(alice, f"<services xmlns='{EXTDISCO}'/>")
                assert [(s["type"], s["host"], "username" in s) for s in listed] == [
                    ("stun", "127.0.0.1", False), ("turn", "127.0.0.1", True),
                    ("turn", "localhost", True)]
                turn = listed[1]
                expiry, user = turn["username"].split(":", 1)
                assert user == "alice@localhost"
                assert abs(int(expiry) - time.time() - 86400) < 60
                assert turn["expires"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                        time.gmtime(int(expiry)))
                assert "secret" not in turn and "credentials_lifetime" not in turn
                assert allocate(turn_port, turn["username"], turn["password"]) == (
                    ALLOCATE_SUCCESS, None)

                # §3.3: credentials for one service, as a client that knows the host asks.
                [fresh] = await ask(alice, f"<credentials xmlns='{EXTDISCO}'><service "
                                           "host='127.0.0.1' type='turn'/></credentials>")
                assert allocate(turn_port, fresh["username"], fresh["password"]) == (
                    ALLOCATE_SUCCESS, None)
                # A password not derived from coturn's secret is refused (401, RFC 8489 §9.2.4).
                assert allocate(turn_port, fresh["username"], "not-the-password") == (
                    ALLOCATE_ERROR, 401)

                # Expired: the one-second credentials, after that second.
                [short] = await ask(alice, f"<credentials xmlns='{EXTDISCO}'><service "
                                           "host='localhost' type='turn'/></credentials>")
                await asyncio.sleep(max(0.0, int(short["username"].split(":")[0])
                                        - time.time()) + 1.1)
                assert allocate(turn_port, short["username"], short["password"]) == (
                    ALLOCATE_ERROR, 401)
            finally:
                await disconnect(alice)
