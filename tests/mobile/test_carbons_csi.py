"""XEP-0280 carbons and XEP-0352 CSI, enabled inline through Bind 2."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from suricate.core.server import Server
from tests.e2e.harness import connect, disconnect, eventually, running_server
from tests.e2e.test_roster_presence import iq_reply, raw_session
from tests.mobile.client import Sasl2Client, bind2
from tests.mobile.conftest import add_user, modules_toml


def _login(server: Server, tag: str, inline: str) -> tuple[Sasl2Client, str]:
    c = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    c.features()
    # One device, one installation: its own SASL2 user-agent id (two sessions with the same
    # id are the same client, and the second ends the first: XEP-0386 §3).
    out = c.plain("alice", "secret", bind2(tag, inline), agent=f"{tag}-install")
    assert out.ok and out.jid, out.xml
    return c, out.jid


async def test_carbons_copy_sent_and_received_messages(server: Server) -> None:
    phone, phone_jid = await asyncio.to_thread(
        _login, server, "phone", "<enable xmlns='urn:xmpp:carbons:2'/>")
    laptop, laptop_jid = await asyncio.to_thread(
        _login, server, "laptop", "<enable xmlns='urn:xmpp:carbons:2'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        bob.send_message(mto=phone_jid, mbody="to the phone", mtype="chat")
        got = await asyncio.to_thread(laptop.expect, r"<message[^>]*>.*?</message>")
        assert re.search(r"<received xmlns='urn:xmpp:carbons:2'><forwarded "
                         r"xmlns='urn:xmpp:forward:0'><message [^>]*>.*to the phone",
                         got.group(0)), got.group(0)
        await asyncio.to_thread(phone.expect, r"<body>to the phone</body>")
        phone.send("<message to='bob@localhost/desk' type='chat'><body>from the phone</body>"
                   "</message>")
        got = await asyncio.to_thread(laptop.expect, r"<message[^>]*>.*?</message>")
        assert "<sent xmlns='urn:xmpp:carbons:2'>" in got.group(0)
        msg = await bob.next_message()
        assert msg["body"] == "from the phone"
        # <private/> is not copied (XEP-0280 §7)
        phone.send("<message to='bob@localhost/desk' type='chat'><body>secret</body>"
                   "<private xmlns='urn:xmpp:carbons:2'/></message>")
        assert (await bob.next_message())["body"] == "secret"
        # The next, ordinary message is carbon-copied: everything the laptop got up to its
        # copy must be free of the private one (the laptop reads, not just its old buffer).
        phone.send("<message to='bob@localhost/desk' type='chat'><body>after</body></message>")
        assert (await bob.next_message())["body"] == "after"
        got = await asyncio.to_thread(laptop.expect, r"\A.*?<body>after</body>")
        assert "<sent xmlns='urn:xmpp:carbons:2'>" in got.group(0)
        assert "secret" not in got.group(0), got.group(0)
    finally:
        phone.close()
        laptop.close()
        await disconnect(bob)


async def test_carbons_never_duplicate_a_message_a_device_gets_itself(server: Server) -> None:
    """XEP-0280 §7: a copy goes to each carbons-enabled resource "that did not receive" the
    message under RFC 6121, and never to the one it was addressed to. Three everyday cases
    that gave each device the message twice, or not at all: a contact writes to a full JID
    that went away (routed as to the bare JID, RFC 6121 §8.5.3.2.1), to the bare JID while
    one device has a negative priority (§8.5.2.1.1: only the other gets it), and "note to
    self" (a message to one's own bare JID)."""
    phone = await raw_session(server, "alice", "secret", "phone")
    laptop = await raw_session(server, "alice", "secret", "laptop")
    bob = await raw_session(server, "bob", "secret", "desk")
    n = 0

    async def handled(*clients: Any) -> None:
        """The server read and routed what ``clients`` sent so far: each answered a ping sent
        after it (RFC 6120 §10.1). What they received meanwhile is skipped: call it for a
        sender before reading what its stanzas did elsewhere."""
        nonlocal n
        for client in clients:
            n += 1
            await client.send(f"<iq type='get' id='h{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
            await client.expect(r".*?" + iq_reply(f"h{n}"))

    async def received(client: Any) -> list[str]:
        """The messages (originals and copies) that reach ``client`` before the answer to a
        ping sent after everything above was handled: the senders' stanzas were read
        (``handled``), and what their routing left to a task (a message that waits for the
        account's offline turn while a device logs in) is done."""
        nonlocal n
        n += 1
        await server.drain(5)
        await client.send(f"<iq type='get' id='b{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
        got = await client.expect(r".*?" + iq_reply(f"b{n}"))
        return re.findall(r"<message .*?</message>(?=<message |<iq |<presence |$)",
                          got[:got.rindex("<iq")])

    try:
        for client in (phone, laptop):
            await client.send("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
            await client.send("<presence/>")
        await handled(phone, laptop)
        # A reply to a resource that is gone: each device gets the message itself, once.
        await bob.send("<message to='alice@localhost/gone' type='chat'><body>one</body>"
                       "</message>")
        await handled(bob)
        for client in (phone, laptop):
            got = await received(client)
            assert len(got) == 1 and "<received" not in got[0], got
        # The laptop goes to priority -1: it gets a copy of what reaches the phone.
        await laptop.send("<presence><priority>-1</priority></presence>")
        await handled(laptop)
        await bob.send("<message to='alice@localhost' type='chat'><body>two</body></message>")
        await handled(bob)
        got = await received(phone)
        assert len(got) == 1 and "<received" not in got[0], got
        got = await received(laptop)
        assert len(got) == 1 and "<received xmlns=\"urn:xmpp:carbons:2\">" in got[0], got
        # Note to self: the laptop is back at 0 and gets the message, not also a copy.
        await laptop.send("<presence/>")
        await handled(laptop)
        await phone.send("<message to='alice@localhost' type='chat'><body>three</body>"
                         "</message>")
        await handled(phone)
        got = await received(laptop)
        assert len(got) == 1 and "<sent" not in got[0] and "three" in got[0], got
    finally:
        for client in (phone, laptop, bob):
            await client.close()


async def test_csi_holds_chat_states_until_urgent_traffic(server: Server) -> None:
    phone, phone_jid = await asyncio.to_thread(
        _login, server, "phone", "<inactive xmlns='urn:xmpp:csi:0'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        for state in ("composing", "paused"):
            bob.send_raw(f"<message to='{phone_jid}' type='chat'><{state} "
                         "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        # both chat states are held in the session's CSI queue, not on their way
        session = next(s for s in server.sessions if str(s.jid) == phone_jid)
        await eventually(lambda: len(session.module_state["mod_csi"].queue) == 2)

        def pending() -> Any:
            data = phone._recv(0.05)  # noqa: SLF001 - whatever arrived so far
            if data:
                phone.buffer += data
            return phone.buffer.decode()
        assert "composing" not in await asyncio.to_thread(pending)
        # a message with a body is urgent: what waited comes first, in order
        bob.send_message(mto=phone_jid, mbody="wake up", mtype="chat")
        got = (await asyncio.to_thread(phone.expect, r".*<body>wake up</body>")).group(0)
        assert got.index("composing") < got.index("paused") < got.index("wake up")
        # active again: nothing is held any more
        phone.send("<active xmlns='urn:xmpp:csi:0'/>")
        bob.send_raw(f"<message to='{phone_jid}' type='chat'><gone "
                     "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await asyncio.to_thread(phone.expect, r"<gone ")
    finally:
        phone.close()
        await disconnect(bob)


async def test_csi_keeps_only_the_latest_presence_of_each_sender(server: Server) -> None:
    """While the client is inactive (XEP-0352 §5 leaves the optimisation to the server) a
    newer availability presence from the same full JID replaces the one held: presence is
    state, the client only needs the latest (as ejabberd's queue_presence does). Order with
    the other held stanzas is kept; MUC presence (XEP-0045 status codes, the self-presence
    that ends a join) and subscription requests are never collapsed."""
    phone, phone_jid = await asyncio.to_thread(
        _login, server, "phone", "<inactive xmlns='urn:xmpp:csi:0'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        muc = "<x xmlns='http://jabber.org/protocol/muc#user'><status code='{}'/></x>"
        for stanza in [
            f"<presence to='{phone_jid}'><show>away</show></presence>",
            f"<message to='{phone_jid}' type='chat'><composing "
            "xmlns='http://jabber.org/protocol/chatstates'/></message>",
            f"<presence to='{phone_jid}'><show>dnd</show></presence>",
            f"<presence to='{phone_jid}'><show>xa</show><status>latest</status></presence>",
            f"<presence to='{phone_jid}'>{muc.format(100)}</presence>",
            f"<presence to='{phone_jid}'>{muc.format(110)}</presence>",
        ]:
            bob.send_raw(stanza)
        session = next(s for s in server.sessions if str(s.jid) == phone_jid)
        await eventually(lambda: any("110" in str(s) for s in
                                     session.module_state["mod_csi"].queue))
        # a message with a body is urgent: the queue is flushed before it
        bob.send_message(mto=phone_jid, mbody="wake up", mtype="chat")
        got = (await asyncio.to_thread(phone.expect, r".*<body>wake up</body>")).group(0)
        got = got.replace("'", '"')  # relayed as sent
        presences = re.findall(r"<presence[^>]*from=\"bob@localhost/desk\".*?</presence>", got)
        assert len(presences) == 3, presences  # the latest plain one and both MUC ones
        assert "<status>latest</status>" in presences[0]
        assert "away" not in got and "dnd" not in got
        assert got.index("composing") < got.index("latest") < got.index("code=\"100\"") \
            < got.index("code=\"110\"") < got.index("wake up")
    finally:
        phone.close()
        await disconnect(bob)


async def test_csi_delivers_a_carbon_of_a_message_with_a_body_at_once(server: Server) -> None:
    """A carbon (XEP-0280) of a chat message is that message for the person holding the
    phone: the laptop's conversation goes on, the inactive phone must show it now, not when the
    CSI queue happens to flush. What counts is the forwarded message's body (as Prosody's
    mod_csi_simple and ejabberd's mod_client_state look inside); a carbon of a chat state
    alone still waits (XEP-0352 §5: the server may hold what needs no attention)."""
    both = "<enable xmlns='urn:xmpp:carbons:2'/>"
    phone, phone_jid = await asyncio.to_thread(
        _login, server, "phone", both + "<inactive xmlns='urn:xmpp:csi:0'/>")
    laptop, laptop_jid = await asyncio.to_thread(_login, server, "laptop", both)
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        session = next(s for s in server.sessions if str(s.jid) == phone_jid)
        bob.send_raw(f"<message to='{laptop_jid}' type='chat'><composing "
                     "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await eventually(lambda: len(session.module_state["mod_csi"].queue) == 1)
        bob.send_message(mto=laptop_jid, mbody="dinner at eight?", mtype="chat")
        got = (await asyncio.to_thread(phone.expect, r".*<body>dinner at eight\?</body>",
                                       2.0)).group(0)
        assert "<received xmlns='urn:xmpp:carbons:2'>" in got
        assert got.index("composing") < got.index("dinner")  # in order
        laptop.send("<message to='bob@localhost/desk' type='chat'><body>yes</body>"
                    "</message>")
        got = (await asyncio.to_thread(phone.expect, r".*<body>yes</body>", 2.0)).group(0)
        assert "<sent xmlns='urn:xmpp:carbons:2'>" in got
    finally:
        phone.close()
        laptop.close()
        await disconnect(bob)


async def test_csi_buffer_max_as_64_takes_it(tmp_path: Path) -> None:
    """6.4's buffer_max is a non-negative integer or "infinity": 0 holds nothing (a chat
    state reaches the inactive client at once), "infinity" holds past the default 20."""
    for limit, held in (("0", 0), ('"infinity"', 25)):
        modules = modules_toml().replace("[modules.mod_csi]",
                                         f"[modules.mod_csi]\nbuffer_max = {limit}")
        async with running_server(tmp_path / limit.strip('"'), modules=modules) as srv:
            await add_user(srv, "alice")
            await add_user(srv, "bob")
            phone, phone_jid = await asyncio.to_thread(
                _login, srv, "phone", "<inactive xmlns='urn:xmpp:csi:0'/>")
            bob = await connect(srv, "bob@localhost/desk", "secret")
            try:
                for n in range(25):
                    bob.send_raw(f"<message to='{phone_jid}' type='chat' id='s{n}'><composing "
                                 "xmlns='http://jabber.org/protocol/chatstates'/></message>")
                if held:
                    session = next(s for s in srv.sessions if str(s.jid) == phone_jid)
                    await eventually(
                        lambda s=session, n=held: len(s.module_state["mod_csi"].queue) == n)
                else:
                    await asyncio.to_thread(phone.expect, r"id='s24'")
            finally:
                phone.close()
                await disconnect(bob)


async def test_csi_lets_a_call_and_an_invitation_through_at_once(server: Server) -> None:
    # XEP-0352 §5: what waits is the server's choice; a call that rings (XEP-0353) or an
    # invitation to a room (XEP-0249), bodiless, cannot wait for the next message with a
    # body, and neither can an OMEMO message whose client sends no fallback body.
    phone, phone_jid = await asyncio.to_thread(
        _login, server, "phone", "<inactive xmlns='urn:xmpp:csi:0'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        session = next(s for s in server.sessions if str(s.jid) == phone_jid)
        bob.send_raw(f"<message to='{phone_jid}' type='chat'><composing "
                     "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await eventually(lambda: len(session.module_state["mod_csi"].queue) == 1)
        for payload, seen in (
                ("<propose xmlns='urn:xmpp:jingle-message:0' id='call1'><description "
                 "xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>", "call1"),
                ("<x xmlns='jabber:x:conference' jid='room@conference.localhost'/>",
                 "room@conference"),
                ("<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>AAAA"
                 "</iv></header><payload>BBBB</payload></encrypted>", "BBBB")):
            bob.send_raw(f"<message to='{phone_jid}' type='chat'>{payload}</message>")
            got = (await asyncio.to_thread(phone.expect, f".*{seen}", 2.0)).group(0)
            if seen == "call1":  # what waited comes first
                assert got.index("composing") < got.index("call1"), got
            assert session.module_state["mod_csi"].queue == []
    finally:
        phone.close()
        await disconnect(bob)
